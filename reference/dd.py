"""Vectorised double-double ("double-word") arithmetic in NumPy, with error bounds.

A value is a pair ``(hi, lo)`` of float64 arrays with ``hi = RN(hi + lo)``. The building
blocks and their relative error bounds (u = 2^-53) are from M. Joldes, J.-M. Muller and
V. Popescu, "Tight and rigorous error bounds for basic building blocks of double-word
arithmetic", ACM TOMS 44(2), 2017: ``add`` is their AccurateDWPlusDW (<= 3u^2 + 13u^3),
``mul`` DWTimesDW1 (<= 7u^2), ``mul_float`` DWTimesFP1 (<= 1.5u^2 + 4u^3), ``div`` DWDivDW1
(<= 15u^2 + 56u^3). TwoProd uses Dekker's split, exact while |a|, |b| < 2^995 (no FMA in NumPy).
``OP_ERROR`` bounds every one of them with room to spare.

``exp_parts`` evaluates exp and expm1 to about 2^-95 (bounds in its docstring).
"""

from __future__ import annotations

import math

import numpy as np
from flint import arb, ctx

Pair = tuple[np.ndarray, np.ndarray]

U = 2.0**-53
OP_ERROR = 2.0**-100  # >= 15u^2 + 56u^3, the largest of the bounds above
SPLITTER = 2.0**27 + 1.0


def two_sum(a: np.ndarray, b: np.ndarray) -> Pair:
    """Knuth's TwoSum: s + e = a + b exactly."""
    s = a + b
    v = s - a
    return s, (a - (s - v)) + (b - v)


def quick_two_sum(a: np.ndarray, b: np.ndarray) -> Pair:
    """Dekker's Fast2Sum: exact when |a| >= |b| (or a == 0)."""
    s = a + b
    return s, b - (s - a)


def two_prod(a: np.ndarray, b: np.ndarray) -> Pair:
    """Dekker's TwoProd: p + e = a * b exactly (no overflow, no underflow of the parts)."""
    p = a * b
    c = SPLITTER * a
    a_hi = c - (c - a)
    a_lo = a - a_hi
    c = SPLITTER * b
    b_hi = c - (c - b)
    b_lo = b - b_hi
    return p, ((a_hi * b_hi - p) + a_hi * b_lo + a_lo * b_hi) + a_lo * b_lo


def add(a: Pair, b: Pair) -> Pair:
    s, t = two_sum(a[0], b[0])
    u, v = two_sum(a[1], b[1])
    s, t = quick_two_sum(s, t + u)
    return quick_two_sum(s, t + v)


def neg(a: Pair) -> Pair:
    return -a[0], -a[1]


def sub(a: Pair, b: Pair) -> Pair:
    return add(a, neg(b))


def mul(a: Pair, b: Pair) -> Pair:
    p, e = two_prod(a[0], b[0])
    return quick_two_sum(p, e + (a[0] * b[1] + a[1] * b[0]))


def mul_float(a: Pair, b: np.ndarray) -> Pair:
    p, e = two_prod(a[0], b)
    return quick_two_sum(p, e + a[1] * b)


def div(a: Pair, b: Pair) -> Pair:
    q1 = a[0] / b[0]
    r = sub(a, mul_float(b, q1))
    return quick_two_sum(q1, r[0] / b[0])


def const(value: float | np.ndarray) -> Pair:
    value = np.asarray(value, dtype=np.float64)
    return value, np.zeros_like(value)


def _truncate(value: float, bits: int) -> float:
    """``value`` cut to its leading ``bits`` significant bits (exactly representable)."""
    mantissa, exponent = math.frexp(value)
    return math.ldexp(math.floor(mantissa * 2.0**bits), exponent - bits)


# exp(d) = 2^(k/N) * exp(r) with k = rint(d N / ln 2), |r| <= ln(2)/(2N) < 2^-9.4. ln(2)/N is
# split in three parts so that k * part is exact for |k| < 2^21 (parts of 32 significant bits).
TABLE_BITS = 8
N = 1 << TABLE_BITS
with ctx.workprec(300):
    _ln2_n = arb(2).log() / N
    LN2_N_HI = _truncate(float(_ln2_n.mid()), 32)
    LN2_N_MID = _truncate(float((_ln2_n - LN2_N_HI).mid()), 32)
    LN2_N_LO = float((_ln2_n - LN2_N_HI - LN2_N_MID).mid())
    _table = [arb(2) ** (arb(j) / N) for j in range(N)]
    TABLE_HI = np.array([float(t.mid()) for t in _table])
    TABLE_LO = np.array([float((t - float(t.mid())).mid()) for t in _table])
    INV_FACTORIAL_3 = (
        float((1 / arb(6)).mid()),
        float((1 / arb(6) - float((1 / arb(6)).mid())).mid()),
    )

# Relative error bounds of ``exp_parts``' results (derivation in its docstring), with a
# safety factor of at least 2^4 over the derived figures.
EXP_ERROR = 2.0**-88
EXPM1_ERROR = 2.0**-84


def exp_parts(d: Pair) -> tuple[Pair, Pair]:
    """``(B, q)`` with exp(d) = B (1 + q) and B = 2^(k/N): exact reduction plus a Taylor series.

    Requires -650 <= d <= 700, where the low word of the result stays a normal number.
    Errors, u = 2^-53:
    reduction r = d - k ln(2)/N is exact in its first two steps (Sterbenz) and within 2^-96
    overall; q = r + r^2/2 + r^3/6 (double-double) + sum_{n=4..8} r^n/n! (float64): the float64
    tail is below 2^-42.5 so rounds within 2^-93.5, truncation after r^8 is below 2^-104,
    and the table entries are within 2^-106 relative. So exp(d) is within ~2^-92 relative.
    """
    k = np.rint(d[0] * (1.0 / LN2_N_HI))
    r_hi = d[0] - k * LN2_N_HI  # exact: Sterbenz, as d[0] is within ln(2)/(2N) of k ln(2)/N
    r = two_sum(r_hi, -k * LN2_N_MID)
    r = quick_two_sum(r[0], r[1] + (d[1] - k * LN2_N_LO))
    square = mul(r, r)
    half_square = (square[0] * 0.5, square[1] * 0.5)
    cube_sixth = mul(mul(square, r), INV_FACTORIAL_3)
    x = r[0]
    tail = x**4 * (1 / 24 + x * (1 / 120 + x * (1 / 720 + x * (1 / 5040 + x / 40320))))
    q = add(add(r, half_square), add(cube_sixth, const(tail)))
    k = k.astype(np.int64)
    exponent, index = np.divmod(k, N)
    scale = np.ldexp(1.0, exponent)
    return (TABLE_HI[index] * scale, TABLE_LO[index] * scale), q


BLOCK = 1 << 14  # elements per block: a block's temporaries stay in cache


def exp(d: Pair) -> Pair:
    """exp(d) in double-double, relative error <= EXP_ERROR, for -650 <= d <= 700."""
    hi, lo = np.ravel(d[0]), np.ravel(d[1])
    out_hi, out_lo = np.empty_like(hi), np.empty_like(hi)
    for start in range(0, hi.size, BLOCK):
        block = slice(start, start + BLOCK)
        base, q = exp_parts((hi[block], lo[block]))
        out_hi[block], out_lo[block] = add(base, mul(base, q))
    return out_hi.reshape(np.shape(d[0])), out_lo.reshape(np.shape(d[0]))


def expm1(d: Pair) -> Pair:
    """exp(d) - 1, relative error <= EXPM1_ERROR, for -650 <= d <= 700.

    (B - 1) + B q: for k = 0, B = 1 and q carries the relative accuracy of its series; for
    k != 0, |exp(d) - 1| >= 2^-9.6, so the absolute error B * 2^-92 is relatively small.
    """
    base, q = exp_parts(d)
    return add(sub(base, const(np.ones_like(base[0]))), mul(base, q))


def log1p(t: Pair) -> tuple[Pair, np.ndarray]:
    """log(1 + t) for t >= 0, and a bound on its relative error.

    One Newton step from y0 = float64 log1p: log1p(t) = y0 + log1p(delta) with
    delta = (t - expm1(y0)) / (1 + expm1(y0)); the result's relative error is at most
    EXPM1_ERROR (the expm1 error, scaled by (1 - e^-y0) / y0 <= 1) plus OP_ERROR-sized
    rounding, plus the remainder |delta|^3 / 3 of log1p(delta) ~ delta - delta^2 / 2.
    """
    y0 = np.log1p(t[0])
    u = expm1(const(y0))
    delta = div(sub(t, u), add(const(np.ones_like(y0)), u))
    correction = add(delta, const(-0.5 * delta[0] * delta[0]))
    result = add(const(y0), correction)
    remainder = np.abs(delta[0]) ** 3 / 3 + 4 * U * delta[0] ** 2
    with np.errstate(invalid="ignore", divide="ignore"):
        relative = EXPM1_ERROR + 8 * OP_ERROR + np.where(result[0] > 0, remainder / result[0], 0.0)
    return result, relative


def sum_last_axis(values: Pair) -> tuple[Pair, float]:
    """Pairwise double-double sum over the last axis, and its error factor.

    Each level adds pairs with ``add`` (error <= OP_ERROR times the exact partial sum), so
    |computed - exact| <= levels * OP_ERROR * sum(|values|): the factor returned.
    """
    hi, lo = values
    levels = 0
    while hi.shape[-1] > 1:
        if hi.shape[-1] % 2:
            pad = [(0, 0)] * (hi.ndim - 1) + [(0, 1)]
            hi, lo = np.pad(hi, pad), np.pad(lo, pad)
        hi, lo = add((hi[..., 0::2], lo[..., 0::2]), (hi[..., 1::2], lo[..., 1::2]))
        levels += 1
    return (hi[..., 0], lo[..., 0]), (levels + 1) * OP_ERROR
