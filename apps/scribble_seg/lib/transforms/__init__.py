from .spacing import Spacingd
