"""The error budget of the parameterised family (``reference.options``): reductions, weights,
label smoothing, any cotangent (VJP) and any tangent (JVP).

Built on the per-element allowance of ``suites.judge.budget.error_scale``: each row's loss is a
soft cross-entropy with coefficients ``c = cw ((1 - eps) y + eps/C)``, so its scale is the soft
cross-entropy's with labels ``c``; a reduction adds the error of a sum of ``n`` terms,
``lambda sqrt(n) u sum|terms|`` (Higham & Mary 2019, as ``budget.sigma``), the weight products
and the division (one rounding each), and the divisor's own sum error. Derivatives follow the
same first-order analysis: products of the terms' scales with the directions' magnitudes, a
sum's error on the magnitudes it adds. Work is in float64 on the rows with the class axis last.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from xentbench.reference import GRADIENT_OPS, Exact
from xentbench.reference import options as family
from xentbench.reference.evaluate import LINEAR_OP
from xentbench.suites.judge.budget import (
    LAMBDA,
    Allowance,
    Output,
    accumulation_roundoff,
    allowance,
    error_scale,
    sigma,
)

OPTION_BUDGET_RULE = (
    "With options, the row loss is a soft cross-entropy with coefficients c = cw((1-eps)y + "
    "eps/C) (its scale A_r as above); a reduction over n rows of weights w_r with divisor D "
    "allows (sum|w_r|A_r + (lambda*sqrt(n) + 1)u sum|w_r l_r|)/|D| + u|result|(1 + "
    "lambda*sqrt(n) sum|w_r|/|D|); a gradient seed_r(p_j S_r - c_j) allows |seed_r| times the "
    "soft gradient's scale plus 2u|result| and the divisor's error; VJPs and JVPs of softmax, "
    "log_softmax and logsumexp allow u times the absolute-value evaluation of their formulas "
    "with each p_m carrying (|d_m| + sigma)."
)


def _w(weight: np.ndarray, value: np.ndarray) -> np.ndarray:
    """weight * value, 0 where the weight is 0 (a masked class: p = 0 against |d| = inf)."""
    with np.errstate(invalid="ignore", over="ignore"):
        return np.where(weight == 0, 0.0, weight * value)


def _rows(array, shape, axis) -> np.ndarray:
    moved = np.moveaxis(np.asarray(array).astype(np.float64), axis, -1)
    return moved.reshape(-1, shape[axis])


def _shifted(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """d = x - max(x), log s, p (float64: a budget needs a few right digits, not all)."""
    with np.errstate(all="ignore"):
        d = x - x.max(axis=-1, keepdims=True)
        log_s = np.log(np.exp(d).sum(axis=-1, keepdims=True))
        return d, log_s, np.exp(d - log_s)


def coefficient_rows(op: str, x: np.ndarray, labels, options: dict[str, Any], axis: int):
    """(c [R, C] float64, kept [R] bool): the cross-entropy's coefficients per row."""
    count, classes = x.shape
    eps = float(options.get("label_smoothing", 0.0))
    weights = options.get("class_weight")
    weights = np.ones(classes) if weights is None else np.asarray(weights).astype(np.float64)
    if op == "sparse_softmax_cross_entropy":
        ids = np.asarray(labels).astype(np.int64).ravel()
        kept = ids != int(options.get("ignore_index", -(2**62)))
        target = np.zeros((count, classes))
        target[np.flatnonzero(kept), ids[kept]] = 1.0
    else:
        target = _rows(labels, np.shape(labels), axis)
        kept = np.ones(count, dtype=bool)
    return weights * ((1 - eps) * target + eps / classes), kept


def _divisor(op, reduction, c_kept, labels, options, sample) -> tuple[float, float]:
    """(D, sum of the magnitudes D adds); D = nan for none and sum."""
    kept = c_kept[1]
    if reduction in ("none", "sum"):
        return math.nan, 0.0
    if reduction == "sum_over_batch_size":
        return float(len(kept)), 0.0
    if reduction == "mean_over_valid":
        return float(kept.sum()), 0.0
    terms = sample[kept]
    weights = options.get("class_weight")
    if op == "sparse_softmax_cross_entropy" and weights is not None:
        ids = np.asarray(labels).astype(np.int64).ravel()[kept]
        terms = terms * np.asarray(weights).astype(np.float64)[ids]
    return float(terms.sum()), float(np.abs(terms).sum())


def option_scale(output: Output, options: dict[str, Any]) -> np.ndarray:
    """A, the absolute error scale per output element of ``output.op`` under ``options``."""
    op, quantity, dtype, labels = output.op, output.quantity, output.dtype, output.labels
    u = accumulation_roundoff(dtype)
    shape = np.shape(output.logits)
    axis = int(options.get("class_axis", -1)) % len(shape)
    x = _rows(output.logits, shape, axis)
    lead = np.moveaxis(np.empty(shape, dtype=bool), axis, -1).shape[:-1]
    result = np.abs(np.asarray(output.exact.hi, dtype=np.float64))
    with np.errstate(all="ignore"):
        if op in family.CROSS_ENTROPIES:
            scale = _cross_entropy(op, quantity, dtype, x, labels, options, axis, result)
        else:
            scale = _unlabelled(op, quantity, x, options, axis, u)
    # Rows with a +inf logit have limit values, exact: only the final rounding is allowed.
    plus = np.isposinf(x).any(axis=1)
    if scale.ndim == 2:  # elements: back to the caller's layout
        scale = np.where(plus[:, None], 0.0, scale)
        return np.moveaxis(scale.reshape(*lead, -1), -1, axis)
    if scale.ndim == 1:
        return np.where(plus, 0.0, scale).reshape(result.shape)
    return np.where(plus.any(), 0.0, scale).reshape(result.shape)


def _direction(options, name, shape, axis, per_row: bool) -> np.ndarray:
    value = options.get(name)
    count, classes = shape
    if value is None:
        return np.ones((count, 1 if per_row else classes))
    array = np.asarray(value).astype(np.float64)
    return array.reshape(-1, 1) if per_row else _rows(array, array.shape, axis)


def _cross_entropy(op, quantity, dtype, x, labels, options, axis, result) -> np.ndarray:
    u = accumulation_roundoff(dtype)
    c, kept = coefficient_rows(op, x, labels, options, axis)
    reduction = options.get("reduction", "none")
    sample = options.get("sample_weight")
    sample = np.ones(len(x)) if sample is None else np.asarray(sample).astype(np.float64).ravel()
    weight = np.where(kept, sample, 0.0)
    divisor, divisor_terms = _divisor(op, reduction, (c, kept), labels, options, sample)
    divisor = np.float64(divisor)  # 0 for a mean over zero rows: inf and NaN, never a raise
    n = max(int(kept.sum()), 1)
    sum_error = LAMBDA * math.sqrt(n) * u
    d, log_s, p = _shifted(x)
    dummy = Exact(np.zeros(len(x)), np.zeros(len(x)))  # error_scale reads only its shape here
    elements = Exact(np.zeros_like(x), np.zeros_like(x))
    if quantity == "grad":
        base = error_scale(Output("softmax_cross_entropy", "grad", dtype, x, c, elements))
        cot = _direction(options, "cotangent", (len(x), 1), axis, True)
        cot = cot[0, 0] if reduction != "none" else cot[:, 0]
        seed = np.abs(weight * cot) / (abs(divisor) if reduction not in ("none", "sum") else 1.0)
        extra = 2 * u + (sum_error * divisor_terms / abs(divisor) if divisor_terms else 0.0)
        return _w(seed[:, None], base) + extra * result.reshape(base.shape)
    if quantity == "value":
        per_row = error_scale(Output("softmax_cross_entropy", "value", dtype, x, c, dummy))
        magnitude = _w(c, np.abs(log_s - d)).sum(axis=1)
    else:  # jvp: sum_j t_j g_j with g = p S - c
        t = np.abs(_direction(options, "tangent", x.shape, axis, False))
        grad = error_scale(Output("softmax_cross_entropy", "grad", dtype, x, c, elements))
        g = np.abs(c.sum(axis=1, keepdims=True) * p - c)
        per_row = _w(t, grad).sum(axis=1) + sigma(x.shape[1]) * u * _w(t, g).sum(axis=1)
        magnitude = _w(t, g).sum(axis=1)
    if reduction == "none":
        return _w(np.abs(weight), per_row) + u * _w(np.abs(weight), magnitude)
    terms = _w(np.abs(weight), magnitude)
    scale = _w(np.abs(weight), per_row).sum() + (sum_error + u) * terms.sum()
    if reduction != "sum":
        scale = scale / abs(divisor)
        scale += u * result.max(initial=0.0) * (1 + sum_error * divisor_terms / abs(divisor))
    return np.asarray(scale)


def _unlabelled(op, quantity, x, options, axis, u) -> np.ndarray:
    d, _, p = _shifted(x)
    spread = sigma(x.shape[1])
    per_row = op == "logsumexp" and quantity == "grad"
    name = "cotangent" if quantity == "grad" else "tangent"
    g = _direction(options, name, x.shape, axis, per_row)
    carried = _w(p, np.abs(d) + 2 * spread)  # p_m with its own error, then a sum's
    if op == "logsumexp":
        if quantity == "grad":
            return u * _w(np.abs(g) * p, np.abs(d) + spread + 1)
        return u * (np.abs(g) * carried).sum(axis=1)
    mixed = (p * g).sum(axis=1, keepdims=True)
    spread_g = (np.abs(g) * carried).sum(axis=1, keepdims=True)
    if op == "softmax":
        return u * (_w(p, (np.abs(d) + spread + 1) * np.abs(g - mixed)) + _w(p, spread_g))
    if quantity == "grad":  # log_softmax VJP: g_j - p_j sum(g)
        total = g.sum(axis=1, keepdims=True)
        spread_total = (np.abs(d) + spread) * np.abs(total)
        spread_total += spread * np.abs(g).sum(axis=1, keepdims=True)
        return u * (np.abs(g) + np.abs(g - p * total) + _w(p, spread_total))
    return u * (np.abs(g) + np.abs(g - mixed) + spread_g)  # log_softmax JVP: t_j - <p, t>


def call_allowance(output: Output, options: dict | None) -> Allowance:
    """The allowance of one call's outputs: the plain ops' rule, or the error scale the linear
    op's budget (``suites.judge.linear_budget``) or the call's options give."""
    op, quantity, scale = output.op, output.quantity, None
    if op == LINEAR_OP:
        scale = error_scale(output, options)
    elif options or not (quantity == "value" or (quantity == "grad" and op in GRADIENT_OPS)):
        scale = option_scale(output, options or {})
    return allowance(output, scale=scale)
