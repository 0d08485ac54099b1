from .components import KeepAnchoredComponentsd, KeepLargestObjectd, anchored_labels, largest_object_labels
from .propagation import PropagateScribblesd
from .scribbles import AnnotatedMaskd, ScribbleMapd
from .spacing import Spacingd
from .seed_areas import CurrentLabelsd, SeedAreasd
from .template import TemplateWeightsd
