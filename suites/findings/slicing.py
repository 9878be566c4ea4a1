"""Taking rows, classes or hidden units out of one call's input, its options kept consistent.

A call's input is its logits (the linear op: its hidden ``[N, d]``), its labels and its options
(``reference.options``; the linear op's weight ``[C, d]``, bias ``[C]`` and ignore_index).
Dropping rows drops the matching sample weights, cotangent and tangent rows and labels
(ignored rows included); dropping classes drops the class weights, the soft labels', tangent's
and an elementwise cotangent's columns (the linear op: the weight's and bias's rows), and
renumbers the sparse labels, refusing a candidate that drops a kept row's class.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from xentbench.reference.evaluate import LINEAR_OP

SPARSE_OPS = ("sparse_softmax_cross_entropy", LINEAR_OP)


@dataclass
class Input:
    """One call's input: logits (or hidden), labels and call options."""

    logits: np.ndarray
    labels: np.ndarray | None
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, ...]:
        """rows x classes (the linear op: rows x classes x hidden)."""
        if "weight" in self.options:
            return (*self.logits.shape[:1], *np.shape(self.options["weight"]))
        return tuple(self.logits.shape)


def class_axis(op: str, item: Input) -> int:
    """The logits' class axis (the options' class_axis, else the last)."""
    return int(item.options.get("class_axis", -1)) % item.logits.ndim


def classes(op: str, item: Input) -> int:
    """The number of classes of the input."""
    if op == LINEAR_OP:
        return int(np.shape(item.options["weight"])[0])
    return int(item.logits.shape[class_axis(op, item)])


def take_rows(op: str, item: Input, keep: list[int]) -> Input:
    """The input restricted to rows ``keep`` (axis 0 of everything that has rows)."""
    options = dict(item.options)
    for name in ("sample_weight", "cotangent", "tangent"):
        value = options.get(name)
        if isinstance(value, np.ndarray) and value.ndim >= 1:
            options[name] = value[keep]
    labels = None if item.labels is None else item.labels[keep]
    return Input(item.logits[keep], labels, options)


def _renumbered(labels, columns: list[int], n_classes: int, ignore) -> np.ndarray | None:
    """Sparse class ids after keeping ``columns``: None when a kept id's class is dropped;
    ignored and invalid ids stay as far outside ``[0, C)`` as they were."""
    position = np.full(n_classes, -1, dtype=np.int64)
    position[columns] = np.arange(len(columns))
    out = labels.astype(np.int64).copy()
    ignored = labels == ignore if ignore is not None else np.zeros(labels.shape, dtype=bool)
    valid = (labels >= 0) & (labels < n_classes) & ~ignored
    mapped = position[np.where(valid, labels, 0)]
    if (mapped[valid] < 0).any():
        return None
    out[valid] = mapped[valid]
    above = (labels >= n_classes) & ~ignored
    out[above] = len(columns) + (labels[above] - n_classes)
    return out.astype(labels.dtype)


def take_classes(op: str, item: Input, columns: list[int]) -> Input | None:
    """The input restricted to classes ``columns``, or None when that cannot keep its labels
    (a kept row's class dropped, or an ignore_index inside ``[0, C)``)."""
    n_classes, options = classes(op, item), dict(item.options)
    ignore = options.get("ignore_index")
    if ignore is not None and int(ignore) >= 0:
        return None  # an ignore id that is also a class (or above them) would change meaning
    labels = item.labels
    if op in SPARSE_OPS and labels is not None:
        labels = _renumbered(labels, columns, n_classes, ignore)
        if labels is None:
            return None
    if op == LINEAR_OP:
        options["weight"] = np.asarray(options["weight"])[columns]
        if options.get("bias") is not None:
            options["bias"] = np.asarray(options["bias"])[columns]
        return Input(item.logits, labels, options)
    axis = class_axis(op, item)
    logits = np.take(item.logits, columns, axis=axis)
    if labels is not None and op not in SPARSE_OPS:
        labels = np.take(labels, columns, axis=axis)
    if isinstance(options.get("class_weight"), np.ndarray):
        options["class_weight"] = options["class_weight"][columns]
    for name in ("tangent", "cotangent"):
        value = options.get(name)
        if isinstance(value, np.ndarray) and value.shape == item.logits.shape:
            options[name] = np.take(value, columns, axis=axis)
    return Input(logits, labels, options)


def take_hidden(op: str, item: Input, columns: list[int]) -> Input:
    """The linear op's input restricted to hidden units ``columns`` (hidden and weight)."""
    options = dict(item.options)
    options["weight"] = np.asarray(options["weight"])[:, columns]
    return Input(item.logits[:, columns], item.labels, options)


def with_logits(item: Input, logits: np.ndarray) -> Input:
    return replace(item, logits=logits)
