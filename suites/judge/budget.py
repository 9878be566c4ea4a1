"""The error budget's base bounds: what a good implementation achieves (``BUDGET_RULE``).

Per output element of each op, A: the absolute error of the shifted algorithms with the
internals' unit roundoff u_acc (float32 for the 16-bit dtypes), and R, the magnitude of the
terms the result is a sum of, which sets the ULP ruler's floor. ``suites.judge.allowance`` turns
A into the allowance ``ulp_out(t) + K*A``; the call options' rules (``suites.judge.option_budget``)
build on A. Also the worked examples every report prints.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from xentbench.reference import Exact
from xentbench.reference.dtypes import unit_roundoff
from xentbench.reference.evaluate import LINEAR_OP
from xentbench.suites.judge.linear_budget import linear_error_scale
from xentbench.suites.judge.roundoff import LAMBDA, K, accumulation_roundoff, sigma
from xentbench.suites.judge.ulps import spacing

BUDGET_RULE = (
    "The budget states what a good implementation achieves: the shifted algorithms (subtract "
    "max(x), exponentiate, sum, take logs) computed with internals of unit roundoff u_acc and "
    "rounded once to the output dtype, of unit roundoff u_out. u_acc = 2^-24 (float32 "
    "internals) for float16 and bfloat16, the dtype's own u otherwise (2^-24 float32, 2^-53 "
    "float64); u_out = 2^-11 float16, 2^-8 bfloat16. An output element passes when "
    "|got - t| <= allowance = ulp_out(t) + K*A(u_acc), t the exact value: one ULP of the "
    "output dtype at t covers the final rounding (and faithful rather than correctly rounded "
    "library functions), and A is the absolute error of the shifted algorithms from a "
    "first-order rounding error analysis (Blanchard, Higham & Mary, 'Accurate computation of "
    "the log-sum-exp and softmax functions', IMA J. Numer. Anal. 41(4), 2021) with unit "
    "roundoff u_acc, in which the sum of C exponentials contributes lambda*sqrt(C)*u_acc (Higham "
    "& Mary, 'A new approach to probabilistic rounding error analysis', SIAM J. Sci. Comput. "
    "41(5), 2019; lambda = 4, exceeded with probability < 1e-3 per sum; it holds for recursive, "
    "blocked and pairwise sums and stays below 3e-4 up to C = 10^6 in float32). With u = u_acc, "
    "d = x - max(x) per row, p the softmax, y the labels and sigma = lambda*sqrt(C) + 2 ln C + "
    "3: A = u(|L| + sigma) for logsumexp L; u(|d_i| + sigma) for log_softmax and the sparse "
    "cross-entropy (at its label k); u p_i(|d_i| + sigma) for softmax and the logsumexp "
    "gradient; u(sum|y_i|(|d_i| + sigma) + sigma sum|y_i log p_i|) for the soft cross-entropy; "
    "u(p_i(|d_i| + sigma) + [i = k]) and u(p_i(|sum y|(|d_i| + sigma) + sigma sum|y|) + |y_i|) "
    "for the two gradients; u(|x| + 2|xz| + 2) and u(3 sigmoid(x) + |z|) for the sigmoid "
    "cross-entropy and its gradient. K = 2 lets library exp and log be faithful rather than "
    "correctly rounded. The terms without a factor p_i or t are absolute: near a zero or "
    "subnormal truth (log_softmax of a dominant class, p_k - 1 at a sure label) the allowance "
    "is the error of the terms the result was formed from, not a fraction of the result. The "
    "measure is error / allowance per element; its maximum decides (above 1: inaccurate). ULP "
    "figures are in ULPs of the output dtype at t, never finer than half an ULP at the "
    "magnitude R of the terms the result is a sum of (R = |t| without cancellation; log s "
    "counts as at least 1, the log of s >= 1) and, for "
    "a zero or subnormal t, than half an ULP at A/u_acc, so a cancelling result near zero is "
    "not measured in subnormal ULPs. The budget follows the "
    "shifted algorithm on purpose: an implementation that does not subtract max(x) loses "
    "u|max(x)|, one that accumulates in a 16-bit dtype loses about sqrt(C)*2^-8, and both are "
    "reported inaccurate."
)


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


def shifted(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """d = x - max(x), log s = log sum_j exp(d_j) and p = softmax, per row of float64 ``x``.

    Float64: budget scales need a few correct digits, not all (the arbitrary-precision reference
    would give the same scales, at up to a minute for a [2, 256000] softmax). Rows with NaN,
    +inf or only -inf logits give NaN; see error_scale.
    """
    with np.errstate(all="ignore"):
        d = x - x.max(axis=-1, keepdims=True)
        log_s = np.log(np.exp(d).sum(axis=-1, keepdims=True))
        return d, log_s, np.exp(d - log_s)


def _softmax_terms(x: np.ndarray, labels: np.ndarray | None, result: np.ndarray) -> _Terms:
    """The shifted intermediates of ``x`` (``shifted``) with the labels and the result."""
    return _Terms(x, labels, result, *shifted(x), sigma(x.shape[-1]))


def weighted(weight: np.ndarray, value: np.ndarray) -> np.ndarray:
    """weight * value, 0 where the weight is 0 (a masked class: p = 0 against |d| = inf)."""
    with np.errstate(invalid="ignore", over="ignore"):
        return np.where(weight == 0, 0.0, weight * value)


def _softmax_scale(t: _Terms, u: float) -> np.ndarray:
    """exp(d_i) / s: relative u|d_i| through exp and u*sigma through s."""
    return u * weighted(t.p, np.abs(t.d) + t.sigma)


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
    per_term = weighted(y, u * np.abs(t.d) + u * t.sigma)
    summed = t.sigma * weighted(y, u * np.abs(t.log_s - t.d))
    return per_term.sum(axis=-1) + summed.sum(axis=-1)


def _soft_grad(t: _Terms, u: float) -> np.ndarray:
    """(sum y) p_i - y_i: p_i's error times |sum y|, sum y's own error, y_i via log's backward."""
    total = np.abs(t.labels.sum(axis=-1, keepdims=True))
    absolute = np.abs(t.labels).sum(axis=-1, keepdims=True)
    scale = total * (np.abs(t.d) + t.sigma) + t.sigma * absolute
    return u * weighted(t.p, scale) + u * np.abs(t.labels)


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


@dataclass(frozen=True)
class Output:
    """One output to judge: the op and quantity asked, the dtype, the inputs, the exact truth."""

    op: str
    quantity: str
    dtype: str | np.dtype
    logits: np.ndarray  # the linear op's hidden states
    labels: np.ndarray | None
    exact: Exact


def error_scale(output: Output, options: dict | None = None) -> np.ndarray:
    """A, the absolute error scale of the shifted algorithm per output element (BUDGET_RULE).

    The linear op's scale (``suites.judge.linear_budget``) needs the weight in ``options``;
    the other ops' options are carried by ``suites.judge.option_budget``, not here.

    Where an infinite logit makes the exact value a limit (a row with +inf, an infinite sigmoid
    logit) the formulas give inf or NaN; a finite limit is exact, so only the final rounding is
    allowed there: A = 0.
    """
    op, exact = output.op, output.exact
    if op == LINEAR_OP:
        return linear_error_scale(
            output.quantity, output.dtype, output.logits, output.labels, options or {}
        )
    x = np.asarray(output.logits).astype(np.float64)
    y = labels64(op, output.labels)
    if op == "sigmoid_cross_entropy":
        terms, limit = _Terms(x, y, exact.hi), np.isinf(x)
    else:
        terms = _softmax_terms(x, y, exact.hi)
        limit = (x == np.inf).any(axis=-1, keepdims=exact.hi.ndim == x.ndim)
    with np.errstate(invalid="ignore", over="ignore"):
        scale = _SCALES[(op, output.quantity)](terms, accumulation_roundoff(output.dtype))
    return np.where(limit, 0.0, scale)


# R per output element: the magnitude of the terms the result is a sum of (|t| when nothing
# cancels); the ULP ruler is never finer than half an ULP at R (BUDGET_RULE). log s counts as
# at least 1: it is the log of s >= 1, rounded at the magnitude of s (absolute error ~u).
_ADDENDS = {
    ("logsumexp", "value"): lambda t: np.abs(t.x.max(axis=-1)) + 1 + t.log_s[..., 0],
    ("log_softmax", "value"): lambda t: np.abs(t.d) + 1 + t.log_s,
    ("sparse_softmax_cross_entropy", "value"): lambda t: (
        _at_label(np.abs(t.d), t.labels) + 1 + t.log_s[..., 0]
    ),
    ("sparse_softmax_cross_entropy", "grad"): lambda t: (
        t.p + (np.arange(t.d.shape[-1]) == t.labels[..., None])
    ),
    ("softmax_cross_entropy", "value"): lambda t: weighted(
        np.abs(t.labels), np.abs(t.d) + 1 + t.log_s
    ).sum(axis=-1),
    ("softmax_cross_entropy", "grad"): lambda t: (
        np.abs(t.labels.sum(axis=-1, keepdims=True)) * t.p + np.abs(t.labels)
    ),
    ("sigmoid_cross_entropy", "value"): lambda t: np.abs(t.x) * (1 + np.abs(t.labels)),
    ("sigmoid_cross_entropy", "grad"): lambda t: _sigmoid(t.x) + np.abs(t.labels),
}


def addends(output: Output) -> np.ndarray:
    """R per element of a plain op's output (NaN where undefined, and for softmax-like outputs
    that never cancel)."""
    rule, hi = _ADDENDS.get((output.op, output.quantity)), output.exact.hi
    if rule is None:
        return np.full(hi.shape, np.nan)
    x, y = np.asarray(output.logits).astype(np.float64), labels64(output.op, output.labels)
    terms = _Terms(x, y, hi) if output.op == "sigmoid_cross_entropy" else None
    with np.errstate(all="ignore"):
        return rule(terms or _softmax_terms(x, y, hi))


def worked_example(dtype: str, n_classes: int) -> dict[str, float]:
    """The rule's figures for one row of C equal logits (p_i = 1/C, d_i = 0): the sum term, and
    the allowance of a softmax element (also the off-label cross-entropy gradient) and of a
    log_softmax element (t = -ln C), absolute, in ULPs of the output dtype and relative to t."""
    u_acc, row_sigma = accumulation_roundoff(dtype), sigma(n_classes)
    p, log_p = 1.0 / n_classes, -math.log(n_classes)
    figures = {"u_out": unit_roundoff(dtype), "u_acc": u_acc, "sigma": row_sigma}
    figures["sum_term"] = LAMBDA * math.sqrt(n_classes) * u_acc
    for name, truth, scale in (
        ("softmax", p, u_acc * p * row_sigma),
        ("log_softmax", log_p, u_acc * row_sigma),
    ):
        ulp = float(spacing(np.array(truth), dtype))
        absolute = ulp + K * scale
        figures[f"{name}_t"] = truth
        figures[f"{name}_allowance"] = absolute
        figures[f"{name}_ulps"] = absolute / ulp
        figures[f"{name}_relative"] = absolute / abs(truth)
    return figures


WORKED_EXAMPLES: tuple[tuple[str, int], ...] = (("bfloat16", 50_000), ("float32", 256_000))


def worked_examples_text() -> list[str]:
    """One line per worked example of BUDGET_RULE, figures computed by ``worked_example``."""
    lines = []
    for dtype, n_classes in WORKED_EXAMPLES:
        f = worked_example(dtype, n_classes)
        lines.append(
            f"{dtype}, C = {n_classes:,}: u_out = {f['u_out']:.3g}, u_acc = {f['u_acc']:.3g}, "
            f"sigma = {f['sigma']:.1f}, sum term lambda*sqrt(C)*u_acc = {f['sum_term']:.2e}; "
            f"softmax element p = 1/C = {f['softmax_t']:.3g}: allowance "
            f"{f['softmax_allowance']:.3g} = {f['softmax_ulps']:.3g} ULPs "
            f"({100 * f['softmax_relative']:.3g}% of p); log_softmax element ln(1/C) = "
            f"{f['log_softmax_t']:.4g}: allowance {f['log_softmax_allowance']:.3g} = "
            f"{f['log_softmax_ulps']:.3g} ULPs ({100 * f['log_softmax_relative']:.3g}%)"
        )
    return lines
