"""Losses on scribble maps: pure torch, probabilities (never argmax), no literal label values."""

from .active_boundary import ActiveBoundaryLoss
from .boundary import BoundaryLoss
from .masked_dice import MaskedDiceLoss
from .partial_ce import PartialCrossEntropyLoss
from .reconstruction import WeightedReconstructionLoss
