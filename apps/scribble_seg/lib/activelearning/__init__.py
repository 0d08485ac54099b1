from .random import Random
