"""Numeric method parameters from a request: the refinement methods' parameter dataclasses
(:class:`lib.scribbles.crf.DenseCRFParams`, :class:`lib.scribbles.random_walk.RandomWalkParams`)
take their overrides from the request keys named like their fields."""

from dataclasses import fields, replace
from typing import Any, Mapping, Optional, Type, TypeVar

P = TypeVar("P")


def params_from_request(cls: Type[P], request: Mapping[str, Any], base: Optional[P] = None, what: str = "") -> P:
    """``base`` (default ``cls()``) with every field the request names replaced by the request's
    value, converted to the field's type through ``float`` (numbers or numeric strings; ``None``
    and ``""`` keep the default).

    Raises:
        ValueError: ``"<what> parameter <name> must be a number, got <value>"``.
    """
    base = base if base is not None else cls()
    updates = {}
    for f in fields(cls):
        value = request.get(f.name)
        if value in (None, ""):
            continue
        try:
            updates[f.name] = type(getattr(base, f.name))(float(value))
        except (TypeError, ValueError):
            raise ValueError(f"{what} parameter {f.name} must be a number, got {value!r}".strip()) from None
    return replace(base, **updates)
