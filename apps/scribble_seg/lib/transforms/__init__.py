from .components import KeepAnchoredComponentsd, KeepLargestObjectd
from .labelmap import LoadLabelmapd
from .propagation import PropagateScribblesd
from .scribbles import AnnotatedMaskd, BackgroundBeyondStrokesd, ScribbleMapd
from .seed_areas import CurrentLabelsd, SeedAreasd
from .spacing import Spacingd
from .template import TemplateWeightsd
