"""Checks of the inference parameters every model shares, run before any inference.

MONAI Label reads ``device``, ``result_extension``, ``result_dtype`` and ``result_compress`` from
the request only once the network has run: a typo in any of them cost a whole inference and came
back as a 500 from the writer, or -- for ``device`` -- ran silently somewhere else. The
model-specific parameters are checked by their task (``largest_component`` in
:class:`lib.infers.segmentation.ScribbleSegmentation`, the refinement's in
:class:`lib.infers.refine.ScribbleRefinement`); unknown keys pass, since 3D Slicer and OHIF send
their own.
"""

import re
from typing import Any, Mapping

import numpy as np
import torch

from lib.errors import RequestError

RESULT_EXTENSIONS = (".nii.gz", ".nii", ".nrrd", ".seg.nrrd", ".mha")
"""Label formats the writer produces that 3D Slicer and OHIF read back."""
RESULT_DTYPES = ("uint8", "int8", "uint16", "int16", "uint32", "int32", "int64", "float32", "float64")
DEVICE = re.compile(r"^(cpu|cuda(:\d+)?)$")
BOOLEANS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def _device(value: Any) -> None:
    names = value if isinstance(value, (list, tuple)) else [value]  # /info offers a list; its first is used
    for name in names[:1]:
        if not isinstance(name, str) or not DEVICE.match(name.strip()):
            raise RequestError(f"device must be 'cpu', 'cuda' or 'cuda:N'; got {value!r}")
        index = int(name.split(":")[1]) if ":" in name else 0
        if name.startswith("cuda") and torch.cuda.is_available() and index >= torch.cuda.device_count():
            raise RequestError(
                f"device {name!r}: this server has {torch.cuda.device_count()} GPU(s), "
                f"cuda:0 to cuda:{torch.cuda.device_count() - 1}"
            )


def check_infer_request(request: Mapping[str, Any], max_label: int = 255) -> None:
    """Raises a 422 :class:`RequestError` naming the parameter and what to send.

    ``max_label``: the largest value a result holds (the app's largest class index); a
    ``result_dtype`` that cannot hold it is refused.
    """
    if request.get("device") not in (None, "", []):
        _device(request["device"])
    ext = request.get("result_extension")
    if ext not in (None, "") and (not isinstance(ext, str) or ext.lower() not in RESULT_EXTENSIONS):
        raise RequestError(f"result_extension must be one of {', '.join(RESULT_EXTENSIONS)}; got {ext!r}")
    dtype = request.get("result_dtype")
    if dtype not in (None, ""):
        if not isinstance(dtype, str) or dtype.strip().lower() not in RESULT_DTYPES:
            raise RequestError(f"result_dtype must be one of {', '.join(RESULT_DTYPES)}; got {dtype!r}")
        kind = np.dtype(dtype.strip().lower())
        if kind.kind in "iu" and np.iinfo(kind).max < max_label:
            raise RequestError(f"result_dtype {dtype!r} cannot hold label {max_label}; send uint8 or wider")
    compress = request.get("result_compress")
    if compress is not None and not isinstance(compress, bool) and str(compress).strip().lower() not in BOOLEANS:
        raise RequestError(f"result_compress must be true or false; got {compress!r}")
