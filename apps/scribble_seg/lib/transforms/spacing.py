"""``Spacingd`` that survives MONAI Label's data dicts (MONAI 1.6 regression).

MONAI 1.6's ``Spacingd`` (PR #8269), after resampling key ``k`` of a NIfTI input, calls
``d[m].update(meta)`` on **every** dict key ``m`` that starts with ``f"{k}_"``. MONAI Label's
``BasicInferTask`` always puts ``data["image_path"]`` (a ``str``) in the dict and 3D Slicer sends
``label_info`` (a ``list``), so the stock transform raises ``AttributeError: 'str' object has no
attribute 'update'`` inside every infer task on ``.nii``/``.nii.gz`` input.

This subclass hides the non-dict ``<key>_*`` entries while the parent runs and puts them back
unchanged; on MONAI versions without the regression it behaves exactly like ``Spacingd``.
"""

from typing import Hashable, Mapping

import monai.transforms


class Spacingd(monai.transforms.Spacingd):
    """:class:`monai.transforms.Spacingd` that leaves non-dict ``<key>_*`` entries alone."""

    def __call__(self, data: Mapping[Hashable, object], lazy=None):
        d = dict(data)
        prefixes = tuple(f"{k}_" for k in self.keys)
        hidden = {
            k: d.pop(k) for k in list(d) if isinstance(k, str) and k.startswith(prefixes) and not isinstance(d[k], dict)
        }
        out = super().__call__(d, lazy=lazy)
        out.update(hidden)
        return out
