"""``xentbench check``'s inputs, read and checked before any framework sees them.

A framework must only ever be blamed for what it does with valid input, so the user's arrays
are refused here (one line, exit 2) when they cannot be an input of the op: no class axis, no
elements, complex or non-numeric values, labels of the wrong kind or shape, a labelled op
without labels. Valid input is normalised: with the classes on the last axis, rows flattened to
``[N, C]`` (every op works row by row, or element by element); with ``--class-axis K`` naming
another axis, the arrays stay as given and every call gets ``class_axis=K`` (torch's
``[N, C, d...]``, Keras's and JAX's ``axis=``); sparse labels of any integer width to int64.
"""

from __future__ import annotations

import zipfile

import numpy as np

from xentbench.adapters.base import DTYPES, LABELLED_OPS
from xentbench.suites.cli.usage import UsageError

SPARSE = "sparse_softmax_cross_entropy"


def load_array(spec: str, option: str) -> np.ndarray:
    """The array in ``spec``: a ``.npy`` file, or ``file.npz:name`` for one array of an archive."""
    path, name = _split(spec)
    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise UsageError(f"{option} {spec!r}: cannot read array: {_reason(exc)}") from None
    if isinstance(loaded, np.lib.npyio.NpzFile):
        with loaded:
            names = list(loaded.files)
            if name is None or name not in names:
                given = "no array name" if name is None else f"no array {name!r}"
                raise UsageError(
                    f"{option} {spec!r}: {given} in the .npz; valid: "
                    + ", ".join(f"{path}:{n}" for n in names)
                )
            try:
                return loaded[name]
            except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
                raise UsageError(f"{option} {spec!r}: cannot read array: {_reason(exc)}") from None
    if name is not None:
        raise UsageError(f"{option} {spec!r}: {path} is a .npy file; give it without ':{name}'")
    return loaded


def _split(spec: str) -> tuple[str, str | None]:
    head, sep, tail = str(spec).rpartition(":")
    if sep and head.lower().endswith(".npz"):
        return head, tail
    return str(spec), None


def _reason(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:200]


def normalise(op: str, logits: np.ndarray, labels: np.ndarray | None, class_axis=None):
    """(logits, labels, class_axis) for the calls, or UsageError. ``class_axis`` is the user's
    ``--class-axis``: None (or the last axis) flattens the rows to ``[N, C]`` as before and
    returns None; another axis keeps the arrays as given and returns it, non-negative."""
    logits = _checked_logits(logits)
    axis = _class_axis(op, class_axis, logits.ndim)
    if op not in LABELLED_OPS:
        if labels is not None:
            raise UsageError(f"--labels given, but {op} takes no labels; drop --labels")
        return (logits, None, axis) if axis is not None else (_rows(logits), None, None)
    if labels is None:
        raise UsageError(f"{op} needs --labels (a .npy file); none given")
    labels = np.asarray(labels)
    where = logits.ndim - 1 if axis is None else axis
    if op == SPARSE:
        lead = logits.shape[:where] + logits.shape[where + 1 :]
        labels = _sparse_labels(labels, logits.shape, lead, logits.shape[where])
    else:
        labels = _dense_labels(labels, logits.shape)
    if axis is not None:
        return logits, labels, axis
    return _rows(logits), labels.reshape(-1, *labels.shape[where:]), None


def _rows(logits: np.ndarray) -> np.ndarray:
    return logits.reshape(-1, logits.shape[-1])


def _class_axis(op: str, class_axis: int | None, ndim: int) -> int | None:
    """``--class-axis`` as a non-negative axis of the logits, None for the last; UsageError
    when it is outside their axes or the op has no class axis."""
    if class_axis is None:
        return None
    if op == "sigmoid_cross_entropy":
        raise UsageError(f"{op} is elementwise and has no class axis; drop --class-axis")
    if not -ndim <= class_axis < ndim:
        raise UsageError(
            f"--class-axis {class_axis} is outside the logits' {ndim} axes; "
            f"valid: {-ndim} to {ndim - 1}"
        )
    axis = class_axis % ndim
    return None if axis == ndim - 1 else axis


def _checked_logits(logits: np.ndarray) -> np.ndarray:
    logits = np.asarray(logits)
    kind = logits.dtype.kind
    if kind == "c":
        raise UsageError(
            f"logits are complex ({logits.dtype}); valid: real floats ({', '.join(DTYPES)})"
        )
    if kind not in "fiu" and logits.dtype.name != "bfloat16":
        raise UsageError(f"logits dtype {logits.dtype} is not numeric; valid: {', '.join(DTYPES)}")
    if logits.ndim == 0:
        raise UsageError("logits are a 0-d scalar; valid: an array with classes on the last axis")
    if logits.size == 0:
        raise UsageError(f"logits of shape {logits.shape} have no elements; valid: non-empty")
    return logits


def _sparse_labels(labels: np.ndarray, shape, lead: tuple[int, ...], classes: int) -> np.ndarray:
    """The class ids as int64 in their shape ``lead`` (the logits' without the class axis)."""
    if labels.dtype.kind not in "iu":
        raise UsageError(
            f"sparse labels have dtype {labels.dtype}; valid: integer class ids "
            f"(any width) in [0, {classes})"
        )
    if labels.shape != lead:
        raise UsageError(
            f"sparse labels of shape {labels.shape} do not match logits of shape {shape}; "
            f"valid: shape {lead} (one class id per row)"
        )
    if labels.dtype.kind == "u" and labels.size and labels.max() > np.iinfo(np.int64).max:
        raise UsageError(f"sparse label {labels.max()} does not fit int64; valid: [0, {classes})")
    return labels.astype(np.int64)


def _dense_labels(labels: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    if labels.dtype.kind not in "fiub" and labels.dtype.name != "bfloat16":
        raise UsageError(f"labels have dtype {labels.dtype}; valid: real numbers")
    if labels.shape != shape:
        raise UsageError(
            f"labels of shape {labels.shape} do not match logits of shape {shape}; "
            f"valid: shape {shape}"
        )
    return labels
