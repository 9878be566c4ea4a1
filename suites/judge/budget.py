"""The error budget: the absolute error scale of the shifted log-sum-exp and softmax algorithms
per output element, from published rounding error bounds (``BUDGET_RULE``), and the budget in
ULPs of the output dtype that ``suites.judge.verdicts`` judges each element against.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from reference import Exact
from reference.dtypes import numpy_dtype, unit_roundoff
from suites.judge.ulps import truth_in, ulp_at

# Higham & Mary (2019), Thm 2.4: a product of n factors (1 + delta_k) with independent,
# mean-zero |delta_k| <= u is 1 + theta, |theta| <= lambda*sqrt(n)*u + O(u^2), with probability
# at least 1 - 2 exp(-lambda^2 / 2): lambda = 4 fails with probability 6.7e-4 per sum.
LAMBDA = 4.0
# Safety factor on the first-order analysis: library exp/log/log1p are faithful (< 1 ULP)
# rather than correctly rounded (0.5 ULP), which doubles their terms; it also covers O(u^2).
K = 2.0

BUDGET_RULE = (
    "An output element passes when it is within 1 + K*A/ulp ULPs of the exact value, where ulp "
    "is the output dtype's spacing at the correctly rounded result (the 1 covers the final "
    "rounding) and A is the absolute error of the shifted algorithms from a first-order "
    "rounding error analysis (Blanchard, Higham & Mary, 'Accurate computation of the "
    "log-sum-exp and softmax functions', IMA J. Numer. Anal. 41(4), 2021), a sum of C terms "
    "contributing lambda*sqrt(C)*u (Higham & Mary, 'A new approach to probabilistic rounding "
    "error analysis', SIAM J. Sci. Comput. 41(5), 2019; lambda = 4, exceeded with probability "
    "< 1e-3 per sum). With u the dtype's unit roundoff, d = x - max(x) per row, p the softmax, "
    "y the labels and sigma = lambda*sqrt(C) + 2 ln C + 3: A = u(|L| + sigma) for logsumexp L; "
    "u(|d_i| + sigma) for log_softmax and the sparse cross-entropy (at its label k); "
    "u p_i(|d_i| + sigma) for softmax and the logsumexp gradient; u(sum|y_i|(|d_i| + sigma) + "
    "sigma sum|y_i log p_i|) for the soft cross-entropy; u(p_i(|d_i| + sigma) + [i = k]) and "
    "u(p_i(|sum y|(|d_i| + sigma) + sigma sum|y|) + |y_i|) for the two gradients; "
    "u(|x| + 2|xz| + 2) and u(3 sigmoid(x) + |z|) for the sigmoid cross-entropy and its "
    "gradient. K = 2 lets library exp and log be faithful rather than correctly rounded. The "
    "budget follows the shifted algorithm on purpose: an implementation that does not subtract "
    "max(x) loses u|max(x)| and is reported inaccurate."
)


def sigma(n_classes: int) -> float:
    """The per-row error constant of the shifted algorithms, in units of u.

    lambda*sqrt(C): the sum s of C exponentials (probabilistic bound); ln C: the roundings of
    the shifted logits carried through exp into s, as sum_j p_j |d_j| = H(p) - log s <= ln C;
    ln C: the rounding of log s, with 0 <= log s <= ln C; 3: exp, log and division, one each.
    """
    return LAMBDA * math.sqrt(n_classes) + 2 * math.log(n_classes) + 3


@dataclass(frozen=True)
class _Terms:
    """Float64 intermediates of the shifted algorithms for one case, for the budget only."""

    x: np.ndarray  # logits
    labels: np.ndarray | None  # float64 soft labels or sigmoid targets, or int64 class ids
    result: np.ndarray  # the exact result (hi)
    d: np.ndarray | None = None  # x - max(x), [..., C]
    log_s: np.ndarray | None = None  # log sum_j exp(d_j) = L - max(x), [..., 1]
    p: np.ndarray | None = None  # softmax, [..., C]
    sigma: float = 0.0


def _softmax_terms(x: np.ndarray, labels: np.ndarray | None, result: np.ndarray) -> _Terms:
    """The shifted intermediates in float64: budget scales need a few correct digits, not all.

    (The arbitrary-precision reference would give the same scales, at up to a minute for a
    [2, 256000] softmax.) Rows with NaN, +inf or only -inf logits give NaN; see error_scale.
    """
    with np.errstate(all="ignore"):
        d = x - x.max(axis=-1, keepdims=True)
        log_s = np.log(np.exp(d).sum(axis=-1, keepdims=True))
        p = np.exp(d - log_s)
    return _Terms(x, labels, result, d, log_s, p, sigma(x.shape[-1]))


def _weighted(weight: np.ndarray, value: np.ndarray) -> np.ndarray:
    """weight * value, 0 where the weight is 0 (a masked class: p = 0 against |d| = inf)."""
    with np.errstate(invalid="ignore"):
        return np.where(weight == 0, 0.0, weight * value)


def _softmax_scale(t: _Terms, u: float) -> np.ndarray:
    """exp(d_i) / s: relative u|d_i| through exp and u*sigma through s."""
    return u * _weighted(t.p, np.abs(t.d) + t.sigma)


def _at_label(values: np.ndarray, k: np.ndarray) -> np.ndarray:
    return np.take_along_axis(values, k[..., None], axis=-1)[..., 0]


def _sparse_grad(t: _Terms, u: float) -> np.ndarray:
    """p_i - [i = k]: softmax's error, and the one-hot entry, formed at magnitude 1 when log's
    backward multiplies p_k by 1/p_k."""
    onehot = np.arange(t.d.shape[-1]) == t.labels[..., None]
    return _softmax_scale(t, u) + u * onehot


def _soft_value(t: _Terms, u: float) -> np.ndarray:
    """Terms y_i (log s - d_i) carry u|y_i|(|d_i| + sigma); summing them, u*sigma*sum|term|."""
    y = np.abs(t.labels)
    per_term = _weighted(y, u * np.abs(t.d) + u * t.sigma)
    summed = t.sigma * _weighted(y, u * np.abs(t.log_s - t.d))
    return per_term.sum(axis=-1) + summed.sum(axis=-1)


def _soft_grad(t: _Terms, u: float) -> np.ndarray:
    """(sum y) p_i - y_i: p_i's error times |sum y|, sum y's own error, y_i via log's backward."""
    total = np.abs(t.labels.sum(axis=-1, keepdims=True))
    absolute = np.abs(t.labels).sum(axis=-1, keepdims=True)
    scale = total * (np.abs(t.d) + t.sigma) + t.sigma * absolute
    return u * _weighted(t.p, scale) + u * np.abs(t.labels)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    tail = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0, tail) / (1 + tail)


# A per output element from the terms and u; each entry says where its terms come from.
_SCALES = {
    # a + log s: log s carries u*sigma; the final addition u|L|.
    ("logsumexp", "value"): lambda t, u: u * np.abs(t.result) + u * t.sigma,
    ("logsumexp", "grad"): _softmax_scale,
    ("softmax", "value"): _softmax_scale,
    # d_i - log s: the roundings of d_i (u|d_i|) and of log s (u*sigma).
    ("log_softmax", "value"): lambda t, u: u * np.abs(t.d) + u * t.sigma,
    # log s - d_k: log_softmax at the label.
    ("sparse_softmax_cross_entropy", "value"): lambda t, u: (
        u * _at_label(np.abs(t.d), t.labels) + u * t.sigma
    ),
    ("sparse_softmax_cross_entropy", "grad"): _sparse_grad,
    ("softmax_cross_entropy", "value"): _soft_value,
    ("softmax_cross_entropy", "grad"): _soft_grad,
    # max(x, 0) - x z + log1p(exp(-|x|)): x z rounded (u|xz|) then subtracted from max(x, 0)
    # (u(|x| + |xz|)); exp and log1p one rounding each, on values <= 1. u first: no overflow.
    ("sigmoid_cross_entropy", "value"): lambda t, u: (
        u * np.abs(t.x) + 2 * (u * np.abs(t.x)) * np.abs(t.labels) + 2 * u
    ),
    # sigmoid(x) - z: exp, 1 + e and the division round once each; |z| from forms such as
    # (1 - z) - (1 - sigmoid(x)) that round at the magnitude of z.
    ("sigmoid_cross_entropy", "grad"): lambda t, u: 3 * u * _sigmoid(t.x) + u * np.abs(t.labels),
}


def labels64(op: str, labels: np.ndarray | None) -> np.ndarray | None:
    """Labels widened for arithmetic: int64 class ids for the sparse op, float64 otherwise."""
    if labels is None:
        return None
    return np.asarray(labels).astype(np.int64 if op.startswith("sparse") else np.float64)


def error_scale(
    op: str,
    quantity: str,
    dtype: str | np.dtype,
    logits: np.ndarray,
    labels: np.ndarray | None,
    exact: Exact,
    options: dict | None = None,
) -> np.ndarray:
    """A, the absolute error scale of the shifted algorithm per output element (BUDGET_RULE).

    The linear op's scale (``suites.judge.linear_budget``) needs the weight in ``options``.

    Where an infinite logit makes the exact value a limit (a row with +inf, an infinite sigmoid
    logit) the formulas give inf or NaN; a finite limit is exact, so only the final rounding is
    allowed there: A = 0.
    """
    if op == "linear_cross_entropy":
        from suites.judge.linear_budget import linear_error_scale  # it imports this module

        return linear_error_scale(quantity, dtype, logits, labels, options or {})
    x = np.asarray(logits).astype(np.float64)
    y = labels64(op, labels)
    if op == "sigmoid_cross_entropy":
        terms, limit = _Terms(x, y, exact.hi), np.isinf(x)
    else:
        terms = _softmax_terms(x, y, exact.hi)
        limit = (x == np.inf).any(axis=-1, keepdims=exact.hi.ndim == x.ndim)
    with np.errstate(invalid="ignore", over="ignore"):
        scale = _SCALES[(op, quantity)](terms, unit_roundoff(dtype))
    return np.where(limit, 0.0, scale)


def in_ulps(ulp: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """1 + K*A/ulp, saturated at the float64 maximum (reached for float64 results at or near 0,
    whose ULP is as small as 2^-1074; verdicts compare absolute errors, unaffected)."""
    with np.errstate(invalid="ignore", over="ignore"):
        return np.minimum(1 + K * scale / ulp, np.finfo(np.float64).max)


def budget_ulps(
    op: str,
    quantity: str,
    dtype: str | np.dtype,
    logits: np.ndarray,
    labels: np.ndarray | None,
    exact: Exact,
    options: dict | None = None,
) -> np.ndarray:
    """The budget per element in ULPs of the output dtype; NaN where the truth is not finite."""
    dtype = numpy_dtype(dtype)
    scale = error_scale(op, quantity, dtype, logits, labels, exact, options)
    return in_ulps(ulp_at(truth_in(exact, dtype), dtype), scale)
