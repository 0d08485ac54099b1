from .scribbles import AnnotatedMaskd, ScribbleMapd
from .spacing import Spacingd
