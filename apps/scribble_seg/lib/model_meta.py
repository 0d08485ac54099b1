"""The sidecar of a published model (``model/<name>.json`` beside ``model/<name>.pt``): the spacing
and label set it was trained for. Written by the trainers when they publish, read by the infer
tasks before they serve the weights, so a model trained for other labels is never served."""

import json
import os
from typing import Dict, Optional


def meta_path(model_path: str) -> str:
    """The geometry sidecar of a published model: ``model/<name>.json`` for ``model/<name>.pt``."""
    return os.path.splitext(model_path)[0] + ".json"


def published_labels(meta_file: str) -> Optional[Dict[str, int]]:
    """The label set a published model was trained for, from its sidecar (``None`` without one)."""
    if not os.path.exists(meta_file):
        return None
    try:
        with open(meta_file) as f:
            labels = json.load(f).get("labels")
    except (OSError, ValueError):
        return None
    return {str(k): int(v) for k, v in labels.items()} if isinstance(labels, dict) else None


def label_set_mismatch(meta_file: str, labels: Dict[str, int]) -> Optional[str]:
    """Why a published model does not fit this server's ``labels``, or ``None`` when it does (or
    records none)."""
    trained = published_labels(meta_file)
    if trained is None or trained == {str(k): int(v) for k, v in labels.items()}:
        return None
    return f"trained for labels {trained}, this server has {dict(labels)}"
