"""Accuracy metrics, the error budget and verdicts, defined once.

An output element is measured against the exact value ``t = hi + lo`` of ``reference.exact``
in ULPs of the *output* dtype, classified as a non-finite match or mismatch, and judged
against a per-element budget derived from published rounding error bounds for the shifted
log-sum-exp and softmax algorithms (``BUDGET_RULE``). ``evaluate`` turns one result into an
``Evaluation`` whose fields are columns of the accuracy results schema.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from reference import Exact

VERDICTS: tuple[str, ...] = ("pass", "inaccurate", "wrong", "error", "unsupported")

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

# ------------------------------------------------------------------------- dtypes and ULPs


def output_dtype(dtype: str | np.dtype | type) -> np.dtype:
    """The NumPy dtype for a canonical name or a dtype (bfloat16 comes from ml_dtypes)."""
    if isinstance(dtype, str) and dtype == "bfloat16":
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(dtype)


def finfo(dtype: str | np.dtype) -> Any:
    """The float limits of a dtype by name or dtype, bfloat16 included."""
    import ml_dtypes  # its finfo also knows bfloat16, which np.finfo does not

    return ml_dtypes.finfo(output_dtype(dtype))


def unit_roundoff(dtype: str | np.dtype) -> float:
    """u = 2^-p for p significand bits: 2^-11 f16, 2^-8 bf16, 2^-24 f32, 2^-53 f64."""
    return math.ldexp(1.0, -(finfo(dtype).nmant + 1))


def spacing(values: np.ndarray, dtype: str | np.dtype) -> np.ndarray:
    """ULP of ``dtype`` at each value: the gap in its binade [2^e, 2^(e+1)); NaN if not finite.

    At a power of two this is the gap above it (Goldberg's ulp); at 0 and at subnormals it is
    the smallest subnormal.
    """
    info = finfo(dtype)
    magnitude = np.abs(np.asarray(values, dtype=np.float64))
    _, exponent = np.frexp(magnitude)  # magnitude = m * 2^exponent, m in [0.5, 1)
    gaps = np.ldexp(1.0, exponent - (info.nmant + 1))
    gaps = np.where(magnitude < float(info.smallest_normal), float(info.smallest_subnormal), gaps)
    return np.where(np.isfinite(magnitude), gaps, np.nan)


def _truth_in(exact: Exact, dtype: np.dtype) -> np.ndarray:
    """The exact value correctly rounded to ``dtype``, as float64 (inf where it overflows)."""
    return exact.rounded(dtype).astype(np.float64)


def _ulp_at(truth: np.ndarray, dtype: np.dtype) -> np.ndarray:
    return np.where(np.isfinite(truth), spacing(truth, dtype), np.nan)


def absolute_errors(got: np.ndarray, exact: Exact) -> np.ndarray:
    """|got - (hi + lo)| as |(got - hi) - lo| in float64, so beyond float64; NaN if non-finite."""
    got = np.asarray(got).astype(np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        error = np.abs((got - exact.hi) - exact.lo)
    return np.where(np.isfinite(got) & np.isfinite(exact.hi), error, np.nan)


def ulp_errors(got: np.ndarray, exact: Exact, dtype: str | np.dtype) -> np.ndarray:
    """Per element |got - t| in ULPs of the output dtype at t rounded to it; NaN if non-finite.

    A truth beyond the dtype's range counts as non-finite (its correct rounding is inf).
    """
    dtype = output_dtype(dtype)
    with np.errstate(invalid="ignore", over="ignore"):
        return absolute_errors(got, exact) / _ulp_at(_truth_in(exact, dtype), dtype)


def relative_errors(got: np.ndarray, exact: Exact) -> np.ndarray:
    """|got - t| / |t|: 0 where both are 0, inf where only t is 0, NaN if non-finite."""
    return _relative(absolute_errors(got, exact), exact)


def _relative(errors: np.ndarray, exact: Exact) -> np.ndarray:
    magnitude = np.abs(exact.hi)
    with np.errstate(divide="ignore", invalid="ignore"):
        relative = errors / magnitude
    at_zero = np.where(errors == 0, 0.0, np.where(errors > 0, np.inf, np.nan))
    return np.where(magnitude == 0, at_zero, relative)


def nonfinite_mismatches(got: np.ndarray, expected: np.ndarray) -> np.ndarray:
    """True where the kinds differ; a match is both NaN, both finite or the same infinity.

    ``expected`` is the exact value rounded to the output dtype, so a truth beyond the dtype's
    range is the infinity that IEEE rounding makes of it.
    """
    got = np.asarray(got).astype(np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    match = (np.isnan(got) & np.isnan(expected)) | (np.isfinite(got) & np.isfinite(expected))
    return ~(match | (np.isinf(got) & (got == expected)))


# ------------------------------------------------------------------------------ the budget


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
) -> np.ndarray:
    """A, the absolute error scale of the shifted algorithm per output element (BUDGET_RULE).

    Where an infinite logit makes the exact value a limit (a row with +inf, an infinite sigmoid
    logit) the formulas give inf or NaN; a finite limit is exact, so only the final rounding is
    allowed there: A = 0.
    """
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


def _in_ulps(ulp: np.ndarray, scale: np.ndarray) -> np.ndarray:
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
) -> np.ndarray:
    """The budget per element in ULPs of the output dtype; NaN where the truth is not finite."""
    dtype = output_dtype(dtype)
    scale = error_scale(op, quantity, dtype, logits, labels, exact)
    return _in_ulps(_ulp_at(_truth_in(exact, dtype), dtype), scale)


# -------------------------------------------------------------------------------- verdicts


def verdict(shape_ok: bool, nonfinite_mismatches: int, beyond_budget: int) -> str:
    """DESIGN.md's rule for a returned result: wrong, else inaccurate, else pass."""
    if not shape_ok or nonfinite_mismatches > 0:
        return "wrong"
    return "inaccurate" if beyond_budget > 0 else "pass"


def verdict_for_exception(case_invalid: bool) -> str:
    """Raising on invalid input (a sparse label outside [0, C)) passes; on valid input, error."""
    return "pass" if case_invalid else "error"


def verdict_for_invalid_result() -> str:
    """A silent number for invalid input is wrong: the caller cannot tell it from a loss."""
    return "wrong"


# ------------------------------------------------------------------------------ evaluation


@dataclass(frozen=True)
class Evaluation:
    """One (implementation, case, dtype, quantity) result, as accuracy-schema columns."""

    verdict: str
    n_elements: int
    max_ulp_error: float
    mean_ulp_error: float
    max_rel_error: float
    nonfinite_mismatches: int
    worst_index: str  # e.g. "(0, 3)"; "" when no element could be compared
    expected: float  # the exact value (hi) at the worst element
    got: float  # the returned value there
    budget_ulps: float  # the budget there
    worst_input: str = ""  # the inputs behind the worst element
    message: str = ""

    def as_row(self) -> dict[str, Any]:
        """The fields keyed by their accuracy-schema column names."""
        return dataclasses.asdict(self)


def _nan_stat(reduce, values: np.ndarray) -> float:
    finite = values[~np.isnan(values)]
    return float(reduce(finite)) if finite.size else math.nan


def _worst(mismatch: np.ndarray, ratio: np.ndarray) -> int | None:
    """Flat index of the first non-finite mismatch, else of the largest error/budget ratio."""
    if mismatch.any():
        return int(np.flatnonzero(mismatch)[0])
    return None if np.isnan(ratio).all() else int(np.nanargmax(ratio))


def _describe_input(op: str, logits, labels, index: tuple[int, ...], elementwise: bool) -> str:
    """The inputs behind one output element, short enough for a report cell."""
    x = np.asarray(logits).astype(np.float64)
    if op == "sigmoid_cross_entropy":
        return f"x={float(x[index])!r}, z={float(np.asarray(labels)[index])!r}"
    row = index[:-1] if elementwise else index
    text = f"C={x.shape[-1]}, max(x)={float(x[row].max())!r}, min(x)={float(x[row].min())!r}"
    if elementwise:
        text += f", x_i={float(x[index])!r}"
    if op == "sparse_softmax_cross_entropy":
        k = int(np.asarray(labels)[row])
        text += f", label={k}, x_label={float(x[(*row, k)])!r}"
    return text


def evaluate(
    op: str,
    quantity: str,
    dtype: str,
    logits: np.ndarray,
    labels: np.ndarray | None,
    got: np.ndarray,
    exact: Exact,
) -> Evaluation:
    """Measure ``got`` against ``exact`` in ULPs of ``dtype``, apply the budget, give a verdict.

    A result of another dtype is converted to float64 and measured in ULPs of the requested
    dtype; the message says what was returned.
    """
    got = np.asarray(got)
    if got.shape != exact.hi.shape:
        message = f"output shape {got.shape}, expected {exact.hi.shape}"
        nan = math.nan
        return Evaluation("wrong", exact.hi.size, nan, nan, nan, 0, "", nan, nan, nan, "", message)
    requested = output_dtype(dtype)
    got64, truth = got.astype(np.float64), _truth_in(exact, requested)
    ulp, absolute = _ulp_at(truth, requested), absolute_errors(got64, exact)
    scale = error_scale(op, quantity, requested, logits, labels, exact)
    mismatch = nonfinite_mismatches(got64, truth)
    with np.errstate(invalid="ignore", over="ignore"):
        errors = absolute / ulp
        ratio = absolute / (ulp + K * scale)  # error / budget, in absolute terms: no overflow
    worst = _worst(mismatch, ratio)
    index = () if worst is None else tuple(int(i) for i in np.unravel_index(worst, got.shape))
    at = (lambda a: math.nan) if worst is None else (lambda a: float(a.flat[worst]))
    elementwise = exact.hi.ndim == np.ndim(logits)
    return Evaluation(
        verdict=verdict(True, int(mismatch.sum()), int(np.sum(ratio > 1))),
        n_elements=int(got.size),
        max_ulp_error=_nan_stat(np.max, errors),
        mean_ulp_error=_nan_stat(np.mean, errors),
        max_rel_error=_nan_stat(np.max, _relative(absolute, exact)),
        nonfinite_mismatches=int(mismatch.sum()),
        worst_index="" if worst is None else str(index),
        expected=at(exact.hi),
        got=at(got64),
        budget_ulps=at(_in_ulps(ulp, scale)),
        worst_input=""
        if worst is None
        else _describe_input(op, logits, labels, index, elementwise),
        message="" if got.dtype == requested else f"returned {got.dtype} for {requested.name}",
    )
