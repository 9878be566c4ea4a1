"""The formulas of ``reference.options``, row by row in rational arithmetic.

Each row's softmax ``p`` and log-softmax come as Fractions (floats where not finite); a row
whose needed elements are all finite is computed exactly, any other row in float arithmetic
with the conventions of ``reference.options`` (zero weights, cotangents and tangents give 0
unless the row holds a NaN; a zero coefficient on an infinite term gives 0).
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

import numpy as np

NAN = math.nan


def _exact(values: list) -> bool:
    return all(isinstance(v, Fraction) for v in values)


def _fraction(value: float) -> Fraction | float:
    return Fraction(value) if math.isfinite(value) else value


def _float(value) -> float:
    """float(value), a rational beyond the float64 range rounding to +-inf (as RN does)."""
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def _times(weight, value):
    """weight * value with 0 * (inf or NaN) = 0 (callers keep NaN-input rows apart)."""
    if weight == 0:
        return Fraction(0)
    if isinstance(weight, Fraction) and isinstance(value, Fraction):
        return weight * value
    return _float(weight) * _float(value)


def _total(values: list):
    """Exact sum of Fractions, or the float sum when any term is not finite."""
    if _exact(values):
        return sum(values, Fraction(0))
    return (
        math.fsum(_float(v) for v in values)
        if all(math.isfinite(_float(v)) for v in values)  # a Fraction past DBL_MAX is not
        else sum(_float(v) for v in values)
    )


def _per_row(array: np.ndarray | None, count: int, name: str) -> list:
    if array is None:
        return [Fraction(1)] * count
    flat = np.asarray(array, dtype=np.float64).ravel()
    if flat.size != count:
        raise ValueError(f"{name} has {flat.size} elements, expected {count}")
    return [_fraction(v) for v in flat.tolist()]


# ---------------------------------------------------------------- cross-entropy coefficients


def coefficients(op: str, rows, options: dict[str, Any]) -> list[list | None]:
    """c_ri = cw_i ((1 - eps) y_ri + eps / C) per row; None for an ignored row."""
    count, classes = rows.x.shape
    eps = Fraction(float(options.get("label_smoothing", 0.0)))
    weights = _per_row(options.get("class_weight"), classes, "class_weight")
    ignore = options.get("ignore_index")
    out = []
    for r in range(count):
        if op == "sparse_softmax_cross_entropy":
            k = int(rows.y[r])
            if ignore is not None and k == int(ignore):
                out.append(None)
                continue
            target = [Fraction(int(i == k)) for i in range(classes)]
        else:
            target = [_fraction(v) for v in rows.y[r].tolist()]
        smoothed = [(1 - eps) * t + eps / classes for t in target]
        out.append([_times(w, t) for w, t in zip(weights, smoothed, strict=True)])
    return out


def _row_loss(c: list, lsm: list, extra=None):
    """sum_i c_i (-lsm_i), skipping zero coefficients (label 0 on a -inf logit adds 0), plus
    ``extra`` (the z-loss term) when given."""
    terms = [_times(ci, -li) for ci, li in zip(c, lsm, strict=True) if ci != 0]
    return _total(terms if extra is None else [*terms, extra])


def z_terms(z_loss, r: int) -> tuple:
    """(value term z lse_r^2, gradient factor 2 z lse_r) of row ``r``; (None, None) without a
    z-loss. ``z_loss`` is (coefficient, [lse per row]) or None."""
    if z_loss is None or z_loss[0] == 0:
        return None, None
    coefficient, lse = z_loss[0], z_loss[1][r]
    if isinstance(lse, Fraction):
        return coefficient * lse * lse, 2 * coefficient * lse
    return _float(coefficient) * lse * lse, 2 * _float(coefficient) * lse


def _divisor(op, reduction, rows, coeffs, sample, options):
    """The reduction's divisor D (None for none and sum)."""
    if reduction in ("none", "sum"):
        return None
    if reduction == "sum_over_batch_size":
        return Fraction(len(coeffs))
    kept = [r for r, c in enumerate(coeffs) if c is not None]
    if reduction == "mean_over_valid":
        return Fraction(len(kept))
    weights = _per_row(options.get("class_weight"), rows.x.shape[1], "class_weight")
    if op == "softmax_cross_entropy":
        return _total([sample[r] for r in kept])
    return _total([_times(sample[r], weights[int(rows.y[r])]) for r in kept])


def _divide(total, divisor):
    if divisor is None:
        return total
    if divisor == 0:
        return NAN
    if isinstance(total, Fraction) and isinstance(divisor, Fraction):
        return total / divisor
    return _float(total) / _float(divisor)


def _grad_row(seed, c: list, p: list, factor=None) -> list:
    """seed * (p_j S - c_j), as seed * (p_j (S - c_j) - c_j (P - p_j)) when exact; with a
    z-loss ``factor`` 2 z lse, plus seed * factor * p_j."""
    if _exact(p) and _exact(c) and isinstance(seed, Fraction) and not isinstance(factor, float):
        total_c, total_p = sum(c, Fraction(0)), sum(p, Fraction(0))
        total_c += factor or 0
        pairs = zip(p, c, strict=True)
        return [seed * (pj * (total_c - cj) - cj * (total_p - pj)) for pj, cj in pairs]
    total_c = math.fsum(_float(v) for v in c) + _float(factor or 0)
    return [_float(seed) * (_float(pj) * total_c - _float(cj)) for pj, cj in zip(p, c, strict=True)]


def cross_entropy(op, quantity, rows, options, cotangent, tangent, z_loss=None) -> list:
    """Values (one per row, or one reduced), gradients [R*C], or JVPs of the cross-entropy;
    ``z_loss`` (coefficient, [lse per row]) adds z lse_r^2 to each kept row's loss."""
    reduction = options.get("reduction", "none")
    coeffs = coefficients(op, rows, options)
    count = rows.x.shape[0]
    sample = _per_row(options.get("sample_weight"), count, "sample_weight")
    divisor = _divisor(op, reduction, rows, coeffs, sample, options)
    if quantity == "grad":
        return _ce_grad(reduction, rows, coeffs, sample, divisor, cotangent, z_loss)
    per_row = []
    for r, c in enumerate(coeffs):
        if c is None or (sample[r] == 0 and not rows.nan_row[r]):
            per_row.append(Fraction(0))
        elif rows.nan_row[r]:
            per_row.append(NAN)
        elif quantity == "value":
            per_row.append(_times(sample[r], _row_loss(c, rows.lsm[r], z_terms(z_loss, r)[0])))
        else:
            factor = z_terms(z_loss, r)[1]
            jvp = _jvp_row(c, rows.p[r], tangent[r], rows.nan_row[r], factor)
            per_row.append(_times(sample[r], jvp))
    if reduction == "none":
        return per_row
    return [_divide(_total(per_row), divisor)]


def _jvp_row(c, p, t, nan_row, factor=None):
    """<d l / d x, t> for one row; a zero tangent row gives 0."""
    if not nan_row and all(v == 0 for v in t):
        return Fraction(0)
    grad = _grad_row(Fraction(1), c, p, factor)
    return _total([_times(tj, gj) for gj, tj in zip(grad, t, strict=True)])


def _ce_grad(reduction, rows, coeffs, sample, divisor, cotangent, z_loss=None) -> list:
    classes = rows.x.shape[1]
    out = []
    for r, c in enumerate(coeffs):
        cot = cotangent[r] if reduction == "none" else cotangent[0]
        weight = Fraction(0) if c is None else _times(sample[r], cot)
        if weight == 0 and (c is None or not rows.nan_row[r]):
            out.extend([Fraction(0)] * classes)
            continue
        seed = _divide(weight, divisor) if divisor is not None else weight
        out.extend(_grad_row(seed, c, rows.p[r], z_terms(z_loss, r)[1]))
    return out


# ---------------------------------------------------------------- softmax, log_softmax, lse


def unlabelled(op: str, quantity: str, rows, direction: list[list]) -> list:
    """VJPs (``direction`` = cotangent rows) or JVPs (= tangent rows) of the unlabelled ops."""
    out: list = []
    for r in range(rows.x.shape[0]):
        p, d = rows.p[r], direction[r]
        size = 1 if op == "logsumexp" and quantity == "jvp" else len(p)
        if not rows.nan_row[r] and all(v == 0 for v in d):
            out.extend([Fraction(0)] * size)
        elif _exact(p) and _exact(d):
            out.extend(_exact_row(op, quantity, p, d))
        else:
            out.extend(_float_row(op, quantity, [_float(v) for v in p], [_float(v) for v in d]))
    return out


def _exact_row(op, quantity, p, d) -> list:
    total_p = sum(p, Fraction(0))
    if op == "logsumexp":  # grad: g p_j (d holds one value); jvp: <p, t>
        return [d[0] * pj for pj in p] if quantity == "grad" else [_dot(p, d)]
    mixed = _dot(p, d)
    if op == "softmax":  # p_j (d_j - <p, d>), both directions (the Jacobian is symmetric)
        return [pj * (dj * total_p - mixed) for pj, dj in zip(p, d, strict=True)]
    if quantity == "grad":  # log_softmax: g_j - p_j sum(g)
        total_d = sum(d, Fraction(0))
        return [dj - pj * total_d for pj, dj in zip(p, d, strict=True)]
    return [dj * total_p - mixed for dj in d]  # log_softmax jvp: t_j - <p, t>


def _float_row(op, quantity, p, d) -> list:
    finite = all(map(math.isfinite, p))
    mixed = math.fsum(pj * dj for pj, dj in zip(p, d, strict=True)) if finite else NAN
    if op == "logsumexp":
        return [d[0] * pj for pj in p] if quantity == "grad" else [mixed]
    if op == "softmax":
        return [pj * (dj - mixed) for pj, dj in zip(p, d, strict=True)]
    if quantity == "grad":
        return [dj - pj * sum(d) for pj, dj in zip(p, d, strict=True)]
    return [dj - mixed for dj in d]


def scaled(values: list, slopes: list) -> list:
    """values_i * slopes_i (the chain rule through the head's transform); a NaN stays NaN."""
    return [
        v if isinstance(v, float) and math.isnan(v) else _times(s, v)
        for v, s in zip(values, slopes, strict=True)
    ]


def _dot(a: list, b: list) -> Fraction:
    return sum((x * y for x, y in zip(a, b, strict=True) if x != 0), Fraction(0))
