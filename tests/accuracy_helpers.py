"""Helpers shared by the accuracy tests: seeded inputs, stepping by ULPs, which stored rows had
finite inputs."""

from __future__ import annotations

import numpy as np

from xentbench.adapters.base import numpy_dtype
from xentbench.suites.accuracy.suite import case_inputs

RNG_SEED = 20240611
CLI_SEED = 0  # the seed `xentbench run` draws the catalog's inputs with by default


def random_case(op: str, dtype: str, shape=(3, 50), offset: float = 0.0):
    """Normal logits (std 4, plus ``offset``) and labels valid for ``op``, in ``dtype``."""
    rng = np.random.default_rng(RNG_SEED)
    logits = (rng.normal(scale=4.0, size=shape) + offset).astype(numpy_dtype(dtype))
    if op == "sparse_softmax_cross_entropy":
        return logits, rng.integers(0, shape[-1], size=shape[:-1])
    if op == "softmax_cross_entropy":
        return logits, rng.dirichlet(np.ones(shape[-1]), size=shape[:-1]).astype(logits.dtype)
    if op == "sigmoid_cross_entropy":
        return logits, rng.uniform(0, 1, size=shape).astype(logits.dtype)
    return logits, None


def steps(values: np.ndarray, k: int, dtype: str) -> np.ndarray:
    """``values`` (representable in dtype) moved k representable numbers up (k < 0: down)."""
    out = np.asarray(values, dtype=numpy_dtype(dtype))
    target = np.full_like(out, np.inf if k > 0 else -np.inf)
    for _ in range(abs(k)):
        out = np.nextafter(out, target)
    return out


def has_finite_inputs(row) -> bool:
    """Whether the stored accuracy row's case drew only finite logits (and float labels) at the
    CLI's default seed: the inputs on which careful implementations must never be flagged."""
    logits, labels = case_inputs(row["case_id"], row["dtype"], CLI_SEED)
    finite = np.isfinite(logits.astype(np.float64)).all()
    if labels is not None and np.asarray(labels).dtype.kind == "f":
        finite &= np.isfinite(np.asarray(labels).astype(np.float64)).all()
    return bool(finite)
