"""The error budget of the parameterised family (``reference.options``): reductions, weights,
label smoothing, ignored labels, the class axis, any cotangent (VJP) and any tangent (JVP).

Built on the base op's A (``suites.judge.budget.error_scale``): each row's loss is a
soft cross-entropy with coefficients ``c = cw ((1 - eps) y + eps/C)``, so its scale is the soft
cross-entropy's with labels ``c``; a reduction adds the error of a sum of ``n`` terms,
``lambda sqrt(n) u sum|terms|`` (Higham & Mary 2019, as ``roundoff.sigma``), the weight products
and the division (one rounding each), and the divisor's own sum error. Derivatives follow the
same first-order analysis: products of the terms' scales with the directions' magnitudes, a
sum's error on the magnitudes it adds. Work is in float64 on the rows with the class axis last.

Vocabulary-parallel shards (``reference.shards``) add no term. The all-reduced max is exact;
the all-reduced sum of exponentials is a blocked sum in which each term passes through at most
``(ceil(C/k) - 1) + (k - 1) <= C - 1`` additions, and the probabilistic bound
``lambda sqrt(n) u sum|x_i|`` (Higham & Mary 2019, Thm 3.1) is a bound on the product of each
term's ``(1 + delta)`` factors, so it holds for any summation tree of depth ``n <= C - 1`` (as
``roundoff.sigma`` states for blocked and pairwise sums); the label's logit is read, not
computed; the smoothing's per-shard sums of ``-log p`` are a blocked sum of the same terms. The
careful sharded plugin (tests/flawed/sharded.py), computing in the budget's internals, passes.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from xentbench.reference import Exact, head
from xentbench.reference import options as family
from xentbench.suites.judge import head_budget
from xentbench.suites.judge.budget import Output, error_scale, shifted, weighted
from xentbench.suites.judge.roundoff import LAMBDA, accumulation_roundoff, sigma

OPTION_BUDGET_RULE = (
    "With options, the row loss is a soft cross-entropy with coefficients c = cw((1-eps)y + "
    "eps/C) (its scale A_r as above); a reduction over n rows of weights w_r with divisor D "
    "allows (sum|w_r|A_r + (lambda*sqrt(n) + 1)u sum|w_r l_r|)/|D| + u|result|(1 + "
    "lambda*sqrt(n) sum|w_r|/|D|); a gradient seed_r(p_j S_r - c_j) allows |seed_r| times the "
    "soft gradient's scale plus 2u|result| and the divisor's error; VJPs and JVPs of softmax, "
    "log_softmax and logsumexp allow u times the absolute-value evaluation of their formulas "
    "with each p_m carrying (|d_m| + sigma)."
)


@dataclass(frozen=True)
class _Rows:
    """One call's logits as rows [R, C] with the class axis last, and what every rule reads."""

    op: str
    quantity: str
    dtype: str | np.dtype
    x: np.ndarray  # float64 logits [R, C]
    axis: int  # the class axis in the call's layout
    lead: tuple[int, ...]  # the call's shape without its class axis
    result: np.ndarray  # |t|: the exact result's magnitude, float64, in the call's layout
    u: float  # u_acc, the internals' unit roundoff
    head: head_budget.HeadTerms | None = None  # softcap, temperature, z_loss: x holds z


def _to_rows(array, shape, axis) -> np.ndarray:
    moved = np.moveaxis(np.asarray(array).astype(np.float64), axis, -1)
    return moved.reshape(-1, shape[axis])


def _as_rows(output: Output, options: dict[str, Any]) -> _Rows:
    """The class axis (``class_axis``) moved last and the other axes flattened into rows."""
    shape = np.shape(output.logits)
    axis = int(options.get("class_axis", -1)) % len(shape)
    return _Rows(
        op=output.op,
        quantity=output.quantity,
        dtype=output.dtype,
        x=_to_rows(output.logits, shape, axis),
        axis=axis,
        lead=np.moveaxis(np.empty(shape, dtype=bool), axis, -1).shape[:-1],
        result=np.abs(np.asarray(output.exact.hi, dtype=np.float64)),
        u=accumulation_roundoff(output.dtype),
    )


def option_scale(output: Output, options: dict[str, Any]) -> np.ndarray:
    """A, the absolute error scale per output element of ``output.op`` under ``options``: the
    call as rows, the op's rule for its options on them, then back to the call's layout."""
    rows = _as_rows(output, options)
    with np.errstate(all="ignore"):
        if head.active(options):  # the rules below run on z (suites.judge.head_budget)
            terms = head_budget.transform(rows.x, options, rows.u, rows.lead)
            rows = dataclasses.replace(rows, x=terms.z, head=terms)
        if rows.head is not None and rows.quantity == "value" and rows.op in family.UNLABELLED:
            scale = _head_value(rows)
        elif rows.op in family.CROSS_ENTROPIES:
            scale = _cross_entropy(rows, output.labels, options)
        else:
            scale = _unlabelled(rows, options)
    return _in_call_layout(rows, scale)


def _head_value(rows: _Rows) -> np.ndarray:
    """softmax, log_softmax or logsumexp of z: the base op's A on z plus z's own error."""
    exact = np.moveaxis(rows.result, rows.axis, -1) if rows.op != "logsumexp" else rows.result
    exact = exact.reshape(len(rows.x), -1)[:, 0 if rows.op == "logsumexp" else slice(None)]
    output = Output(rows.op, "value", rows.dtype, rows.x, None, Exact(exact, exact))
    return error_scale(output) + head_budget.value_extra(rows.head, None, rows.op, rows.u)


def _in_call_layout(rows: _Rows, scale: np.ndarray) -> np.ndarray:
    """Per-element scales back in the call's layout, per-row ones in the result's shape."""
    # Rows with a +inf logit have limit values, exact: only the final rounding is allowed.
    plus = np.isposinf(rows.x).any(axis=1)
    if scale.ndim == 2:  # elements: back to the caller's layout
        scale = np.where(plus[:, None], 0.0, scale)
        return np.moveaxis(scale.reshape(*rows.lead, -1), -1, rows.axis)
    if scale.ndim == 1:
        return np.where(plus, 0.0, scale).reshape(rows.result.shape)
    return np.where(plus.any(), 0.0, scale).reshape(rows.result.shape)


# ------------------------------------------------------------------------ the cross-entropies


def coefficient_rows(op: str, x: np.ndarray, labels, options: dict[str, Any], axis: int):
    """(c [R, C] float64, kept [R] bool): the cross-entropy's coefficients per row (label
    smoothing, class weights; a row whose sparse label is ``ignore_index`` is not kept)."""
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
        target = _to_rows(labels, np.shape(labels), axis)
        kept = np.ones(count, dtype=bool)
    return weights * ((1 - eps) * target + eps / classes), kept


@dataclass(frozen=True)
class _Weighting:
    """The rows' weights and the reduction over them (``reference.options.REDUCTIONS``)."""

    reduction: str
    weight: np.ndarray  # the sample weight per row, 0 on an ignored row
    divisor: np.float64  # D; NaN for none and sum; 0 for a mean over no rows: inf, never a raise
    divisor_terms: float  # the sum of the magnitudes D adds
    sum_error: float  # lambda sqrt(n) u, n the kept rows (at least 1)


def _weighting(rows: _Rows, kept: np.ndarray, labels, options: dict[str, Any]) -> _Weighting:
    """Sample weights (``sample_weight``), the reduction and its divisor."""
    reduction = options.get("reduction", "none")
    sample = options.get("sample_weight")
    count = len(rows.x)
    sample = np.ones(count) if sample is None else np.asarray(sample).astype(np.float64).ravel()
    divisor, divisor_terms = _divisor(rows.op, reduction, kept, labels, options, sample)
    n = max(int(kept.sum()), 1)
    return _Weighting(
        reduction=reduction,
        weight=np.where(kept, sample, 0.0),
        divisor=np.float64(divisor),
        divisor_terms=divisor_terms,
        sum_error=LAMBDA * math.sqrt(n) * rows.u,
    )


def _divisor(op, reduction, kept, labels, options, sample) -> tuple[float, float]:
    """(D, sum of the magnitudes D adds); D = nan for none and sum."""
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


def _direction(options, name, shape, axis, per_row: bool) -> np.ndarray:
    """The cotangent or tangent as rows (ones when not given): [R, 1] per row, else [R, C]."""
    value = options.get(name)
    count, classes = shape
    if value is None:
        return np.ones((count, 1 if per_row else classes))
    array = np.asarray(value).astype(np.float64)
    return array.reshape(-1, 1) if per_row else _to_rows(array, array.shape, axis)


def _cross_entropy(rows: _Rows, labels, options: dict[str, Any]) -> np.ndarray:
    """The row loss as a soft cross-entropy with coefficients c, whose base A the direction
    (cotangent, tangent), the weights and the reduction carry."""
    c, kept = coefficient_rows(rows.op, rows.x, labels, options, rows.axis)
    weighting = _weighting(rows, kept, labels, options)
    if rows.quantity == "grad":
        return _gradient(rows, c, weighting, options)
    if rows.quantity == "value":
        per_row, magnitude = _row_values(rows, c)
    else:
        per_row, magnitude = _row_tangents(rows, c, options)
    return _reduced(rows, weighting, per_row, magnitude)


def _soft(rows: _Rows, c: np.ndarray, quantity: str) -> Output:
    """The base op on the rows: the soft cross-entropy with labels c (an exact value of zeros:
    ``error_scale`` reads only its shape for this op)."""
    zeros = np.zeros(rows.x.shape if quantity == "grad" else len(rows.x))
    return Output("softmax_cross_entropy", quantity, rows.dtype, rows.x, c, Exact(zeros, zeros))


def _gradient(rows: _Rows, c, weighting: _Weighting, options: dict[str, Any]) -> np.ndarray:
    """The VJP seed_r(p_j S_r - c_j), seed_r = w_r cot_r / D: the soft gradient's A times
    |seed_r|, plus the seed's roundings and the divisor's error on the result."""
    base = error_scale(_soft(rows, c, "grad"))
    if rows.head is not None:
        base = head_budget.ce_gradient(rows.head, c, base, rows.u)
    w = weighting
    cot = _direction(options, "cotangent", (len(rows.x), 1), rows.axis, True)
    cot = cot[0, 0] if w.reduction != "none" else cot[:, 0]
    seed = np.abs(w.weight * cot) / (abs(w.divisor) if w.reduction not in ("none", "sum") else 1.0)
    extra = 2 * rows.u + (
        w.sum_error * w.divisor_terms / abs(w.divisor) if w.divisor_terms else 0.0
    )
    return weighted(seed[:, None], base) + extra * rows.result.reshape(base.shape)


def _row_values(rows: _Rows, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row loss: (the base A, the magnitude sum_j |c_j (log s - d_j)| of its terms)."""
    per_row = error_scale(_soft(rows, c, "value"))
    d, log_s, _ = shifted(rows.x)
    magnitude = weighted(c, np.abs(log_s - d)).sum(axis=1)
    if rows.head is None:
        return per_row, magnitude
    extra = head_budget.value_extra(rows.head, c, rows.op, rows.u)
    return per_row + extra, magnitude + head_budget.z_loss_value(rows.head)


def _row_tangents(rows: _Rows, c, options: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Per row JVP sum_j t_j g_j, g = p S - c: (the gradient's base A along |t| plus the sum's
    error, the magnitude sum_j |t_j g_j|)."""
    t = np.abs(_direction(options, "tangent", rows.x.shape, rows.axis, False))
    extra = 0.0 if rows.head is None else head_budget.tangent_extra(rows.head, c, t, rows.u)
    if rows.head is not None:  # the tangent in z; the z-loss's own Hessian is in extra
        t = t * rows.head.slope
    grad = error_scale(_soft(rows, c, "grad"))
    _, _, p = shifted(rows.x)
    magnitude = weighted(t, np.abs(c.sum(axis=1, keepdims=True) * p - c)).sum(axis=1)
    per_row = weighted(t, grad).sum(axis=1) + sigma(rows.x.shape[1]) * rows.u * magnitude
    return per_row + extra, magnitude


def _reduced(rows: _Rows, weighting: _Weighting, per_row, magnitude) -> np.ndarray:
    """The weighted rows; reduced, the sum's error (lambda sqrt(n) + 1)u sum|w_r l_r|, then the
    division by D with D's own error on the result."""
    w, u = weighting, rows.u
    weight = np.abs(w.weight)
    if w.reduction == "none":
        return weighted(weight, per_row) + u * weighted(weight, magnitude)
    terms = weighted(weight, magnitude)
    scale = weighted(weight, per_row).sum() + (w.sum_error + u) * terms.sum()
    if w.reduction != "sum":
        scale = scale / abs(w.divisor)
        scale += (
            u * rows.result.max(initial=0.0) * (1 + w.sum_error * w.divisor_terms / abs(w.divisor))
        )
    return np.asarray(scale)


# ---------------------------------------------------------------------- the unlabelled ops


def _unlabelled(rows: _Rows, options: dict[str, Any]) -> np.ndarray:
    """VJPs and JVPs of softmax, log_softmax and logsumexp along g (the cotangent or tangent):
    u times the absolute-value evaluation of their formulas, p_m carrying (|d_m| + sigma)."""
    per_row = rows.op == "logsumexp" and rows.quantity == "grad"
    name = "cotangent" if rows.quantity == "grad" else "tangent"
    g = _direction(options, name, rows.x.shape, rows.axis, per_row)
    h = rows.head
    if h is None:
        return _unlabelled_along(rows, g)
    if rows.quantity == "grad":
        return head_budget.unlabelled_gradient(h, rows.op, g, _unlabelled_along(rows, g), rows.u)
    extra = head_budget.tangent_extra(h, None, g, rows.u)  # the JVP: along t' = t dz/dx
    scale = _unlabelled_along(rows, g * h.slope)
    if rows.op == "logsumexp":
        return scale + extra
    return scale + extra[:, None] + np.abs(g) * h.dslope


def _unlabelled_along(rows: _Rows, g: np.ndarray) -> np.ndarray:
    """The unlabelled ops' rule along the direction rows ``g``."""
    op, quantity, u = rows.op, rows.quantity, rows.u
    d, _, p = shifted(rows.x)
    spread = sigma(rows.x.shape[1])
    carried = weighted(p, np.abs(d) + 2 * spread)  # p_m with its own error, then a sum's
    if op == "logsumexp":
        if quantity == "grad":
            return u * weighted(np.abs(g) * p, np.abs(d) + spread + 1)
        return u * (np.abs(g) * carried).sum(axis=1)
    mixed = (p * g).sum(axis=1, keepdims=True)
    spread_g = (np.abs(g) * carried).sum(axis=1, keepdims=True)
    if op == "softmax":
        return u * (
            weighted(p, (np.abs(d) + spread + 1) * np.abs(g - mixed)) + weighted(p, spread_g)
        )
    if quantity == "grad":  # log_softmax VJP: g_j - p_j sum(g)
        total = g.sum(axis=1, keepdims=True)
        spread_total = (np.abs(d) + spread) * np.abs(total)
        spread_total += spread * np.abs(g).sum(axis=1, keepdims=True)
        return u * (np.abs(g) + np.abs(g - p * total) + weighted(p, spread_total))
    return u * (np.abs(g) + np.abs(g - mixed) + spread_g)  # log_softmax JVP: t_j - <p, t>
