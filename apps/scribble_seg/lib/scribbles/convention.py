"""The scribble label convention of scribble_seg: the one place that knows which integer means what.

A **scribble map** is an integer volume of the size of its image:

==============================  ==============================================================
value                           meaning
==============================  ==============================================================
``UNANNOTATED`` (0)             not annotated: ignored by every loss
``k`` in ``labels`` (1..K)      a stroke of foreground class ``k``
``background_scribble_id``      a stroke on background (default ``K + 1``, conf-overridable)
==============================  ==============================================================

This is what an unpainted 3D Slicer labelmap with one segment per class plus a background
segment looks like. Predictions use *class indices* instead: ``BACKGROUND_CLASS`` (0) is
background and ``k`` is class ``k`` -- :meth:`ScribbleConvention.targets` converts a scribble
map into (class index, annotated mask) for the losses.

Other conventions are converted into ours at the edge, once:

* :func:`from_label_info` -- a labelmap whose ids are described by a ``label_info`` list
  (``[{"name": ..., "id"|"idx": ...}]``, what 3D Slicer and OHIF send): mapped **by name**.
* :func:`from_slicer_binary` -- Slicer's binary scribbles mode (``foreground_scribbles`` /
  ``background_scribbles`` segments plus ``selected_label_name``).
* :func:`from_ignore_index` -- datasets such as ACDC / MSCMR scribbles (0 = background,
  1..3 = classes, 4 = unannotated).

Every function raises a ``ValueError`` that names the offending values or names when its input
fits no convention. Arrays are numpy arrays of any shape (spatial ``(H, W, D)`` in this app);
:meth:`ScribbleConvention.targets` and :meth:`ScribbleConvention.annotated` also accept torch
tensors, so losses can call them on ``(B, 1, H, W, D)`` batches.
"""

import json
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

UNANNOTATED = 0
"""Scribble-map value of a voxel nobody annotated (ignored by every loss)."""

BACKGROUND_CLASS = 0
"""Class index of background in predictions and training targets."""

NO_SEED = -1
"""Value of a free (unseeded) voxel in a seed map: class indices where strokes are, ``NO_SEED``
elsewhere (what CRF clamping and random-walk seeding take, see :meth:`ScribbleConvention.seeds`)."""

FOREGROUND_SCRIBBLES = "foreground_scribbles"
BACKGROUND_SCRIBBLES = "background_scribbles"
BACKGROUND_SEGMENT_NAMES = ("background", BACKGROUND_SCRIBBLES, "background_strokes")
"""Segment names read as background strokes (compared case-insensitively).

The stock Slicer module drops segments named ``background``, ``foreground_scribbles`` and
``background_scribbles`` when it submits a label, so annotators submitting scribbles through
"Submit Label" name their background segment ``background_strokes``."""


def _norm(name: str) -> str:
    return str(name).strip().lower()


def parse_labels(labels: Union[str, Mapping[str, Any], Sequence[str], None]) -> Dict[str, int]:
    """Parse the app's ``labels`` conf into ``{name: id}`` with ids ``1..K``, ordered by id.

    Accepts a dict, a JSON object string (``'{"lv": 1, "rv": 2}'``), a JSON list of names or a
    comma-separated string of names (ids are then given in order, from 1). An entry
    ``"background": 0`` (a MONAI Label habit) is accepted and dropped: background is always 0.

    Raises:
        ValueError: unparsable JSON, empty or duplicate names, ids that are not the integers
            ``1..K`` each used once.
    """
    if labels is None or (isinstance(labels, str) and not labels.strip()):
        raise ValueError(
            'no labels: name the structures to segment with conf labels, e.g. \'{"liver": 1, "spleen": 2}\' '
            "(or a scribble_seg.json beside the studies, see lib/conf.py)"
        )
    if isinstance(labels, str):
        text = labels.strip()
        if text[0] in "{[":
            try:
                labels = json.loads(text)
            except json.JSONDecodeError as e:
                raise ValueError(f"labels conf is not valid JSON ({e.msg} at char {e.pos}): {text!r}") from None
        else:
            labels = [s.strip() for s in text.split(",")]
    if not isinstance(labels, Mapping):
        labels = {name: i for i, name in enumerate(labels, start=1)}

    parsed: Dict[str, int] = {}
    for name, idx in labels.items():
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"label names must be non-empty strings, got {name!r} in {dict(labels)}")
        if isinstance(idx, bool) or not isinstance(idx, (int, np.integer)):
            if isinstance(idx, str) and idx.strip().isdigit():
                idx = int(idx)
            else:
                raise ValueError(f"label {name!r} has id {idx!r}; ids must be integers")
        idx = int(idx)
        if idx == BACKGROUND_CLASS:
            if _norm(name) != "background":
                raise ValueError(f"id 0 is background; label {name!r} needs an id >= 1")
            continue
        if _norm(name) in {_norm(n) for n in parsed}:
            raise ValueError(f"label name {name!r} is given twice (names compare case-insensitively)")
        parsed[name.strip()] = idx
    ids = sorted(parsed.values())
    if ids != list(range(1, len(ids) + 1)):
        raise ValueError(f"label ids must be 1..K, each once; got {dict(sorted(parsed.items(), key=lambda kv: kv[1]))}")
    if not parsed:
        raise ValueError("labels conf names no foreground class")
    return dict(sorted(parsed.items(), key=lambda kv: kv[1]))


@dataclass(frozen=True)
class ScribbleConvention:
    """The scribble-map convention for one set of labels.

    Args:
        labels: ``{class name: id}`` with ids ``1..K`` (any form :func:`parse_labels` accepts).
        background_scribble_id: value of a background stroke; ``K + 1`` when ``None``. Must not be
            ``UNANNOTATED`` nor a class id.

    Example::

        >>> c = ScribbleConvention({"lv": 1, "myocardium": 2, "rv": 3})
        >>> c.background_scribble_id
        4
        >>> c.targets(np.array([0, 1, 3, 4]))
        (array([0, 1, 3, 0]), array([False,  True,  True,  True]))
    """

    labels: Mapping[str, int]
    background_scribble_id: Optional[int] = None
    _by_name: Dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        labels = parse_labels(self.labels)
        object.__setattr__(self, "labels", labels)
        bg = self.background_scribble_id
        if bg is None:
            bg = len(labels) + 1
        if isinstance(bg, str):
            if not bg.strip().lstrip("-").isdigit():
                raise ValueError(f"background_scribble_id must be an integer, got {bg!r}")
            bg = int(bg)
        bg = int(bg)
        if bg == UNANNOTATED or bg in labels.values() or bg < 0:
            raise ValueError(
                f"background_scribble_id {bg} collides with 'unannotated' ({UNANNOTATED}) or a class id "
                f"{sorted(labels.values())}; choose a value > {len(labels)}"
            )
        object.__setattr__(self, "background_scribble_id", bg)
        object.__setattr__(self, "_by_name", {_norm(n): i for n, i in labels.items()})

    @classmethod
    def from_conf(cls, conf: Mapping[str, str]) -> "ScribbleConvention":
        """Build from the app conf keys ``labels`` (required) and ``background_scribble_id``."""
        return cls(conf.get("labels"), conf.get("background_scribble_id") or None)

    def configured_name(self, name: str) -> str:
        """``name`` as the labels spell it (names compare case-insensitively).

        Raises:
            ValueError: ``name`` is no label.
        """
        names = {_norm(n): n for n in self.labels}
        if _norm(name) not in names:
            raise ValueError(f"{name!r} is not a label of this app; labels are {list(self.labels)}")
        return names[_norm(name)]

    @property
    def num_classes(self) -> int:
        """Number of prediction channels: K foreground classes plus background."""
        return len(self.labels) + 1

    @property
    def class_names(self) -> List[str]:
        """Names indexed by class index: ``["background", <class 1>, ..., <class K>]``."""
        return ["background"] + list(self.labels)

    @property
    def values(self) -> Tuple[int, ...]:
        """Every value a valid scribble map may hold."""
        return (UNANNOTATED, *self.labels.values(), self.background_scribble_id)

    def class_id(self, name: str) -> int:
        """Class id of ``name`` (case-insensitive); ``BACKGROUND_CLASS`` for background names."""
        key = _norm(name)
        if key in self._by_name:
            return self._by_name[key]
        if key in BACKGROUND_SEGMENT_NAMES:
            return BACKGROUND_CLASS
        raise ValueError(f"{name!r} is not a label of this app; labels are {self.class_names}")

    def describe(self) -> Dict[str, Any]:
        """The convention as JSON, for ``/info`` and for clients."""
        return {
            "unannotated": UNANNOTATED,
            "labels": dict(self.labels),
            "background_scribble": self.background_scribble_id,
            "background_segment_names": list(BACKGROUND_SEGMENT_NAMES),
        }

    def scribble_value(self, name: str) -> int:
        """Scribble-map value of a stroke named ``name``: its class id, or the background stroke value for
        a background segment name (case-insensitive). ``ValueError`` for any other name."""
        return self.background_scribble_id if _norm(name) in BACKGROUND_SEGMENT_NAMES else self.class_id(name)

    def value_names(self) -> Dict[int, str]:
        """``{scribble-map value: name}`` of every annotated value: the classes and the background stroke."""
        return {**{i: n for n, i in self.labels.items()}, self.background_scribble_id: BACKGROUND_SEGMENT_NAMES[0]}

    def describe_values(self) -> str:
        classes = ", ".join(f"{i} = {n}" for n, i in self.labels.items())
        return f"{UNANNOTATED} = unannotated, {classes}, {self.background_scribble_id} = background scribble"

    def validate(self, scribbles: np.ndarray) -> np.ndarray:
        """Check that ``scribbles`` is a scribble map of this convention; return it as ``int64``.

        Raises:
            ValueError: non-integral or non-finite values, or values outside :attr:`values`.
        """
        a = np.asarray(scribbles)
        if a.dtype.kind == "f":
            if not np.all(np.isfinite(a)):
                raise ValueError("scribble map holds NaN or Inf values")
            if not np.all(a == np.round(a)):
                raise ValueError("scribble map holds non-integer values; it must be an integer label map")
        elif a.dtype.kind not in "iub":
            raise ValueError(f"scribble map must be an integer label map, got dtype {a.dtype}")
        a = a.astype(np.int64, copy=False)
        bad = np.setdiff1d(present_values(a), self.values)
        if bad.size:
            shown = ", ".join(str(v) for v in bad[:10]) + (" ..." if bad.size > 10 else "")
            raise ValueError(f"scribble map holds values [{shown}] outside the convention ({self.describe_values()})")
        return a

    def annotated(self, scribbles):
        """Boolean mask of annotated voxels (numpy array or torch tensor, any shape)."""
        return scribbles != UNANNOTATED

    def targets(self, scribbles):
        """Split a scribble map into ``(class_index, annotated)``.

        ``class_index`` holds ``BACKGROUND_CLASS`` at background strokes, ``k`` at strokes of class
        ``k`` and, meaninglessly, ``BACKGROUND_CLASS`` at unannotated voxels: always use it with
        the ``annotated`` mask. Works on numpy arrays and torch tensors of any shape.
        """
        annotated = self.annotated(scribbles)
        is_bg = scribbles == self.background_scribble_id
        class_index = scribbles * (~is_bg)
        return class_index, annotated

    def seeds(self, scribbles, dtype=np.int64):
        """Seed map: the class index of each stroke, ``NO_SEED`` on unannotated voxels (a numpy
        one in ``dtype``; :meth:`seed_dtype` is the smallest that holds it)."""
        if isinstance(scribbles, np.ndarray):
            code = {self.background_scribble_id: BACKGROUND_CLASS, UNANNOTATED: NO_SEED}
            return _relabel(scribbles, code, None, dtype)
        class_index, annotated = self.targets(scribbles)
        return class_index.masked_fill(~annotated, NO_SEED)

    def seed_dtype(self) -> np.dtype:
        """The smallest signed integer type of this convention's seed maps: a full CT's seed map
        in ``int8`` is an eighth of the memory every pass over it reads (refinement requests)."""
        return np.result_type(np.min_scalar_type(-self.num_classes), np.int8)

    def from_seeds(self, seeds: np.ndarray) -> np.ndarray:
        """A seed map (class index, ``NO_SEED`` where unknown) as a scribble map: the inverse of
        :meth:`seeds` (relabelled training maps are stored this way)."""
        s = np.asarray(seeds)
        bad = np.setdiff1d(present_values(s), [NO_SEED, *range(self.num_classes)])
        if bad.size:
            raise ValueError(
                f"seed map holds values {bad.tolist()} that are neither class indices 0..{len(self.labels)} "
                f"nor NO_SEED ({NO_SEED})"
            )
        return np.where(s == NO_SEED, UNANNOTATED, self.from_dense(np.where(s == NO_SEED, BACKGROUND_CLASS, s)))

    def from_dense(self, mask: np.ndarray) -> np.ndarray:
        """A dense class-index mask (0 = background, k = class k) as a fully annotated scribble map."""
        m = np.asarray(mask)
        bad = np.setdiff1d(present_values(m), np.arange(self.num_classes))
        if bad.size:
            raise ValueError(f"dense mask holds values {bad.tolist()} that are not class indices 0..{len(self.labels)}")
        return np.where(m == BACKGROUND_CLASS, self.background_scribble_id, m).astype(np.int64)


def parse_label_info(label_info: Union[str, Sequence[Mapping[str, Any]]]) -> Dict[int, str]:
    """``label_info`` as sent by 3D Slicer / OHIF -> ``{value in the file: segment name}``.

    Accepts a list of ``{"name": ..., "id": ...}`` (scribbles infer requests) or
    ``{"name": ..., "idx": ...}`` (Slicer's "Submit Label"), or that list as a JSON string.
    """
    if isinstance(label_info, str):
        try:
            label_info = json.loads(label_info)
        except json.JSONDecodeError as e:
            raise ValueError(f"label_info is not valid JSON: {e.msg}") from None
    if not isinstance(label_info, (list, tuple)):
        raise ValueError(f"label_info must be a list of {{'name', 'id'}} entries, got {type(label_info).__name__}")
    out: Dict[int, str] = {}
    for entry in label_info:
        if not isinstance(entry, Mapping) or "name" not in entry or not ("id" in entry or "idx" in entry):
            raise ValueError(f"label_info entry {entry!r} needs a 'name' and an 'id' (or 'idx')")
        value = entry.get("id", entry.get("idx"))
        try:
            value = int(value)
        except (TypeError, ValueError):
            raise ValueError(f"label_info entry {entry!r} has a non-integer id") from None
        if value in out and _norm(out[value]) != _norm(entry["name"]):
            raise ValueError(f"label_info gives id {value} to both {out[value]!r} and {entry['name']!r}")
        out[value] = str(entry["name"])
    return out


def require_strokes(seeds: np.ndarray) -> None:
    """Raises ``ValueError`` when a seed map (:meth:`ScribbleConvention.seeds`) holds no stroke."""
    if not (np.asarray(seeds) != NO_SEED).any():
        raise ValueError("no scribbles in the label: draw at least one stroke")


def present_values(a: np.ndarray) -> np.ndarray:
    """Sorted distinct values of an integer array. Label maps hold a few small integers: counted in
    one pass (``bincount``) instead of ``np.unique``'s sort, which takes seconds on a full CT."""
    a = np.asarray(a)
    if _mostly_zero(a):  # a Slicer node or scribble map: the strokes are a sliver of the volume
        values = present_values(a.reshape(-1)[np.flatnonzero(a)])
        return np.union1d(np.zeros(1, a.dtype), values).astype(a.dtype)
    if a.size and (a.dtype.kind in "ub" or a.dtype.kind == "i"):
        lo, hi = int(a.min()), int(a.max())
        if hi - lo < 1 << 16:
            flat = a.ravel()
            if lo != 0 or a.dtype.kind == "b":
                flat = flat.astype(np.int64) - lo
            return (np.flatnonzero(np.bincount(flat)) + lo).astype(a.dtype)
    return np.unique(a)


def _check_values_described(label: np.ndarray, described: Iterable[int], what: str, nonzero=None) -> None:
    """Raises ``ValueError`` when ``label`` holds a value neither unannotated nor ``described``
    (``nonzero``: :func:`_nonzero` of ``label``, when already known)."""
    present = present_values(label) if nonzero is None else present_values(nonzero[1])
    bad = np.setdiff1d(present, [UNANNOTATED, *described])
    if bad.size:
        raise ValueError(f"label holds values {bad.tolist()[:10]} that {what} does not describe")


def _as_int_labelmap(label: np.ndarray) -> np.ndarray:
    """An integer label map as it is (a Slicer node of a full CT is ~27 M voxels: no widening
    copy); a float one checked to hold whole numbers and cast to int64."""
    a = np.asarray(label)
    if a.dtype.kind in "iu":
        return a
    if a.dtype.kind == "b":
        return a.astype(np.uint8)
    if a.dtype.kind == "f" and (not np.all(np.isfinite(a)) or not np.all(a == np.round(a))):
        raise ValueError("label map holds non-integer, NaN or Inf values")
    return a.astype(np.int64)


def from_label_info(
    label: np.ndarray, label_info: Union[str, Sequence[Mapping[str, Any]]], convention: ScribbleConvention
) -> np.ndarray:
    """Convert a labelmap described by ``label_info`` into a scribble map, mapping **by name**.

    A segment named like a class of ``convention`` becomes that class's strokes; one named
    ``background`` / ``background_scribbles`` / ``background_strokes`` becomes background strokes.
    Value 0 stays unannotated.

    Raises:
        ValueError: a segment name that is no label of the app (e.g. ``foreground_scribbles``,
            which needs :func:`from_slicer_binary`), or values in ``label`` that ``label_info``
            does not list.
    """
    a = _as_int_labelmap(label)
    info = parse_label_info(label_info)
    _check_values_described(a, info, "label_info")
    lut_from, lut_to = [], []
    for value, name in info.items():
        if value == UNANNOTATED:
            continue
        if _norm(name) == FOREGROUND_SCRIBBLES:
            raise ValueError(
                f"segment {name!r} has no class of its own: send 'selected_label_name' (binary scribbles mode)"
            )
        cls = convention.class_id(name)
        lut_from.append(value)
        lut_to.append(convention.background_scribble_id if cls == BACKGROUND_CLASS else cls)
    return _remap(a, lut_from, lut_to)


def _remap(a: np.ndarray, src: Sequence[int], dst: Sequence[int]) -> np.ndarray:
    """Vectorised value remap; values not in ``src`` become ``UNANNOTATED``."""
    out = np.full(a.shape, UNANNOTATED, dtype=np.int64)
    if src:
        src_arr, dst_arr = np.asarray(src), np.asarray(dst)
        order = np.argsort(src_arr)
        src_arr, dst_arr = src_arr[order], dst_arr[order]
        pos = np.clip(np.searchsorted(src_arr, a), 0, len(src_arr) - 1)
        hit = src_arr[pos] == a
        out[hit] = dst_arr[pos[hit]]
    return out


@dataclass(frozen=True)
class BinaryScribbles:
    """Slicer's binary scribbles mode, in our convention.

    Attributes:
        convention: a one-class convention whose class is the selected label (id 1, background
            scribble 2).
        scribbles: scribble map in ``convention`` (foreground strokes -> 1, background strokes -> 2).
        prior: boolean mask of the selected label's current segmentation carried in the same file
            (all False when the file has no segment of that name).
    """

    convention: ScribbleConvention
    scribbles: np.ndarray
    prior: np.ndarray


def from_slicer_binary(
    label: np.ndarray, label_info: Union[str, Sequence[Mapping[str, Any]]], selected_label_name: str
) -> BinaryScribbles:
    """Read the labelmap 3D Slicer sends to a scribbles infer task in binary mode.

    The file holds the whole segmentation node: label segments (the current segmentation) plus
    ``foreground_scribbles`` and ``background_scribbles`` segments, with ids in ``label_info``.
    Foreground strokes mean "the selected label here", background strokes mean "not the selected
    label here" (not necessarily image background).

    Raises:
        ValueError: no ``selected_label_name``, no foreground/background scribble segment in
            ``label_info``, or values in ``label`` that ``label_info`` does not list.
    """
    if not selected_label_name or not str(selected_label_name).strip():
        raise ValueError("binary scribbles need 'selected_label_name': the segment the strokes refine")
    a = _as_int_labelmap(label)
    info = parse_label_info(label_info)
    nonzero = _nonzero(a)  # found once for the three passes below
    _check_values_described(a, info, "label_info", nonzero)
    by_name: Dict[str, List[int]] = {}
    for value, name in info.items():
        by_name.setdefault(_norm(name), []).append(value)
    fg_ids = by_name.get(FOREGROUND_SCRIBBLES, [])
    bg_ids = by_name.get(BACKGROUND_SCRIBBLES, [])
    if not fg_ids and not bg_ids:
        raise ValueError(
            f"label_info has neither {FOREGROUND_SCRIBBLES!r} nor {BACKGROUND_SCRIBBLES!r}; "
            f"it names {sorted(set(info.values()))}"
        )
    convention = ScribbleConvention({str(selected_label_name).strip(): 1})
    code = {**{v: convention.background_scribble_id for v in bg_ids}, **{v: 1 for v in fg_ids}}
    scribbles = _relabel(a, code, UNANNOTATED, np.uint8, nonzero)
    prior = _relabel(a, {v: True for v in by_name.get(_norm(selected_label_name), [])}, False, bool, nonzero)
    return BinaryScribbles(convention=convention, scribbles=scribbles, prior=prior)


def _mostly_zero(a: np.ndarray) -> bool:
    """An integer array at least three quarters zeros: a label map whose non-zero voxels are
    cheaper to visit one by one (``flatnonzero``) than the whole volume through a lookup table,
    which widens every index to 64 bits."""
    return a.size > 0 and a.dtype.kind in "iub" and np.count_nonzero(a) <= a.size // 4


def _nonzero(a: np.ndarray) -> Optional[Tuple[np.ndarray, np.ndarray]]:
    """``(flat indices, values)`` of the non-zero voxels of a mostly-zero integer map
    (:func:`_mostly_zero`), else None."""
    if not _mostly_zero(a):
        return None
    where = np.flatnonzero(a)
    return where, a.reshape(-1)[where]


def _relabel(a: np.ndarray, mapping: Mapping[int, Any], default: Any, dtype, nonzero=None) -> np.ndarray:
    """``mapping[v]`` at every voxel of value ``v``, ``default`` elsewhere (``None``: the value
    itself): one table lookup per voxel (a Slicer node of a full CT holds ~27 M of them) when the
    values are small non-negative integers; only the non-zero voxels when they are few (strokes;
    ``nonzero``: their :func:`_nonzero`, when already known)."""
    nonzero = _nonzero(a) if nonzero is None else nonzero
    if nonzero is not None:
        where, values = nonzero
        out = np.full(a.shape, mapping.get(0, 0 if default is None else default), dtype=dtype)
        out.reshape(-1)[where] = _relabel(values, mapping, default, dtype)
        return out
    if a.size and a.dtype.kind in "iub" and a.min() >= 0 and a.max() < 1 << 16:
        n = int(a.max()) + 1
        table = np.arange(n, dtype=dtype) if default is None else np.full(n, default, dtype=dtype)
        for value, to in mapping.items():
            if 0 <= value < table.size:
                table[value] = to
        return table[a.view(np.uint8) if a.dtype.kind == "b" else a]  # a bool index would be a mask
    out = a.astype(dtype) if default is None else np.full(a.shape, default, dtype=dtype)
    for value, to in mapping.items():
        out[a == value] = to
    return out


def from_ignore_index(
    label: np.ndarray,
    convention: ScribbleConvention,
    class_names: Mapping[int, str],
    background_value: int = 0,
    unannotated_value: int = 4,
) -> np.ndarray:
    """Convert an "ignore index" scribble convention into ours, mapping classes by name through
    ``class_names`` (ACDC / MSCMR: 0 = background, 4 = unannotated and
    :data:`lib.datasets.importers.ACDC_CLASS_NAMES`).

    Raises:
        ValueError: values that are neither ``background_value``, ``unannotated_value`` nor a key
            of ``class_names``; class names that are no label of ``convention``.
    """
    if background_value == unannotated_value or background_value in class_names or unannotated_value in class_names:
        raise ValueError("background, unannotated and class values must all differ")
    a = _as_int_labelmap(label)
    known = [background_value, unannotated_value, *class_names]
    bad = np.setdiff1d(present_values(a), known)
    if bad.size:
        raise ValueError(
            f"label holds values {bad.tolist()[:10]} outside the source convention "
            f"({background_value} = background, {unannotated_value} = unannotated, classes {dict(class_names)})"
        )
    src = [background_value] + list(class_names)
    dst = [convention.background_scribble_id] + [convention.class_id(n) for n in class_names.values()]
    return _remap(a, src, dst)


def to_scribble_map(
    label: np.ndarray, convention: ScribbleConvention, label_info: Optional[Sequence[Mapping[str, Any]]] = None
) -> np.ndarray:
    """A saved label -> scribble map: by name through ``label_info`` when the label carries one,
    else the label must already be in ``convention`` (validated)."""
    if label_info:
        return from_label_info(label, label_info, convention)
    return convention.validate(label)
