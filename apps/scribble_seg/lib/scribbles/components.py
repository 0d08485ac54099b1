"""Connected-component clean-up of a class-index map (numpy), shared by inference
(:mod:`lib.transforms.components`) and ExMod's local consistency (:mod:`lib.losses.consistency`).

Two rules beside MONAI's largest component per class (``KeepLargestConnectedComponent``):

``largest_object_labels``: keep the largest connected component of the whole foreground (all
structures together: the organ, e.g. the heart), then within it the largest component of each
class; everything else becomes background. Unlike the largest component per class on its own
(MONAI's ``KeepLargestConnectedComponent(independent=True)``), a false blob of one class away from
the organ cannot win over the true, smaller structure attached to it. The price: when the largest
foreground object is not the organ, the organ goes, so inference keeps the per-class rule by
default and offers this one as ``largest_component=object``.

``anchored_labels``: keep the largest component of one *anchor* structure (the myocardium of a
heart: the wall every other cardiac structure borders) and, of every other class, the component
with the most voxels face-adjacent to it -- an adjacency prior instead of a size prior. A false
blob can be larger than the true structure and even share a foreground object with the organ
(the phantoms' liver below the apex, labelled RV and LV, touches the heart's myocardium with a
few dozen voxels; the true RV with hundreds); it does not border the anchor as much. A class
with no component touching the anchor keeps its largest component; without the anchor the rule
is the per-class one. Offered as ``largest_component=<anchor name>``.

All functions take class-index maps of any dimension (background ``BACKGROUND_CLASS``) and use
face connectivity (``scipy.ndimage.label``'s default).
"""

import numpy as np
from scipy import ndimage

from .convention import BACKGROUND_CLASS


def _largest(mask: np.ndarray) -> np.ndarray:
    comp, count = ndimage.label(mask)
    if not count:
        return mask
    return comp == np.bincount(comp.ravel())[1:].argmax() + 1


def largest_object_labels(labels: np.ndarray) -> np.ndarray:
    """Class-index map of any dimension (background ``BACKGROUND_CLASS``) -> the same map with only
    the largest foreground object and, inside it, the largest component of each class."""
    labels = np.asarray(labels)
    obj = _largest(labels != BACKGROUND_CLASS)
    out = np.full_like(labels, BACKGROUND_CLASS)
    for c in np.unique(labels[obj]):
        if c != BACKGROUND_CLASS:
            out[_largest(obj & (labels == c))] = c
    return out


def anchored_labels(labels: np.ndarray, anchor: int) -> np.ndarray:
    """Class-index map -> the same map with the largest component of class ``anchor`` and, of
    every other class, its component with the most voxels face-adjacent to that anchor component
    (its largest component when none touches it); everything else becomes background."""
    labels = np.asarray(labels)
    out = np.full_like(labels, BACKGROUND_CLASS)
    kept = _largest(labels == anchor)
    out[kept] = anchor
    rim = ndimage.binary_dilation(kept) & ~kept
    for c in np.unique(labels):
        if c in (BACKGROUND_CLASS, anchor):
            continue
        comp, count = ndimage.label(labels == c)
        contact = np.bincount(comp[rim], minlength=count + 1)[1:]
        sizes = np.bincount(comp.ravel(), minlength=count + 1)[1:]
        out[comp == 1 + (contact.argmax() if contact.max() > 0 else sizes.argmax())] = c
    return out
