"""Shift invariance: the same op on logits shifted by a constant that the dtype adds exactly.

softmax, log_softmax, the softmax cross-entropies and every gradient are invariant under
x -> x + c per row. Rounding the shifted logits would change the question, so each row gets a
power of two c that ``dtype`` adds exactly to every element; then op(x + c) has the same exact
value as op(x), and is judged against it with the same budget (``suites.judge.verdicts``).
"""

from __future__ import annotations

import numpy as np

from xentbench.reference.dd import two_sum
from xentbench.reference.dtypes import finfo, numpy_dtype

# (op, quantity) pairs whose exact value does not change when a row of logits is shifted.
# logsumexp's value moves with the shift (L + c, rounded anew) and the sigmoid cross-entropy is
# elementwise, so neither is here.
INVARIANT = frozenset(
    [
        ("softmax", "value"),
        ("log_softmax", "value"),
        ("softmax_cross_entropy", "value"),
        ("sparse_softmax_cross_entropy", "value"),
        ("logsumexp", "grad"),
        ("softmax_cross_entropy", "grad"),
        ("sparse_softmax_cross_entropy", "grad"),
    ]
)


def lowest_bit(values: np.ndarray) -> np.ndarray:
    """The place value of each finite nonzero float64's lowest set significand bit."""
    mantissa, exponent = np.frexp(values)  # values = m 2^e with 0.5 <= |m| < 1
    significand = np.abs(np.ldexp(mantissa, 53)).astype(np.int64)  # exact: a 53-bit integer
    return np.ldexp((significand & -significand).astype(np.float64), exponent - 53)


def _power_of_two_at_most(bound: np.ndarray) -> np.ndarray:
    """The largest power of two <= bound, elementwise; 0 where bound <= 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        power = np.ldexp(1.0, np.frexp(bound)[1] - 1)  # bound = m 2^e, m in [0.5, 1)
    return np.where(bound > 0, power, 0.0)


def _is_exact_sum(x: np.ndarray, c: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Per element, whether x + c is exactly representable in ``dtype`` (x already is).

    TwoSum gives s + e = x + c exactly; the sum is a float64 iff e == 0, and then a ``dtype``
    number iff s survives the round trip through it.
    """
    with np.errstate(invalid="ignore", over="ignore"):
        s, e = two_sum(x, c)
        same = s.astype(dtype).astype(np.float64) == s
    return ~np.isfinite(x) | ((e == 0) & same & np.isfinite(s))


def exact_shifts(logits: np.ndarray, dtype: str | np.dtype) -> np.ndarray:
    """Per row, the shift c = +-2^k of largest magnitude that ``dtype`` adds exactly to every
    element of the row (+-inf and NaN stay as they are); 0 where no such shift exists.

    Every finite x_i is a multiple of q, the smallest lowest-bit place value in the row, and so
    is x_i + c for a power of two c >= q; a multiple of q is exact when its magnitude is at most
    2^p q (p significand bits) and the dtype's maximum. So c goes up to L - max(x), or down to
    -(L + min(x)), with L = min(2^p q, max). Rows of zeros take q = 1. Each shift is checked
    element by element before it is returned.
    """
    dtype = numpy_dtype(dtype)
    info = finfo(dtype)
    x = np.asarray(logits).astype(np.float64)
    finite = np.isfinite(x)
    with np.errstate(divide="ignore", invalid="ignore"):
        bits = np.where(finite & (x != 0), lowest_bit(np.where(finite, x, 1.0)), np.inf)
    q = bits.min(axis=-1, keepdims=True)
    q = np.where(np.isinf(q), 1.0, q)
    limit = np.minimum(np.ldexp(q, info.nmant + 1), float(info.max))
    top = np.where(finite, x, -np.inf).max(axis=-1, keepdims=True)
    bottom = np.where(finite, x, np.inf).min(axis=-1, keepdims=True)
    up = _power_of_two_at_most(limit - top)
    down = _power_of_two_at_most(limit + bottom)
    shift = np.where(up >= down, up, -down)
    shift = np.where(finite.any(axis=-1, keepdims=True) & (np.abs(shift) >= q), shift, 0.0)
    exact = _is_exact_sum(x, shift, dtype).all(axis=-1, keepdims=True)
    return np.where(exact, shift, 0.0)[..., 0]


def shifted_logits(logits: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """logits + shifts per row, in the logits' own dtype (exact for ``exact_shifts``)."""
    x = np.asarray(logits)
    return (x.astype(np.float64) + shifts[..., None]).astype(x.dtype)
