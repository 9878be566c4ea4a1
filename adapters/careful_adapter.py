"""The careful kernel: every op computed with exactly the internals the error budget assumes.

``suites.judge.budget`` states what a good implementation achieves: the shifted algorithms
(subtract the row max, exponentiate, sum, take logs) with internals of unit roundoff u_acc and
one rounding to the output dtype. This backend is that implementation, in NumPy: float32
internals for float16 and bfloat16 inputs (the max shift, exp and a pairwise sum in float32,
then one rounding of the output), the dtype's own precision for float32 and float64. It is
the yardstick of a finding (``suites.findings.careful``): "N x the error of a careful kernel".
Where it fails on finite input, the budget is wrong there, not the kernel. Every call option
the reference defines (reductions, weights, smoothing, ignored labels, the class axis, the LLM
head), forward mode and the linear head are computed the same way (``careful_options``).

Registered as a plugin (pyproject's ``[project.entry-points."xentbench.adapters"]``) and
declared a baseline: reports count it apart from the implementations people rely on.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from xentbench.adapters import careful_options
from xentbench.adapters.base import (
    DTYPES,
    FORWARD_OPS,
    Adapter,
    Call,
    Implementation,
    PreparedCall,
    numpy_dtype,
)
from xentbench.reference import evaluate as reference_ops
from xentbench.reference.evaluate import LINEAR_OP, OPS
from xentbench.reference.options import ACCEPTED

BACKEND = "careful"
CAREFUL_OPS: tuple[str, ...] = OPS
# The options each op takes: the reference's (``reference.options.ACCEPTED``), a cotangent for
# every gradient, the linear head's weight, bias, ignored label and the LLM head's options.
OPTIONS: dict[str, tuple[str, ...]] = {
    op: tuple(dict.fromkeys((*ACCEPTED.get(op, ()), "cotangent"))) for op in OPS
} | {LINEAR_OP: ("weight", "bias", "ignore_index", *careful_options.LINEAR_HEAD)}
SIXTEEN_BIT = ("float16", "bfloat16")
ADAPTATION = (
    "the budget's own algorithm in NumPy: max shift, exp and a pairwise sum in float32 for "
    "16-bit inputs (the dtype's precision otherwise), one rounding of the output"
)


def internal_dtype(dtype: str) -> np.dtype:
    """The internals the budget assumes: float32 for the 16-bit dtypes, the dtype's own else."""
    return np.dtype(np.float32) if dtype in SIXTEEN_BIT else numpy_dtype(dtype)


pairwise_sum, shifted = careful_options.pairwise_sum, careful_options.shifted


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


def careful(
    op: str,
    quantity: str,
    logits,
    labels,
    dtype: str,
    cotangent=None,
    options: dict[str, Any] | None = None,
) -> np.ndarray:
    """The op's ``quantity`` ("value", "grad" with ``cotangent`` (ones when None), "jvp", or a
    linear-head gradient) under the call ``options``, computed in ``internal_dtype(dtype)``
    and rounded once to ``dtype``."""
    internal = internal_dtype(dtype)
    options = dict(options or {})
    if cotangent is not None:
        options["cotangent"] = cotangent
    with np.errstate(all="ignore"):
        if op == LINEAR_OP:
            result = careful_options.linear(quantity, logits, labels, options, internal)
        elif set(options) - {"cotangent"} or quantity == "jvp":
            result = _with_options(
                op, quantity, np.asarray(logits).astype(internal), labels, options
            )
        else:
            result = _plain(op, quantity, np.asarray(logits).astype(internal), labels, options)
        return np.asarray(result).astype(numpy_dtype(dtype))  # past the range: inf, silently


def _plain(op: str, quantity: str, x: np.ndarray, labels, options: dict[str, Any]):
    """An op without options (but a cotangent) on the logits x, in x's dtype."""
    y = labels
    if labels is not None and op != "sparse_softmax_cross_entropy":
        y = np.asarray(labels).astype(x.dtype)
    if quantity == "value":
        return _value(op, x, y)
    shape = reference_ops.output_shape(op, "value", x.shape)  # the cotangent's
    g = options.get("cotangent")
    g = np.ones(shape, x.dtype) if g is None else np.asarray(g).astype(x.dtype)
    return _grad(op, x, y, g)


def _with_options(op: str, quantity: str, x: np.ndarray, labels, options: dict[str, Any]):
    """An op of the softmax family under call options, on rows with the class axis last."""
    axis = int(options.get("class_axis", -1)) % x.ndim
    rows, lead = careful_options.rows_of(x, axis)
    z, slope = careful_options.head(rows, options)
    if op in careful_options.CROSS_ENTROPIES:
        return careful_options.cross_entropy(op, quantity, z, slope, labels, options, axis, lead)
    if quantity == "value":
        out = _value(op, z, None)
        return out.reshape(lead) if op == "logsumexp" else careful_options.back(out, lead, axis)
    if quantity == "jvp":
        t = np.asarray(options.get("tangent", np.ones_like(x))).astype(x.dtype)  # ones: absent
        t = careful_options.rows_of(t, axis)[0]
        out = careful_options.unlabelled_jvp(op, z, t if slope is None else t * slope)
        return out.reshape(lead) if op == "logsumexp" else careful_options.back(out, lead, axis)
    g = options.get("cotangent")
    if g is None:
        g = np.ones(lead if op == "logsumexp" else x.shape, x.dtype)
    g = np.asarray(g).astype(x.dtype)
    g = g.reshape(-1, 1) if op == "logsumexp" else careful_options.rows_of(g, axis)[0]
    out = _grad(op, z, None, g[:, 0] if op == "logsumexp" else g)
    return careful_options.back(out if slope is None else out * slope, lead, axis)


class CarefulAdapter(Adapter):
    """``careful:<op>``: value, gradient (any cotangent) and forward mode of every op, with every
    call option the reference defines, in every dtype."""

    name = BACKEND

    def version(self) -> str:
        return f"careful 1.1 (numpy {np.__version__})"

    def implementations(self) -> tuple[Implementation, ...]:
        return tuple(
            Implementation(
                name=f"{BACKEND}:{op}",
                op=op,
                dtypes=DTYPES,
                gradient=True,
                options=OPTIONS[op],
                adaptation=ADAPTATION,
                baseline=True,
                forward=op in FORWARD_OPS,
            )
            for op in CAREFUL_OPS
        )

    def prepare(self, call: Call, logits: np.ndarray, labels: np.ndarray | None) -> PreparedCall:
        """Bind the inputs; ``run`` computes the op with the budget's internals."""
        op, quantity, dtype = call.implementation.op, call.quantity, call.dtype
        options = dict(call.options)
        return PreparedCall(
            run=lambda: careful(op, quantity, logits, labels, dtype, options=options),
            to_numpy=np.asarray,
        )
