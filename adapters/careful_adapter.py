"""The careful kernel: every op computed with exactly the internals the error budget assumes.

``suites.judge.budget`` states what a good implementation achieves: the shifted algorithms
(subtract the row max, exponentiate, sum, take logs) with internals of unit roundoff u_acc and
one rounding to the output dtype. This backend is that implementation, in NumPy: float32
internals for float16 and bfloat16 inputs (the max shift, exp and a pairwise sum in float32,
then one rounding of the output), the dtype's own precision for float32 and float64. It is
the yardstick of a finding (``suites.findings.careful``): "N x the error of a careful kernel".
Where it fails on finite input, the budget is wrong there, not the kernel.

Registered as a plugin (pyproject's ``[project.entry-points."xentbench.adapters"]``) and
declared a baseline: reports count it apart from the implementations people rely on.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from xentbench.adapters.base import (
    DTYPES,
    Adapter,
    Call,
    Implementation,
    PreparedCall,
    numpy_dtype,
)
from xentbench.reference import evaluate as reference_ops
from xentbench.reference.evaluate import LINEAR_OP, OPS

BACKEND = "careful"
# The ops taking logits (the linear head's logits come from a matmul the budget bounds apart).
CAREFUL_OPS: tuple[str, ...] = tuple(op for op in OPS if op != LINEAR_OP)
SIXTEEN_BIT = ("float16", "bfloat16")
ADAPTATION = (
    "the budget's own algorithm in NumPy: max shift, exp and a pairwise sum in float32 for "
    "16-bit inputs (the dtype's precision otherwise), one rounding of the output"
)


def internal_dtype(dtype: str) -> np.dtype:
    """The internals the budget assumes: float32 for the 16-bit dtypes, the dtype's own else."""
    return np.dtype(np.float32) if dtype in SIXTEEN_BIT else numpy_dtype(dtype)


def pairwise_sum(values: np.ndarray) -> np.ndarray:
    """The sum over the last axis, kept: NumPy sums a contiguous axis pairwise (blocks of 128
    summed 8-way, then halved recursively), in the array's own dtype."""
    return np.add.reduce(np.ascontiguousarray(values), axis=-1, keepdims=True)


def shifted(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(m, d = x - m, log s, p) per row in x's dtype; m is the row max, 0 where it is not
    finite (a row of -inf has s = 0 and no softmax, as the reference says)."""
    row_max = x.max(axis=-1, keepdims=True)
    m = np.where(np.isfinite(row_max), row_max, 0).astype(x.dtype)
    d = x - m
    e = np.exp(d)
    s = pairwise_sum(e)
    return m, d, np.log(s), e / s


def _where_label(y: np.ndarray, values: np.ndarray) -> np.ndarray:
    """y * values, 0 where the label is 0 (0 * -inf on a masked class adds nothing)."""
    return np.where(y == 0, 0, y * values)


def class_ids(labels: Any, classes: int) -> np.ndarray:
    """The sparse labels as int64; a class id outside [0, C) is invalid input and raises."""
    k = np.asarray(labels).astype(np.int64)
    if ((k < 0) | (k >= classes)).any():
        raise ValueError(f"class ids must lie in [0, {classes})")
    return k


def _soft_terms(x: np.ndarray, y: np.ndarray, m, d: np.ndarray, log_s) -> np.ndarray:
    """y_i (log s - d_i), 0 where y_i = 0; where x_i - m overflows (logits spanning more than
    the dtype's range) y_i (m + log s) - y_i x_i instead: both products are in range, and
    their signs differ, so nothing cancels."""
    terms = _where_label(y, log_s - d)
    overflowed = ~np.isfinite(d) & np.isfinite(x)
    if overflowed.any():
        apart = _where_label(y, m + log_s) - _where_label(y, x)
        terms = np.where(overflowed, apart, terms)
    return terms


def _value(op: str, x: np.ndarray, y: Any) -> np.ndarray:
    """The op's value in x's dtype."""
    if op == "sigmoid_cross_entropy":
        return np.maximum(x, 0) - x * y + np.log1p(np.exp(-np.abs(x)))
    m, d, log_s, p = shifted(x)
    if op == "softmax":
        return p
    if op == "log_softmax":
        return d - log_s
    if op == "logsumexp":
        return (m + log_s)[..., 0]
    if op == "softmax_cross_entropy":
        return pairwise_sum(_soft_terms(x, y, m, d, log_s))[..., 0]
    k = class_ids(y, x.shape[-1])
    return (log_s - np.take_along_axis(d, k[..., None], axis=-1))[..., 0]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    tail = np.exp(-np.abs(x))
    return np.where(x >= 0, 1, tail) / (1 + tail)


def _grad(op: str, x: np.ndarray, y: Any, g: np.ndarray) -> np.ndarray:
    """The vector-Jacobian product with cotangent ``g`` (of the output's shape), in x's dtype;
    0 wherever the cotangent is 0 (over a whole row for the softmax family): a zero cotangent
    contributes nothing, even on a row of -inf logits that has no softmax."""
    if op == "sigmoid_cross_entropy":
        silent = g == 0
    elif g.shape == x.shape:
        silent = (g == 0).all(axis=-1, keepdims=True)
    else:
        silent = (g == 0)[..., None]
    return np.where(silent, 0, _vjp(op, x, y, g))


def _vjp(op: str, x: np.ndarray, y: Any, g: np.ndarray) -> np.ndarray:
    """The vector-Jacobian product of each op (before a zero cotangent is made silent)."""
    if op == "sigmoid_cross_entropy":
        return g * (_sigmoid(x) - y)
    _, _, _, p = shifted(x)
    if op == "softmax":
        return p * (g - pairwise_sum(g * p))
    if op == "log_softmax":
        return g - p * pairwise_sum(g)
    row = g[..., None]
    if op == "logsumexp":
        return row * p
    if op == "softmax_cross_entropy":
        return row * (p * pairwise_sum(y) - y)
    k = class_ids(y, x.shape[-1])
    return row * (p - (np.arange(x.shape[-1]) == k[..., None]))


def careful(op: str, quantity: str, logits, labels, dtype: str, cotangent=None) -> np.ndarray:
    """The op's ``quantity`` ("value" or "grad", with ``cotangent``, ones when None) on the
    inputs, computed in ``internal_dtype(dtype)`` and rounded once to ``dtype``."""
    internal = internal_dtype(dtype)
    x = np.asarray(logits).astype(internal)
    y = labels
    if labels is not None and op != "sparse_softmax_cross_entropy":
        y = np.asarray(labels).astype(internal)
    with np.errstate(all="ignore"):
        if quantity == "value":
            result = _value(op, x, y)
        else:
            shape = reference_ops.output_shape(op, "value", x.shape)  # the cotangent's
            g = np.ones(shape, internal) if cotangent is None else cotangent
            result = _grad(op, x, y, np.asarray(g).astype(internal))
        return np.asarray(result).astype(numpy_dtype(dtype))  # past the range: inf, silently


class CarefulAdapter(Adapter):
    """``careful:<op>``: value and gradient (with a cotangent) of every logits op, every dtype."""

    name = BACKEND

    def version(self) -> str:
        return f"careful 1.0 (numpy {np.__version__})"

    def implementations(self) -> tuple[Implementation, ...]:
        return tuple(
            Implementation(
                name=f"{BACKEND}:{op}",
                op=op,
                dtypes=DTYPES,
                gradient=True,
                options=("cotangent",),
                adaptation=ADAPTATION,
                baseline=True,
            )
            for op in CAREFUL_OPS
        )

    def prepare(self, call: Call, logits: np.ndarray, labels: np.ndarray | None) -> PreparedCall:
        """Bind the inputs; ``run`` computes the op with the budget's internals."""
        op, quantity, dtype = call.implementation.op, call.quantity, call.dtype
        cotangent = call.options.get("cotangent")
        return PreparedCall(
            run=lambda: careful(op, quantity, logits, labels, dtype, cotangent),
            to_numpy=np.asarray,
        )
