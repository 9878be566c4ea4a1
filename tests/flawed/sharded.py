"""Vocabulary-parallel cross-entropy (Megatron's algorithm on simulated shards), careful and
flawed, as third-party plugins.

``sharded_careful`` follows ``reference.shards``: per shard the max and the sum of
exp(x - M) after the all-reduced max M, the all-reduced sum s, the label's logit from the
shard holding it, label smoothing as the sum over shards of each shard's sum of -log p, in
extended precision (NumPy ``longdouble``), rounded once; the gradient p - (1 - eps) onehot -
eps / C per shard. It must pass every finite case. ``sharded_flawed`` makes one mistake each,
as vocabulary-parallel kernels have:

- ``smoothing-over-local-v``: each shard averages its -log p over its own V_s classes instead
  of dividing the global sum by C (the smoothing term about k times too large);
- ``sum-reduced-twice``: the partial sums all-reduced again after every shard already held
  the global sum, so s is k times too large and the loss off by +log(k);
- ``boundary-off-by-one``: a shard claims the labels in ``(start, stop]`` instead of
  ``[start, stop)``, so the first class of every shard is read from the shard before it (its
  last logit, the index clamped) and class 0 from none.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from flawed.options import WideArithmeticAdapter
from xentbench.adapters.base import Implementation
from xentbench.reference.shards import bounds

ENTRY_POINTS = {
    "sharded_careful": "flawed.sharded:CarefulSharded",
    "sharded_flawed": "flawed.sharded:FlawedSharded",
}
SPARSE = "sparse_softmax_cross_entropy"
MISTAKES = ("smoothing-over-local-v", "sum-reduced-twice", "boundary-off-by-one")


class _Sharded:
    """The arithmetic, in the internals' dtype; ``mistake`` (None: careful) selects one flaw."""

    def __init__(self, mistake: str | None = None) -> None:
        self.mistake = mistake

    def _owner(self, k, start, stop):
        """(rows the shard claims, the local index it reads)."""
        if self.mistake == "boundary-off-by-one":
            return (k > start) & (k <= stop), np.clip(k - start, 0, stop - start - 1)
        return (k >= start) & (k < stop), np.clip(k - start, 0, stop - start - 1)

    def compute(self, quantity, logits, labels, options):
        wide = np.float64 if np.asarray(logits).dtype == np.float64 else np.float32
        x = np.asarray(logits).astype(np.float64).astype(wide)
        k = np.asarray(labels).astype(np.int64)
        count, classes = x.shape
        if ((k < 0) | (k >= classes)).any():
            raise ValueError(f"class ids must lie in [0, {classes})")
        shards = int(options.get("shards", 1))
        eps = wide(float(options.get("label_smoothing", 0.0)))
        spans = bounds(classes, shards)
        with np.errstate(all="ignore"):
            top = np.max([x[:, a:b].max(axis=1) for a, b in spans], axis=0)[:, None]
            total = np.sum([np.exp(x[:, a:b] - top).sum(axis=1) for a, b in spans], axis=0)
            if self.mistake == "sum-reduced-twice":
                total = total * shards
            log_s = np.log(total)[:, None]
            log_p = x - top - log_s  # each shard's slice of it is that shard's
        rows = np.arange(count)
        onehot = np.zeros(x.shape, wide)
        for a, b in spans:
            mine, local = self._owner(k, a, b)
            onehot[rows[mine], a + local[mine]] = 1
        spread = np.zeros(x.shape, wide)  # the smoothing's weight on each -log p
        for a, b in spans:
            size = b - a if self.mistake == "smoothing-over-local-v" else classes
            spread[:, a:b] = eps / wide(size)
        weights = (1 - eps) * onehot + spread
        if quantity == "value":
            terms = np.where(weights == 0, 0, weights * log_p)  # summed per shard, then reduced
            # x - M past the dtype's range (logits of both signs near the max): that difference
            # in float64, then its small weight, so a finite smoothing term stays finite
            over = ~np.isfinite(log_p) & np.isfinite(x) & (weights != 0)
            if over.any():
                wide64 = (x.astype(np.float64) - top.astype(np.float64)) - log_s
                terms = np.where(over, (weights * wide64).astype(wide), terms)
            return -np.sum([terms[:, a:b].sum(axis=1) for a, b in spans], axis=0)
        grad = np.exp(log_p) * weights.sum(axis=1, keepdims=True) - weights
        cotangent = np.asarray(options.get("cotangent", np.ones(count))).astype(wide)
        return cotangent.reshape(-1, 1) * grad


class _ShardedAdapter(WideArithmeticAdapter):
    kinds: ClassVar[dict[str, _Sharded]]

    def implementation(self, name: str) -> Implementation:
        return Implementation(
            name=name,
            op=SPARSE,
            dtypes=("float16", "bfloat16", "float32", "float64"),
            gradient=True,
            options=("shards", "label_smoothing", "cotangent"),
        )


class CarefulSharded(_ShardedAdapter):
    name = "sharded_careful"
    kinds: ClassVar[dict[str, _Sharded]] = {"sharded_careful:internals": _Sharded()}


class FlawedSharded(_ShardedAdapter):
    name = "sharded_flawed"
    kinds: ClassVar[dict[str, _Sharded]] = {
        f"sharded_flawed:{mistake}": _Sharded(mistake) for mistake in MISTAKES
    }
