"""Rounding in one place: exact values to float64, and float64 + residual to narrower dtypes.

The reference represents a real value ``t`` as ``hi + lo`` where ``hi = RN64(t)`` (round to
nearest even) and ``lo = RN64(t - hi)``: ``hi`` is the correctly rounded float64 answer, ``lo``
the part beyond float64 that the metrics need to measure float64 implementations in ULPs.
"""

from __future__ import annotations

import math
import sys
from fractions import Fraction

import numpy as np
from flint import arb

from xentbench.reference.dtypes import finfo, numpy_dtype

# Rounding of a value to float64 is decided from an enclosure [lower, upper] of it; the
# residual ``lo`` must also be known to this fraction of an ULP of hi (ample for ULP metrics).
LO_ACCURACY = 2.0**-20


def exact_to_fraction(value: arb) -> Fraction | None:
    """The exact rational value of an exact arb; None beyond float64 (|v| > 2^1030 or < 2^-1080)."""
    man, exp = (int(part) for part in value.man_exp())
    if man == 0:
        return Fraction(0)
    magnitude = man.bit_length() + exp  # |value| < 2**magnitude
    if magnitude > 1030 or magnitude < -1080:
        return None
    return Fraction(man << exp) if exp >= 0 else Fraction(man, 1 << -exp)


def fraction_to_float(value: Fraction) -> float:
    """Correctly rounded (nearest, ties to even) float64 of an exact rational."""
    try:
        return (
            value.numerator / value.denominator
        )  # CPython's int true division is correctly rounded
    except OverflowError:  # beyond the largest float64: rounds to infinity
        return math.inf if value > 0 else -math.inf


def residual_to_float(residual: Fraction) -> float:
    """RN64 of a residual t - hi, keeping its sign when it is too small for float64.

    The sign decides the rounding to narrower dtypes when hi is one of their midpoints
    (770 + e^-770 rounds up to 772 in bfloat16), so a nonzero residual below 2^-1075 is kept
    as the smallest subnormal of its sign (a "sticky" bit far below LO_ACCURACY).
    """
    lo = fraction_to_float(residual)
    if lo == 0.0 and residual != 0:
        return math.copysign(2.0**-1074, residual)
    return lo


NARROW_DTYPES = ("float32", "bfloat16", "float16")


def _quantum(magnitude: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """The spacing of ``dtype`` in the binade of each float64 magnitude (subnormal spacing below
    the smallest normal): a power of two, so ``magnitude / quantum`` is exact in float64."""
    info = finfo(dtype)
    _, exponent = np.frexp(magnitude)  # magnitude = m * 2^exponent, m in [0.5, 1)
    gaps = np.ldexp(1.0, exponent - (info.nmant + 1))
    return np.maximum(gaps, float(info.smallest_subnormal))


def _split(hi: np.ndarray, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """|hi| = (whole + fraction) * quantum in ``dtype``'s binade, every part exact in float64."""
    magnitude = np.abs(hi)
    quantum = _quantum(magnitude, dtype)
    scaled = magnitude / quantum
    whole = np.floor(scaled)
    return whole, scaled - whole, quantum


def narrow_midpoint(hi: np.ndarray) -> np.ndarray:
    """Where a float64 is exactly halfway between neighbours in float32, bfloat16 or float16."""
    hi = np.asarray(hi, dtype=np.float64)
    found = np.zeros(hi.shape, dtype=bool)
    with np.errstate(over="ignore", invalid="ignore"):
        for name in NARROW_DTYPES:
            _, fraction, _ = _split(hi, numpy_dtype(name))
            found |= (fraction == 0.5) & np.isfinite(hi)
    return found


def _exact_to_float(value: arb) -> float:
    fraction = exact_to_fraction(value)
    if fraction is not None:
        return fraction_to_float(fraction)
    man = int(value.man_exp()[0])
    huge = man.bit_length() + int(value.man_exp()[1]) > 0
    return math.copysign(math.inf if huge else 0.0, man)


def round_ball(ball: arb, *, final: bool = False) -> tuple[float, float] | None:
    """``(hi, lo)`` for the real value enclosed by ``ball``, or None if the ball cannot decide it.

    Decided when both ends of the ball round to the same float64 and the ball is narrow against
    an ULP of that float. With ``final`` (no more precision to try: the value sits on a float64
    or a rounding midpoint) the ball's midpoint is rounded.
    """
    if not ball.is_finite():
        return None
    low, high = _exact_to_float(ball.lower()), _exact_to_float(ball.upper())
    if low != high and not final:
        return None
    mid = ball.mid()
    hi = _exact_to_float(mid)
    if math.isinf(hi) or hi == 0.0:
        return hi + 0.0, 0.0  # the residual beyond overflow or below 2^-1075 is not representable
    if not final and narrow_midpoint(np.array(hi))[()] and ball.contains(arb(hi)):
        return None  # the residual's sign decides narrower roundings: it must be known
    spacing = math.ulp(hi)
    radius = exact_to_fraction(ball.rad().upper()) or Fraction(0)
    if not final and radius > Fraction(spacing) * Fraction(LO_ACCURACY):
        return None
    residual = exact_to_fraction(mid)
    lo = residual_to_float(residual - Fraction(hi)) if residual is not None else 0.0
    return hi, lo


def decided(hi: np.ndarray, lo: np.ndarray, error: np.ndarray) -> np.ndarray:
    """Where ``hi = RN64(t)`` is certain for every t with ``|t - (hi + lo)| <= error``.

    ``hi + lo`` must be normalised (``|lo| <= ulp(hi)/2``). RN64(t) = hi holds when t stays
    strictly inside hi's rounding interval, whose half-widths differ below and above powers of
    two; the residual must also be known to LO_ACCURACY of an ULP.
    """
    with np.errstate(invalid="ignore", over="ignore"):
        above = (np.nextafter(hi, np.inf) - hi) / 2
        below = (hi - np.nextafter(hi, -np.inf)) / 2
        inside = (lo + error < above) & (error - lo < below)
        sharp = error <= np.spacing(np.abs(hi)) * LO_ACCURACY
    return inside & sharp & np.isfinite(hi)


def round_to_dtype(hi: np.ndarray, lo: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Correct rounding (nearest, ties to even) of ``t = hi + lo`` to a dtype no wider than
    float64, decided from ``hi`` and ``lo`` directly.

    No cast of ``hi`` is trusted: NumPy and ml_dtypes may round float64 to bfloat16 through
    float32, which rounds twice (-71.2500000000222 becomes the bfloat16 midpoint -71.25, then
    -71.0 by ties to even; the nearest is -71.5). ``|hi| / quantum`` splits exactly into a whole
    number of the dtype's steps and a fraction; the fraction against 1/2 decides, and at exactly
    1/2 the sign of ``lo`` does (``|lo| <= ulp64(hi)/2`` cannot reach past a neighbour).
    """
    dtype = np.dtype(dtype)
    hi = np.asarray(hi, dtype=np.float64)
    lo = np.asarray(lo, dtype=np.float64)
    if dtype == np.float64:
        return hi.copy()
    with np.errstate(over="ignore", invalid="ignore"):
        whole, fraction, quantum = _split(hi, dtype)
        outward = lo * np.sign(hi)  # the residual's direction away from zero
        odd = np.fmod(whole, 2) == 1
        up = (fraction > 0.5) | ((fraction == 0.5) & ((outward > 0) | ((outward == 0) & odd)))
        magnitude = (whole + up) * quantum  # exact: at most nmant + 2 bits
        magnitude = np.where(magnitude > _largest(dtype), np.inf, magnitude)
        rounded = np.where(np.isfinite(hi), np.copysign(magnitude, hi), hi)
    return rounded.astype(dtype)  # exactly representable: the cast cannot round


def _largest(dtype: np.dtype) -> float:
    return float(finfo(dtype).max)


def _neighbour(value: float, up: bool) -> Fraction:
    """The next float64 above (``up``) or below ``value``, exactly; past the largest finite
    float it is +-2^1024, the value an unbounded exponent would give: IEEE 754 rounds to
    infinity from the midpoint between it and the largest float."""
    following = math.nextafter(value, math.inf if up else -math.inf)
    if math.isinf(following):
        return Fraction(2**1024) if up else -Fraction(2**1024)
    return Fraction(following)


def round_one_sided(exact: Fraction, width: Fraction, sign: int) -> tuple[float, float] | None:
    """``(hi, lo)`` for every t in the half-open interval from ``exact`` (excluded) to
    ``exact + sign * width``, or None if RN64 is not constant there.

    Values just beyond ``exact`` round like ``exact`` unless ``exact`` is a midpoint, where the
    direction of ``sign`` decides; the far end must stay strictly inside that float's rounding
    interval. This decides "exact dyadic part + tiny remainder of known sign" at once, where
    widening precision would need more bits than the remainder's exponent (e^-1e30, say).
    """
    nearest = fraction_to_float(exact)
    if math.isinf(nearest):
        largest = math.copysign(sys.float_info.max, nearest)
        midpoint = (Fraction(largest) + _neighbour(largest, nearest > 0)) / 2
        if exact != midpoint or (sign > 0) == (nearest > 0):
            return nearest, 0.0
        nearest = largest  # just inside the midpoint to infinity: the largest float
    chosen = nearest
    if Fraction(nearest) != exact:
        up = exact > Fraction(nearest)
        if exact == (Fraction(nearest) + _neighbour(nearest, up)) / 2 and up == (sign > 0):
            chosen = math.nextafter(nearest, math.inf if up else -math.inf)
            if math.isinf(chosen):  # the midpoint above the largest float rounds to infinity
                return chosen, 0.0
    base = Fraction(chosen)
    far = exact + sign * width
    upper = (base + _neighbour(chosen, True)) / 2
    lower = (base + _neighbour(chosen, False)) / 2
    if not lower < far < upper:
        return None
    return chosen + 0.0, residual_to_float(exact + sign * width / 2 - base)
