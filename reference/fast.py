"""The fast path: every op on many regular rows at once in double-double, with error bounds.

Same formulas as ``reference.exact_arb`` (see there), evaluated in vectorised double-double
arithmetic (``reference.dd``) with a rigorous bound on each output's absolute error. An
output is returned only where that bound proves the float64 rounding (``rounding.decided``);
every other output is left to the ball-arithmetic definition.

Terms exp(d_i) with d_i < NEGLIGIBLE (below NEGLIGIBLE_BOUND = 2^-1067, a float64 subnormal:
a bound that underflowed to 0 would silently stop being a bound) enter only the error bounds;
terms with NEGLIGIBLE <= d_i < LOW, where double-double loses relative accuracy, send their row
to the definition.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import xentbench.reference.dd as dd
from xentbench.reference.rounding import decided, narrow_midpoint

LOW = -650.0
NEGLIGIBLE = -740.0  # e^-740 < 2^-1067
NEGLIGIBLE_BOUND = 2.0**-1067
UNDERFLOW = -746.0  # softmax_i <= e^d_i < 2^-1076 below: rounds to 0
UNDERFLOW_BOUND = 2.0**-1074  # representable bound on such a probability
MAX_MAGNITUDE = 2.0**900  # TwoProd's split and shifted logits stay finite below this

Pair = dd.Pair


@dataclass
class RowTerms:
    """Shared per-row quantities: shifted logits, their exponentials, T = S - 1 and log S."""

    max_index: np.ndarray
    shifted: Pair
    masked: np.ndarray
    exps: Pair
    exps_error: np.ndarray
    tail: Pair
    tail_error: np.ndarray
    log_total: Pair
    log_error: np.ndarray
    usable: np.ndarray


def row_terms(x: np.ndarray) -> RowTerms:
    """The quantities every softmax-family op needs, for regular rows ``x`` of shape [R, C]."""
    masked = np.isneginf(x)
    finite_x = np.where(masked, -np.inf, x)
    max_index = np.argmax(finite_x, axis=1)
    m = np.take_along_axis(x, max_index[:, None], axis=1)
    safe_x = np.where(masked, m, x)
    shifted = dd.two_sum(safe_x, np.broadcast_to(-m, x.shape))
    d = shifted[0]
    in_range = (d >= LOW) & ~masked
    negligible = (d < NEGLIGIBLE) & ~masked
    usable = ~((d < LOW) & (d >= NEGLIGIBLE) & ~masked).any(axis=1)
    usable &= (np.abs(np.where(masked, 0.0, x)) < MAX_MAGNITUDE).all(axis=1)
    clipped = (np.where(in_range, d, 0.0), np.where(in_range, shifted[1], 0.0))
    e = dd.exp(clipped)
    e = (np.where(in_range, e[0], 0.0), np.where(in_range, e[1], 0.0))
    exps_error = dd.EXP_ERROR * e[0] + np.where(negligible, NEGLIGIBLE_BOUND, 0.0)
    rows = np.arange(len(x))
    others = (e[0].copy(), e[1].copy())
    others[0][rows, max_index] = 0.0
    others[1][rows, max_index] = 0.0
    tail, factor = dd.sum_last_axis(others)
    others_error = exps_error.copy()
    others_error[rows, max_index] = 0.0  # (summing all and subtracting would cancel tiny bounds)
    tail_error = factor * tail[0] + others_error.sum(axis=1)
    log_total, log_relative = dd.log1p(tail)
    log_error = log_relative * log_total[0] + tail_error  # d log1p(t)/dt = 1/(1+t) <= 1
    return RowTerms(
        max_index, shifted, masked, e, exps_error, tail, tail_error, log_total, log_error, usable
    )


def _broadcast(pair: Pair, shape: tuple[int, ...]) -> Pair:
    return np.broadcast_to(pair[0][:, None], shape), np.broadcast_to(pair[1][:, None], shape)


def probabilities(terms: RowTerms) -> tuple[Pair, np.ndarray, np.ndarray]:
    """softmax_i = e_i * (1/S), its error bound, and where it may be used.

    Relative error: e_i's EXP_ERROR, S's tail_error / S, and a few OP_ERRORs for the reciprocal
    and the product. Where e_i was not evaluated (d_i < LOW) the probability is below
    e^-650 / S: it rounds to 0 when d_i < UNDERFLOW (p < 2^-1076), else the row needs the
    definition.
    """
    one = dd.const(np.ones(len(terms.tail[0])))
    total = dd.add(one, terms.tail)
    inverse = dd.div(one, total)
    p = dd.mul(terms.exps, _broadcast(inverse, terms.exps[0].shape))
    relative = dd.EXP_ERROR + (terms.tail_error / total[0])[:, None] + 4 * dd.OP_ERROR
    p_error = p[0] * relative + terms.exps_error - dd.EXP_ERROR * terms.exps[0]
    evaluated = terms.exps[0] > 0
    underflow = (terms.shifted[0] < UNDERFLOW) | terms.masked
    # An underflowing probability is exactly 0 once rounded: no error for softmax itself;
    # expressions using it add UNDERFLOW_BOUND (see _soft).
    p_error = np.where(underflow, 0.0, p_error)
    return p, p_error, evaluated | underflow


@dataclass
class Outputs:
    """Outputs where ``ok``; ``tail_hint`` rows of (T hi, T lo, bound) for the definition."""

    hi: np.ndarray
    lo: np.ndarray
    ok: np.ndarray
    tail_hint: np.ndarray | None = None


def _finish(value: Pair, error: np.ndarray, usable: np.ndarray) -> Outputs:
    hi, lo = value
    ok = usable & decided(hi, lo, error)
    # At a midpoint of a narrower dtype the residual's sign decides that rounding: leave it to
    # the definition when the bound does not fix the sign.
    ok &= ~((np.abs(lo) <= error) & narrow_midpoint(hi))
    return Outputs(hi + 0.0, np.where(hi == 0, 0.0, lo), ok)


def _with_hint(outputs: Outputs, terms: RowTerms) -> Outputs:
    hint = np.stack([terms.tail[0], terms.tail[1], terms.tail_error], axis=1)
    outputs.tail_hint = np.where(terms.usable[:, None], hint, np.nan)
    return outputs


def softmax_family(op: str, quantity: str, x: np.ndarray, labels: np.ndarray | None) -> Outputs:
    """Outputs of a softmax-family op on regular rows, with ``ok`` where they are proven."""
    terms = row_terms(x)
    return _with_hint(_softmax_family(op, quantity, x, labels, terms), terms)


def _softmax_family(op, quantity, x, labels, terms: RowTerms) -> Outputs:
    rows_ok = terms.usable[:, None]
    if op == "logsumexp" and quantity == "value":
        m = np.take_along_axis(x, terms.max_index[:, None], axis=1)[:, 0]
        value = dd.add(dd.const(m), terms.log_total)
        error = terms.log_error + dd.OP_ERROR * np.abs(value[0])
        return _finish(value, error, terms.usable)
    if op == "log_softmax":
        value = dd.sub(terms.shifted, _broadcast(terms.log_total, x.shape))
        error = terms.log_error[:, None] + dd.OP_ERROR * np.abs(value[0])
        value = (np.where(terms.masked, -np.inf, value[0]), np.where(terms.masked, 0.0, value[1]))
        return _finish(value, np.where(terms.masked, 0.0, error), rows_ok)
    p, p_error, p_ok = probabilities(terms)
    if op in ("softmax", "logsumexp"):
        return _finish(p, p_error, rows_ok & p_ok)
    if op == "sparse_softmax_cross_entropy":
        return _sparse(quantity, terms, labels, p, p_error, rows_ok & p_ok)
    return _soft(quantity, terms, labels, p, p_error, rows_ok & p_ok)


def _sparse(quantity, terms, labels, p, p_error, ok) -> Outputs:
    rows = np.arange(len(labels))
    d_k = (terms.shifted[0][rows, labels], terms.shifted[1][rows, labels])
    label_masked = terms.masked[rows, labels]
    if quantity == "value":
        value = dd.sub(terms.log_total, d_k)
        error = terms.log_error + dd.OP_ERROR * np.abs(value[0])
        value = (np.where(label_masked, np.inf, value[0]), np.where(label_masked, 0.0, value[1]))
        return _finish(value, np.where(label_masked, 0.0, error), terms.usable)
    # p_k - 1 = -R_k / S with R_k = sum_{j != k} e_j = T when k is the max, else 1 + (T - e_k).
    e_k = (terms.exps[0][rows, labels], terms.exps[1][rows, labels])
    at_max = labels == terms.max_index
    rest = dd.add(dd.const(np.ones(len(rows))), dd.sub(terms.tail, e_k))
    rest = (np.where(at_max, terms.tail[0], rest[0]), np.where(at_max, terms.tail[1], rest[1]))
    rest_error = terms.tail_error + np.where(at_max, 0.0, terms.exps_error[rows, labels])
    rest_error = rest_error + 2 * dd.OP_ERROR * (1 + terms.tail[0])
    total = dd.add(dd.const(np.ones(len(rows))), terms.tail)
    g = dd.neg(dd.div(rest, total))
    with np.errstate(invalid="ignore", divide="ignore"):
        g_error = rest_error / total[0] + np.abs(g[0]) * (terms.tail_error + 4 * dd.OP_ERROR)
    hi, lo = p[0].copy(), p[1].copy()
    error = p_error.copy()
    hi[rows, labels], lo[rows, labels], error[rows, labels] = g[0], g[1], g_error
    ok = ok.copy()
    ok[rows, labels] = terms.usable
    return _finish((hi, lo), error, ok)


def _soft(quantity, terms, labels, p, p_error, ok) -> Outputs:
    label_sum, factor = dd.sum_last_axis(dd.const(labels))
    label_sum_error = factor * np.abs(labels).sum(axis=1)
    if quantity == "grad":
        scaled = dd.mul(_broadcast(label_sum, p[0].shape), p)
        value = dd.sub(scaled, dd.const(labels))
        underflow = (terms.shifted[0] < UNDERFLOW) & ~terms.masked
        p_bound = p_error + np.where(underflow, UNDERFLOW_BOUND, 0.0)
        error = (
            np.abs(label_sum[0])[:, None] * p_bound
            + label_sum_error[:, None] * p[0]
            + dd.OP_ERROR * (np.abs(scaled[0]) + np.abs(labels))
        )
        return _finish(value, error, ok)
    live = ~terms.masked & (labels != 0)
    d = (np.where(live, terms.shifted[0], 0.0), np.where(live, terms.shifted[1], 0.0))
    products = dd.mul_float(dd.neg(d), labels)
    weighted, factor = dd.sum_last_axis(products)
    weighted_error = factor * np.abs(products[0]).sum(axis=1) * 2
    scaled = dd.mul(label_sum, terms.log_total)
    value = dd.add(scaled, weighted)
    error = (
        np.abs(label_sum[0]) * terms.log_error
        + label_sum_error * terms.log_total[0]
        + weighted_error
        + dd.OP_ERROR * (np.abs(scaled[0]) + np.abs(value[0]))
    )
    return _finish(value, error, terms.usable)


def sigmoid(quantity: str, x: np.ndarray, z: np.ndarray) -> Outputs:
    """Sigmoid cross-entropy value or gradient for finite 1-D ``x``, ``z`` (see exact_arb)."""
    a = np.abs(x)
    in_range = a <= -LOW
    negligible = a > -NEGLIGIBLE
    t = dd.exp(dd.const(np.where(in_range, -a, 0.0)))
    t = (np.where(in_range, t[0], 0.0), np.where(in_range, t[1], 0.0))
    t_error = np.where(in_range, dd.EXP_ERROR * t[0], NEGLIGIBLE_BOUND)
    usable = in_range | negligible
    one = dd.const(np.ones_like(x))
    if quantity == "grad":
        denominator = dd.add(one, t)
        numerator = (np.where(x >= 0, 1.0, t[0]), np.where(x >= 0, 0.0, t[1]))
        sig = dd.div(numerator, denominator)
        value = dd.sub(sig, dd.const(z))
        error = 2 * t_error + dd.OP_ERROR * (np.abs(sig[0]) * 4 + np.abs(z))
        return _finish(value, error, usable)
    small, small_relative = dd.log1p(t)
    small_error = small_relative * small[0] + t_error
    large = dd.add(dd.const(a), small)
    one_minus_z = dd.two_sum(np.ones_like(z), -z)
    positive = x >= 0
    plus = (np.where(positive, large[0], small[0]), np.where(positive, large[1], small[1]))
    minus = (np.where(positive, small[0], large[0]), np.where(positive, small[1], large[1]))
    first = dd.mul_float(minus, z)
    second = dd.mul(one_minus_z, plus)
    value = dd.add(first, second)
    large_weight = np.where(positive, np.abs(one_minus_z[0]), np.abs(z))
    error = (
        (np.abs(z) + np.abs(one_minus_z[0])) * small_error
        + large_weight * dd.OP_ERROR * a  # rounding of a + softplus(-a), only where it is weighted
        + dd.OP_ERROR * (np.abs(first[0]) + np.abs(second[0]) + np.abs(value[0]))
    )
    return _finish(value, error, usable)
