from .inferer import SegmentationInferer
from .segmentation import ScribbleSegmentation
from .refine import ScribbleRefinement
