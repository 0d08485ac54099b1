from .clicks import ClickRefinement
from .inferer import SegmentationInferer
from .refine import ScribbleRefinement
from .segmentation import ScribbleSegmentation
