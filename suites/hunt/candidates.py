"""A hunt candidate: one row of logits (and its label) exactly representable in the dtype.

The hunt searches rows, not batches: a row is the unit the ops reduce over, and rows of one
size are evaluated many at a time (``suites.hunt.oracle``). Logits are finite or ``-inf`` (a
mask): ``+inf`` and NaN inputs have a handful of exact answers the catalog's ``special`` family
covers exhaustively, and would otherwise win every search with the same known convention.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from xentbench.reference.dtypes import finfo, numpy_dtype

# Class counts the hunt moves between: few shapes, since each new one costs a compilation in
# some frameworks (JAX eager: ~1-2 s per shape and quantity, measured).
SIZES: tuple[int, ...] = (1, 2, 3, 16, 256, 1024)
SPARSE = "sparse_softmax_cross_entropy"
SOFT = "softmax_cross_entropy"
SIGMOID = "sigmoid_cross_entropy"


@dataclass(frozen=True)
class Candidate:
    """One row: float64 logits (values of the dtype), its label, and how it was made."""

    logits: np.ndarray  # [C] float64, every value a ``dtype`` number or -inf
    label: np.ndarray | int | None  # class id (sparse), [C] float64 (soft, sigmoid), None
    origin: str  # the seed and the mutations that led here, e.g. "quantised|shift 2^20"

    @property
    def classes(self) -> int:
        return int(self.logits.shape[0])

    def valid(self) -> bool:
        """False for a sparse label outside [0, C): invalid input, judged on its own."""
        return not isinstance(self.label, int) or 0 <= self.label < self.classes


def representable(values: np.ndarray, dtype: str) -> np.ndarray:
    """``values`` rounded to ``dtype`` and back to float64, finite ones clipped to its range
    (so rounding never makes a +inf); -inf stays a mask."""
    limit = float(finfo(dtype).max)
    values = np.asarray(values, dtype=np.float64)
    masked = np.isneginf(values)
    clipped = np.clip(np.nan_to_num(values, nan=0.0, posinf=limit), -limit, limit)
    rounded = clipped.astype(numpy_dtype(dtype)).astype(np.float64)
    return np.where(masked, -np.inf, rounded)


def make(logits: np.ndarray, label, origin: str, op: str, dtype: str) -> Candidate:
    """A candidate with logits and float labels made representable (sparse labels as int)."""
    logits = representable(logits, dtype)
    if op == SPARSE:
        label = int(label)
    elif label is not None:
        label = representable(np.clip(np.asarray(label, dtype=np.float64), -1e4, 1e4), dtype)
    return Candidate(logits, label, origin)


def stack(candidates: list[Candidate], op: str, dtype: str):
    """The candidates as one call's inputs: logits [B, C] in ``dtype``; labels or None."""
    target = numpy_dtype(dtype)
    logits = np.stack([c.logits for c in candidates]).astype(target)
    if op == SPARSE:
        return logits, np.array([c.label for c in candidates], dtype=np.int64)
    if candidates[0].label is None:
        return logits, None
    return logits, np.stack([c.label for c in candidates]).astype(target)


def input_hash(logits: np.ndarray, labels: np.ndarray | None) -> str:
    """A stable short name for an input: sha256 of its dtypes, shapes and bytes (12 hex)."""
    digest = hashlib.sha256()
    for array in (logits, labels):
        if array is None:
            digest.update(b"none;")
            continue
        digest.update(f"{array.dtype.name}:{array.shape};".encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()[:12]
