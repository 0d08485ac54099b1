from .next_to_scribble import NextToScribble
from .random import Random
from .scoring import EpistemicScoring
