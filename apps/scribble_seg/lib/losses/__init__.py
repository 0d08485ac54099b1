"""Losses on scribble maps: pure torch, probabilities (never argmax), no literal label values."""

from .masked_dice import MaskedDiceLoss
from .partial_ce import PartialCrossEntropyLoss
