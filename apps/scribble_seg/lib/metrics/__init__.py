from .segmentation import DiceMetric, dice_per_class, evaluate, hd95_per_class, precision_per_class
