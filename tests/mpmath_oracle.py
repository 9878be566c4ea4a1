"""An independent oracle for the exact reference: mpmath evaluating the textbook formulas.

Each value is an exact rational within a stated window of the true value, so a check accepts
exactly the float64s that correct rounding could give (``mismatch``). The reference itself
uses python-flint's ball arithmetic; mpmath shares none of its code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import mpmath
import numpy as np
from reference_helpers import INF, _to_float

from xentbench.reference.rounding import LO_ACCURACY


@dataclass(frozen=True)
class Truth:
    """An oracle value: exact rational (or +-inf) within ``window`` of the true value."""

    value: Fraction | float
    window: Fraction


def truth_of(value: mpmath.mpf, window: Fraction) -> Truth:
    """An oracle value as an exact rational; magnitudes beyond float64's range are clamped."""
    if mpmath.isinf(value) or mpmath.mag(value) > 1100:  # RN64 overflows: +-inf
        return Truth(float(mpmath.sign(value)) * INF, window)
    if value == 0 or mpmath.mag(value) < -1200:  # RN64 is +-0: anything within 2^-1200 is
        return Truth(Fraction(0), max(window, Fraction(2) ** -1200) if value else window)
    man, exp = value.man_exp  # the magnitude's mantissa: the sign is taken separately
    magnitude = Fraction(int(man)) * Fraction(2) ** int(exp)
    return Truth(-magnitude if value < 0 else magnitude, window)


def rn64_bounds(truth: Truth) -> tuple[float, float]:
    """RN64 of both ends of the oracle's window: RN is monotone, so RN(true value) lies between.

    Far from a rounding boundary both ends agree; at a midpoint (or a cancellation to 0 that
    mpmath cannot resolve) they differ and every float64 between them is accepted.
    """
    if isinstance(truth.value, float):
        return truth.value, truth.value
    return _to_float(truth.value - truth.window), _to_float(truth.value + truth.window)


def mismatch(hi: float, lo: float, truth: Truth) -> str | None:
    """Why (hi, lo) disagrees with the oracle, or None: hi correctly rounded, lo accurate."""
    low, high = rn64_bounds(truth)
    if not low <= hi <= high:
        expected = repr(low) if low == high else f"in [{low!r}, {high!r}]"
        return f"hi={hi!r}, expected {expected}"
    if math.isfinite(hi) and abs(hi) >= 2.0**-990:  # lo is meaningful above subnormal range
        error = abs(Fraction(hi) + Fraction(lo) - truth.value)
        bound = Fraction(LO_ACCURACY * math.ulp(hi)) + Fraction(math.ulp(lo)) + truth.window
        if error > bound:
            return f"lo={lo!r}: hi+lo off by {float(error / Fraction(math.ulp(hi))):.3g} ulp"
    return None


def row_bits(x: np.ndarray) -> int:
    """Enough bits to resolve every exp(x_i - max) against 1 (e^-s needs 1.45 s bits), capped."""
    finite = x[np.isfinite(x)]
    span = min(float(finite.max()) / 2 - float(finite.min()) / 2, 3000.0) * 2  # no overflow
    magnitude_bits = max(0, math.frexp(float(np.abs(finite).max()))[1])
    return min(8000, 256 + int(1.5 * span) + magnitude_bits)


def oracle_row(x: np.ndarray, soft: np.ndarray, sparse: int) -> dict[tuple[str, str], list]:
    """Every softmax-family output of one row straight from the definitions, as Truths."""
    bits = row_bits(x)
    live = [i for i, v in enumerate(x) if v != -INF]
    with mpmath.workprec(bits):
        xs = [mpmath.mpf(float(v)) for v in x]
        ys = [mpmath.mpf(float(v)) for v in soft]
        # log(exp(x)) = x: with one live class the outputs are exact, and mpmath's rounding
        # of log(exp(x)) would leave them only within the window of 0.
        lse = (
            xs[live[0]]
            if len(live) == 1
            else mpmath.log(mpmath.fsum(mpmath.exp(xs[i]) for i in live))
        )
        p = [mpmath.exp(xs[i] - lse) if i in live else mpmath.mpf(0) for i in range(len(x))]
        label_sum = mpmath.fsum(ys)
        values = {
            ("softmax", "value"): p,
            ("log_softmax", "value"): [v - lse if v != -INF else -mpmath.inf for v in xs],
            ("logsumexp", "value"): [lse],
            ("logsumexp", "grad"): p,
            ("softmax_cross_entropy", "value"): [
                mpmath.fsum(ys[i] * (lse - xs[i]) for i in live if ys[i] != 0)
            ],
            ("softmax_cross_entropy", "grad"): [
                label_sum * q - y for q, y in zip(p, ys, strict=True)
            ],
            ("sparse_softmax_cross_entropy", "value"): [lse - xs[sparse]],
            ("sparse_softmax_cross_entropy", "grad"): [q - (i == sparse) for i, q in enumerate(p)],
        }
        # mpmath's error is a few ulps of the largest intermediate: allow 2^64 of them. With
        # one live class every output is exact (lse = x, p = 1, the rest 0).
        scale = mpmath.mag(1 + abs(lse) + max(abs(xs[i]) for i in live))
        scale += mpmath.mag(1 + mpmath.fsum(abs(y) for y in ys))
        window = Fraction(0) if len(live) == 1 else Fraction(2) ** (64 + scale - bits)
        truths = {key: [truth_of(v, window) for v in vs] for key, vs in values.items()}
    for key, row in truths.items():  # masked classes: probability and gradients exactly 0
        if len(row) == len(x) and key != ("log_softmax", "value"):
            row[:] = [
                t if i in live else Truth(Fraction(0), Fraction(0)) for i, t in enumerate(row)
            ]
    return truths


# Past this |x|, exp(-|x|) < 2^-4328, far below float64's smallest subnormal (2^-1074): the
# oracle stops resolving it (a precision of 1.5 |x| bits would be unbounded) and widens the
# window by the term it may lose.
SIGMOID_RESOLVED = 3000.0


def oracle_sigmoid(quantity: str, x: float, z: float) -> Truth:
    """Sigmoid cross-entropy from the textbook formulas, resolving exp(-|x|) against 1
    (beyond |x| = ``SIGMOID_RESOLVED``, only within the window: see below)."""
    resolved = min(abs(x), SIGMOID_RESOLVED)
    bits = 256 + int(1.5 * resolved) + max(0, -math.frexp(x)[1])  # and 1 - exp(-x) for tiny x
    with mpmath.workprec(bits):
        xm, zm = mpmath.mpf(x), mpmath.mpf(z)
        if quantity == "grad":
            value = 1 / (1 + mpmath.exp(-xm)) - zm
        else:
            value = zm * mpmath.log(1 + mpmath.exp(-xm)) + (1 - zm) * mpmath.log(1 + mpmath.exp(xm))
        window = Fraction(2) ** (64 - bits) * (1 + abs(Fraction(x))) * (2 + abs(Fraction(z)))
        if abs(x) > SIGMOID_RESOLVED:  # 1 + exp(-|x|) may round to 1: lost |z| e^-3000 < 2^-4000
            window += Fraction(2) ** -4000 * Fraction(2 + abs(z))
        return truth_of(value, window)
