from .base import ScribbleTrainTask
from .full import FullTrainTask
from .pce import PceTrainTask
