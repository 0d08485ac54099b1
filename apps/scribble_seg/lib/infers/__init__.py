from .inferer import SegmentationInferer
from .segmentation import ScribbleSegmentation
