from .components import KeepAnchoredComponentsd, KeepLargestObjectd
from .propagation import PropagateScribblesd
from .readers import COrderNibabelReader
from .scribbles import AnnotatedMaskd, BackgroundBeyondStrokesd, ScribbleMapd
from .seed_areas import CurrentLabelsd, SeedAreasd
from .spacing import Spacingd
from .template import TemplateWeightsd
