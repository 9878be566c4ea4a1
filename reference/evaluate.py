"""The reference entry point: validate, apply edge semantics, evaluate exactly.

Inputs of any float dtype are taken exactly as given (every float16, bfloat16 and float32
value is a float64). Each output is ``hi + lo``: ``hi`` the correctly rounded float64 of the
true value, ``lo`` the rounded residual. The double-double fast path (``reference.fast``)
answers wherever its error bound proves the rounding; every other output comes from the ball
arithmetic definition (``reference.exact_arb``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

import xentbench.reference.edges as edges
import xentbench.reference.exact_arb as exact_arb
import xentbench.reference.fast as fast
import xentbench.reference.linear as linear
import xentbench.reference.options as family_options
from xentbench.reference.dtypes import numpy_dtype
from xentbench.reference.rounding import round_to_dtype

OPS = (
    "softmax",
    "log_softmax",
    "logsumexp",
    "softmax_cross_entropy",
    "sparse_softmax_cross_entropy",
    "sigmoid_cross_entropy",
    "linear_cross_entropy",
)
GRADIENT_OPS = (
    "logsumexp",
    "softmax_cross_entropy",
    "sparse_softmax_cross_entropy",
    "sigmoid_cross_entropy",
    "linear_cross_entropy",
)
# Every quantity: the plain ops have value and grad (of the summed outputs); with options
# (reference.options) grad takes any cotangent and jvp any tangent.
QUANTITIES = ("value", "grad", "jvp")
# The language-model head: hidden [N, d] in the logits slot, weight [C, d] (and bias [C]) in
# the call's options (``reference.linear``); its gradients are with respect to each input.
LINEAR_OP = "linear_cross_entropy"
REDUCING = {
    ("logsumexp", "value"),
    ("softmax_cross_entropy", "value"),
    ("sparse_softmax_cross_entropy", "value"),
    (LINEAR_OP, "value"),
}


def quantities(op: str) -> tuple[str, ...]:
    """The quantities an op defines: value, and its gradient(s) where it has them."""
    if op == LINEAR_OP:
        return linear.QUANTITIES
    return ("value", "grad") if op in GRADIENT_OPS else ("value",)


def output_shape(
    op: str, quantity: str, logits_shape: tuple[int, ...], options: dict | None = None
) -> tuple[int, ...]:
    """The shape of an op's output: the class axis reduced away, or the logits' own shape (a
    ``jvp`` has the value's shape; options may reduce further, see ``reference.options``).

    For the linear op, ``logits_shape`` is the hidden's [N, d] and the weight in ``options``
    gives C: grad_weight is [C, d] and grad_bias [C].
    """
    if op == LINEAR_OP and quantity in ("grad_weight", "grad_bias"):
        classes = np.shape((options or {})["weight"])[0]
        return (classes, logits_shape[-1]) if quantity == "grad_weight" else (classes,)
    reducing = (op, "value" if quantity == "jvp" else quantity) in REDUCING
    return tuple(logits_shape[:-1] if reducing else logits_shape)


@dataclass(frozen=True)
class Exact:
    """The exact result as float64 ``hi`` (correctly rounded) plus residual ``lo``."""

    hi: np.ndarray
    lo: np.ndarray

    def rounded(self, dtype: np.dtype | str) -> np.ndarray:
        """The exact value correctly rounded to ``dtype`` (float16, bfloat16, float32, float64)."""
        return round_to_dtype(self.hi, self.lo, numpy_dtype(dtype))


def _as_float64(name: str, array: np.ndarray) -> np.ndarray:
    array = np.asarray(array)
    if array.dtype.kind != "f" and array.dtype.name != "bfloat16":
        raise ValueError(f"{name} must have a float dtype, got {array.dtype}")
    return array.astype(np.float64)


def _validate(op: str, quantity: str, logits, labels) -> tuple[np.ndarray, np.ndarray | None]:
    if op not in OPS:
        raise ValueError(f"unknown op {op!r}; valid: {', '.join(OPS)}")
    if quantity not in ("value", "grad") or (quantity == "grad" and op not in GRADIENT_OPS):
        valid = "value, grad" if op in GRADIENT_OPS else "value"
        raise ValueError(f"op {op} has no quantity {quantity!r}; valid: {valid}")
    x = _as_float64("logits", logits)
    if x.ndim == 0 or (op != "sigmoid_cross_entropy" and x.shape[-1] == 0):
        raise ValueError(f"logits need a non-empty class axis, got shape {x.shape}")
    if op in ("softmax", "log_softmax", "logsumexp"):
        return x, None
    if labels is None:
        raise ValueError(f"op {op} needs labels")
    labels = np.asarray(labels)
    if op == "sparse_softmax_cross_entropy":
        if labels.dtype.kind not in "iu":
            raise ValueError(f"sparse labels must be integers, got dtype {labels.dtype}")
        if labels.shape != x.shape[:-1]:
            raise ValueError(
                f"sparse labels shape {labels.shape} does not match logits shape {x.shape} "
                f"(expected {x.shape[:-1]})"
            )
        bad = (labels < 0) | (labels >= x.shape[-1])
        if bad.any():
            raise ValueError(
                f"sparse label {labels[bad].flat[0]} is outside [0, {x.shape[-1]}) "
                f"({int(bad.sum())} invalid labels)"
            )
        return x, labels.astype(np.int64)
    y = _as_float64("labels", labels)
    if y.shape != x.shape:
        raise ValueError(f"labels shape {y.shape} does not match logits shape {x.shape}")
    return x, y


def exact(
    op: str,
    logits: np.ndarray,
    labels: np.ndarray | None = None,
    quantity: str = "value",
    **options: Any,
) -> Exact:
    """The exact value (or gradient of the sum of outputs w.r.t. logits) of a canonical op.

    Keyword ``options`` (``reference.options.OPTION_NAMES``: reduction, ignore_index,
    label_smoothing, class and sample weights, class_axis, cotangent, tangent) select the
    parameterised family of ``reference.options``; quantity ``jvp``, and ``grad`` of softmax
    and log_softmax, exist there only. Without options, nothing changes. The linear op takes
    its weight, bias and ignore_index as options (``reference.linear``).
    """
    if op == LINEAR_OP:
        result = linear.linear_exact(quantity, logits, labels, options)
        return Exact(result.hi, result.lo)
    if options or quantity == "jvp" or (quantity == "grad" and op not in GRADIENT_OPS):
        if op not in OPS or op == "sigmoid_cross_entropy":
            raise ValueError(f"op {op!r} takes no options; options are for {', '.join(OPS[:5])}")
        if quantity not in QUANTITIES:
            raise ValueError(f"unknown quantity {quantity!r}; valid: {', '.join(QUANTITIES)}")
        x = _as_float64("logits", logits)
        if x.ndim == 0:
            raise ValueError(f"logits need a class axis, got shape {x.shape}")
        hi, lo = family_options.exact_family(op, quantity, logits, labels, options, exact)
        return Exact(np.asarray(hi, dtype=np.float64), np.asarray(lo, dtype=np.float64))
    x, y = _validate(op, quantity, logits, labels)
    if op == "sigmoid_cross_entropy":
        hi, lo = _sigmoid(quantity, x.ravel(), y.ravel())
        return Exact(hi.reshape(x.shape), lo.reshape(x.shape))
    rows_x = x.reshape(-1, x.shape[-1])
    rows_y = None if y is None else y.reshape(len(rows_x), -1) if y.ndim == x.ndim else y.ravel()
    hi, lo = _softmax_family(op, quantity, rows_x, rows_y)
    shape = output_shape(op, quantity, x.shape)
    return Exact(hi.reshape(shape), lo.reshape(shape))


def _softmax_family(op, quantity, x, y) -> tuple[np.ndarray, np.ndarray]:
    regular = edges.regular_rows(op, quantity, x, y)
    with np.errstate(invalid="ignore", over="ignore"):
        hi = edges.edge_rows(op, quantity, x, y)
    lo = np.zeros_like(hi)
    if not regular.any():
        return hi, lo
    index = np.flatnonzero(regular)
    with np.errstate(all="ignore"):
        outputs = fast.softmax_family(op, quantity, x[index], None if y is None else y[index])
    ok = outputs.ok if outputs.ok.ndim == 2 else outputs.ok[:, None]
    hi[index], lo[index] = outputs.hi, outputs.lo
    for position in np.flatnonzero(~ok.all(axis=1)):
        row = index[position]
        wanted = [0] if hi.ndim == 1 else np.flatnonzero(~ok[position]).tolist()
        label = None if y is None else y[row]
        hint = outputs.tail_hint[position]
        hint = None if np.isnan(hint).any() else tuple(float(v) for v in hint)
        row_hi, row_lo = exact_arb.exact_row(op, quantity, x[row], label, wanted, hint)
        if hi.ndim == 1:
            hi[row], lo[row] = row_hi[0], row_lo[0]
        else:
            hi[row, wanted], lo[row, wanted] = row_hi, row_lo
    return hi, lo


def _sigmoid(quantity, x, z) -> tuple[np.ndarray, np.ndarray]:
    regular = edges.sigmoid_regular(x, z)
    hi, lo = edges.sigmoid_edges(quantity, x, z)
    index = np.flatnonzero(regular)
    with np.errstate(all="ignore"):
        outputs = fast.sigmoid(quantity, x[index], z[index])
    hi[index], lo[index] = outputs.hi, outputs.lo
    pending = index[~outputs.ok]
    if len(pending):
        hi[pending], lo[pending] = exact_arb.exact_sigmoid(quantity, x[pending], z[pending])
    return hi, lo
