"""The timed inputs: seeded per shape and kind, rounded to each dtype, and the bytes a call moves.

Logits are drawn ~ normal(0, ``LOGITS_SCALE``) in float64, labels from a stream of their own,
so every implementation, dtype and round of a shape sees the same values; ``OVERHEAD_SHAPE``
is the tiny input an implementation's fixed per-call cost is measured on.
"""

from __future__ import annotations

import numpy as np

from xentbench.adapters.base import LABELLED_OPS, numpy_dtype
from xentbench.reference.evaluate import output_shape

OVERHEAD_SHAPE = (1, 2)
LOGITS_SCALE = 4.0  # logits ~ normal(0, 4): both signs, several units apart, like real classifiers
_KIND_STREAM = {"logits": 0, "soft": 1, "sparse": 2, "sigmoid": 3}
_LABEL_KIND = {
    "softmax_cross_entropy": "soft",
    "sparse_softmax_cross_entropy": "sparse",
    "sigmoid_cross_entropy": "sigmoid",
}


def moved_bytes(
    op: str, batch: int, classes: int, itemsize: int, pass_: str, reduced: bool = False
) -> int:
    """Bytes a memory-bound implementation must move: inputs read plus outputs written.

    Logits are read once; labels are read once (int64 class ids for the sparse op, logits-shaped
    otherwise); the output is logits-shaped for softmax, log_softmax and the sigmoid loss and one
    value per row for the reductions (one value in all when ``reduced``: a mean or sum over
    the batch). ``forward+backward`` also writes the logits-shaped gradient. This is the least
    traffic of a fused single pass, so ``roofline_fraction`` is the share of the memory-bound
    optimum an implementation reaches (above 1 only for inputs that fit in cache, where DRAM
    bandwidth is not the limit).
    """
    full = batch * classes * itemsize
    per_row = batch * itemsize
    labels = {"soft": full, "sigmoid": full, "sparse": batch * 8}.get(_LABEL_KIND.get(op), 0)
    output = full if output_shape(op, "value", (batch, classes)) == (batch, classes) else per_row
    output = itemsize if reduced else output
    gradient = full if pass_ == "forward+backward" else 0
    return full + labels + output + gradient


def _generate(kind: str, batch: int, classes: int, seed: int) -> np.ndarray:
    """One input in float64 (int64 for class ids), from its own seeded stream."""
    rng = np.random.default_rng([seed, batch, classes, _KIND_STREAM[kind]])
    if kind == "logits":
        return rng.normal(0.0, LOGITS_SCALE, size=(batch, classes))
    if kind == "sparse":
        return rng.integers(0, classes, size=batch, dtype=np.int64)
    values = rng.random((batch, classes))
    if kind == "soft":
        values /= values.sum(axis=-1, keepdims=True)  # one probability distribution per row
    return values


class InputFactory:
    """Seeded inputs for any op and dtype, keeping the float64 masters of one shape at a time.

    Tasks are planned shape by shape, so consecutive tasks reuse the masters and only round
    them to their dtype; asking for another shape (or ``clear``) frees the previous ones.
    """

    def __init__(self, seed: int):
        self.seed = seed
        self._shape: tuple[int, int] | None = None
        self._masters: dict[str, np.ndarray] = {}

    def clear(self) -> None:
        self._shape, self._masters = None, {}

    def _master(self, kind: str, batch: int, classes: int) -> np.ndarray:
        if self._shape != (batch, classes):
            self.clear()
            self._shape = (batch, classes)
        if kind not in self._masters:
            self._masters[kind] = _generate(kind, batch, classes, self.seed)
        return self._masters[kind]

    def inputs(
        self, op: str, batch: int, classes: int, dtype: str
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """(logits, labels) as ``Adapter.prepare`` expects them, rounded to ``dtype``."""
        target = numpy_dtype(dtype)
        logits = self._master("logits", batch, classes).astype(target)
        if op not in LABELLED_OPS:
            return logits, None
        labels = self._master(_LABEL_KIND[op], batch, classes)
        return logits, labels if labels.dtype == np.int64 else labels.astype(target)
