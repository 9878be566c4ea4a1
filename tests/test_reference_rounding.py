"""Rounding of the exact reference: float64 midpoints decided by a remainder below any working
precision, and rounding (hi, lo) to float16, bfloat16 and float32.
"""

from __future__ import annotations

import bisect
import functools
import math
from fractions import Fraction

import ml_dtypes
import numpy as np
import pytest
from reference_helpers import INF, SIGMOID_CE, SOFT_CE, SPARSE_CE

from xentbench import reference
from xentbench.reference.rounding import round_one_sided, round_to_dtype

# --- values on a float64 rounding midpoint, derived by hand --------------------------------
# Each is an exact dyadic part lying on a midpoint between two float64 neighbours plus a
# remainder of known sign far below any working precision (e^-(2^53)): only its sign decides.
# Near 2^53 the float64 spacing is 1 below 2^53 and 2 above it; the mantissa of 2^53 + 2k is
# 2^52 + k, so 2^53 and 2^53 + 4 are "even", 2^53 + 2 is "odd".

BIG = 2.0**53
MIDPOINT_CASES = {  # (op, logits, labels, hi, lo)
    # loss = m - x_1 + log1p(e^-(m - x_1)) = (2^53 - 0.5) + tiny: between 2^53 - 1 and 2^53,
    # rounded up to 2^53 (which ties-to-even would also pick); residual -0.5 + tiny -> -0.5.
    "sparse-ce-below-2^53": (SPARSE_CE, [[BIG, 0.5]], [1], [BIG], [-0.5]),
    # log_softmax_1 = (x_1 - m) - log S = -(2^53 - 0.5) - tiny: rounded down to -2^53.
    "log-softmax-below-2^53": ("log_softmax", [[BIG, 0.5]], None, [[0, -BIG]], [[0, 0.5]]),
    # loss = (2^53 + 2 - 1) + tiny = 2^53 + 1 + tiny: between 2^53 (even) and 2^53 + 2, up to
    # 2^53 + 2, where dropping the remainder and rounding ties to even would give 2^53.
    "sparse-ce-odd-side": (SPARSE_CE, [[BIG + 2, 1.0]], [1], [BIG + 2], [-1.0]),
    # log_softmax_1 = -(2^53 + 1) - tiny: down to -(2^53 + 2), not -2^53.
    "log-softmax-odd-side": ("log_softmax", [[BIG + 2, 1.0]], None, [[0, -BIG - 2]], [[0, 1]]),
    # logsumexp = m + tiny with m a float64: m itself, residual below float64's range.
    "logsumexp-no-midpoint": ("logsumexp", [[BIG + 2, 1.0]], None, [BIG + 2], [0.0]),
    # labels (-2, 1): sum_i y_i (L - x_i) = -2 log S + (2^53 + 4 - 1 + log S) = 2^53 + 3 - log S:
    # between 2^53 + 2 (odd) and 2^53 + 4 (even), down to 2^53 + 2 (ties-to-even: 2^53 + 4).
    "soft-ce-negative-remainder": (SOFT_CE, [[BIG + 4, 1.0]], [[-2.0, 1.0]], [BIG + 2], [1.0]),
}


@pytest.mark.parametrize(
    ("op", "logits", "labels", "hi", "lo"), MIDPOINT_CASES.values(), ids=MIDPOINT_CASES.keys()
)
def test_midpoint_plus_tiny_remainder_rounds_by_the_remainder(op, logits, labels, hi, lo):
    got = reference.exact(op, np.array(logits), None if labels is None else np.array(labels))
    np.testing.assert_array_equal(got.hi, hi)
    np.testing.assert_array_equal(got.lo, lo)


def _float64_neighbours(value: Fraction) -> tuple[float, float]:
    below = math.floor(value / Fraction(math.ulp(float(value)))) * math.ulp(float(value))
    return below, math.nextafter(below, INF)


@pytest.mark.parametrize("magnitude", [7626.178330673743, 7626.178330673747])
def test_sigmoid_value_on_a_midpoint_rounds_up(magnitude):
    # x = -magnitude, z = 1.5: z softplus(-x) + (1 - z) softplus(x)
    #   = 1.5 (|x| + log1p(e^-|x|)) - 0.5 log1p(e^-|x|) = 1.5 |x| + log1p(e^-|x|).
    # |x| = a 2^-40 with a = 2 (mod 4), so 1.5 |x| is an odd multiple of 2^-40 in a binade of
    # spacing 2^-39: a midpoint (asserted below); the positive remainder rounds it up. For the
    # second value (a = 6 mod 8) ties-to-even would round down.
    exact_part = Fraction(3, 2) * Fraction(magnitude)
    below, above = _float64_neighbours(exact_part)
    assert exact_part == (Fraction(below) + Fraction(above)) / 2
    got = reference.exact(SIGMOID_CE, np.array([-magnitude]), np.array([1.5]))
    assert got.hi[0] == above
    assert got.lo[0] == -math.ulp(above) / 2


def test_sigmoid_grad_on_a_midpoint_rounds_down():
    # sigmoid(1000) - 2^-54 = (1 - 2^-54) - e^-1000 / (1 + e^-1000); 1 - 2^-54 is the midpoint
    # of 1 - 2^-53 (odd) and 1 (even): the negative remainder rounds down to 1 - 2^-53.
    got = reference.exact(SIGMOID_CE, np.array([1000.0]), np.array([2.0**-54]), "grad")
    assert got.hi[0] == 1 - 2.0**-53
    assert got.lo[0] == 2.0**-54


# --- rounding (hi, lo) to narrow dtypes -----------------------------------------------------

NARROW = {
    "float16": np.dtype(np.float16),
    "bfloat16": np.dtype(ml_dtypes.bfloat16),
    "float32": np.dtype(np.float32),
}


@functools.cache
def _sixteen_bit_grid(dtype: np.dtype) -> list[float]:
    with np.errstate(invalid="ignore"):  # NaN bit patterns
        values = np.arange(2**16, dtype=np.uint16).view(dtype).astype(np.float64)
    return sorted(set(values[np.isfinite(values)].tolist()))


def _is_even(value: float, dtype: np.dtype) -> bool:
    bits = np.array(value, dtype=np.float64).astype(dtype).view(f"u{dtype.itemsize}")
    return int(bits) % 2 == 0


def _round_exactly(value: Fraction, dtype: np.dtype) -> float:
    """Round to nearest, ties to even, of an exact rational to ``dtype``, by exact comparison."""
    finfo = ml_dtypes.finfo(dtype)
    largest = float(finfo.max)  # (2 - eps) 2^emax; values from max + ulp(max) / 2 overflow
    threshold = Fraction(largest) + Fraction(2) ** (math.frexp(largest)[1] - 2) * Fraction(
        float(finfo.eps)
    )
    if abs(value) >= threshold:
        return INF if value > 0 else -INF
    if dtype.itemsize == 2:
        grid = _sixteen_bit_grid(dtype)
    else:  # float32: the values around float64's own rounding are enough
        near = np.float32(float(value))
        grid = [float(np.nextafter(near, np.float32(s * INF))) for s in (-1, 1)] + [float(near)]
        grid = sorted(g for g in grid if math.isfinite(g))
    position = bisect.bisect_left(grid, value)
    below, above = grid[max(position - 1, 0)], grid[min(position, len(grid) - 1)]
    if Fraction(above) == value or Fraction(below) == value:
        return float(value)
    gap_below, gap_above = value - Fraction(below), Fraction(above) - value
    if gap_below != gap_above:
        return below if gap_below < gap_above else above
    return below if _is_even(below, dtype) else above


def _next_up(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """The next ``dtype`` value above each of ``values`` (finite values of ``dtype``)."""
    if dtype.itemsize == 2:
        grid = np.array(_sixteen_bit_grid(dtype))
        return grid[np.searchsorted(grid, values, side="right")]
    return np.nextafter(values.astype(np.float32), np.float32(INF)).astype(np.float64)


def _rounding_pairs(dtype: np.dtype, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(hi, lo) pairs: random values with residuals, and exact midpoints of ``dtype`` with
    residuals of either sign or none (where casting hi alone would round twice)."""
    rng = np.random.default_rng(seed)
    finfo = ml_dtypes.finfo(dtype)
    scales = [1.0, 1e-3, 300.0, float(finfo.smallest_subnormal) * 7, float(finfo.max) / 16]
    hi = np.concatenate([rng.normal(size=40) * scale for scale in scales])
    lo = rng.uniform(-0.5, 0.5, size=hi.size) * np.spacing(np.abs(hi))
    below = hi.astype(dtype).astype(np.float64)
    midpoints = (below + _next_up(below, dtype)) / 2  # exact in float64
    residual = np.resize([2.0**-70, -(2.0**-70), 0.0, 2.0**-60, -(2.0**-60)], hi.size)
    tiny = np.sign(residual) * 5e-324  # the least residual for midpoints in subnormal range
    midpoint_lo = np.where(np.abs(midpoints) > 2.0**-900, residual * np.abs(midpoints), tiny)
    zero_crossing = [float(finfo.smallest_subnormal) / 2] * 3  # between 0 and the least subnormal
    return (
        np.concatenate([hi, midpoints, zero_crossing]),
        np.concatenate([lo, midpoint_lo, [5e-324, -5e-324, 0.0]]),
    )


@pytest.mark.parametrize("dtype_name", list(NARROW))
def test_round_to_dtype_matches_exact_rounding(dtype_name):
    dtype = NARROW[dtype_name]
    hi, lo = _rounding_pairs(dtype, seed=len(dtype_name))
    got = round_to_dtype(hi, lo, dtype).astype(np.float64)
    expected = [
        _round_exactly(Fraction(h) + Fraction(r), dtype) for h, r in zip(hi, lo, strict=True)
    ]
    wrong = [(h, r, g, e) for h, r, g, e in zip(hi, lo, got, expected, strict=True) if g != e]
    assert not wrong, f"{len(wrong)} wrong, e.g. (hi, lo, got, expected) = {wrong[:3]}"
    twice = hi.astype(dtype).astype(np.float64)
    assert (twice != np.array(expected)).sum() >= 20  # the double-rounding cases are exercised


@pytest.mark.parametrize("dtype_name", list(NARROW))
def test_round_to_dtype_just_below_the_overflow_threshold_stays_finite(dtype_name):
    # The overflow threshold max + ulp(max) / 2 is a float64 (for float16: 65504 + 16 = 65520);
    # values below it round to max, values from it up to infinity (max has an odd mantissa).
    dtype = NARROW[dtype_name]
    largest = float(ml_dtypes.finfo(dtype).max)
    threshold = largest + (largest - float(_next_down(largest, dtype))) / 2
    residual = math.ulp(threshold) / 4
    got = round_to_dtype(np.array([threshold] * 3), np.array([-residual, 0.0, residual]), dtype)
    assert got.astype(np.float64).tolist() == [largest, INF, INF]


def _next_down(value: float, dtype: np.dtype) -> float:
    if dtype.itemsize == 2:
        grid = _sixteen_bit_grid(dtype)
        return grid[bisect.bisect_left(grid, value) - 1]
    return float(np.nextafter(np.float32(value), np.float32(-INF)))


NARROW_MIDPOINTS = [
    # sparse loss = (x_0 - x_1) + log1p(e^-(x_0 - x_1)) with a remainder ~ e^-770, far below
    # float64's least subnormal, so lo cannot carry it; the exact part lies on a midpoint of
    # the narrow dtype, so only the remainder's sign (positive) decides:
    # bfloat16 (8 bits): 770 between 768 and 772 (spacing 4 in [512, 1024)) -> 772;
    ("bfloat16", [512.0, -258.0], 772.0),
    # float16 (11 bits): 770.25 between 770 and 770.5 (spacing 0.5) -> 770.5;
    ("float16", [512.0, -258.25], 770.5),
    # float32 (24 bits): 2^30 + 64 between 2^30 and 2^30 + 128 (spacing 128) -> 2^30 + 128.
    ("float32", [2.0**30, -64.0], 2.0**30 + 128),
]


@pytest.mark.parametrize(
    ("dtype_name", "row", "expected"), NARROW_MIDPOINTS, ids=[c[0] for c in NARROW_MIDPOINTS]
)
def test_narrow_rounding_uses_a_remainder_below_float64_range(dtype_name, row, expected):
    dtype = NARROW[dtype_name]
    logits = np.array([row], dtype=dtype)
    assert logits.astype(np.float64).tolist() == [row]  # the logits are exact in dtype
    loss = reference.exact(SPARSE_CE, logits, np.array([1]))
    assert float(loss.rounded(dtype_name)[0]) == expected
    log_probability = reference.exact("log_softmax", logits)  # -(loss) at class 1
    assert float(log_probability.rounded(dtype_name)[0, 1]) == -expected


def _near_midpoints(dtype: np.dtype, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(hi, lo) within 1-3 float64 ULPs of ``dtype`` midpoints, above and below, both signs,
    normal and subnormal: where rounding hi to float32 first lands on the midpoint itself."""
    rng = np.random.default_rng(seed)
    finfo = ml_dtypes.finfo(dtype)
    scales = [1.0, 71.3, 1e-3, float(finfo.smallest_normal) * 3, float(finfo.smallest_subnormal)]
    values = np.concatenate([rng.uniform(1, 100, size=30) * scale for scale in scales])
    below = values.astype(dtype).astype(np.float64)
    midpoints = (below + _next_up(below, dtype)) / 2
    steps = np.resize([1, 2, 3], midpoints.size)[:, None] * np.array([-1, 1])
    hi = np.nextafter(midpoints[:, None], np.inf) - midpoints[:, None]  # ulp64 at the midpoint
    hi = (midpoints[:, None] + steps * hi).ravel()
    hi = np.concatenate([hi, -hi])
    lo = rng.uniform(-0.5, 0.5, size=hi.size) * np.spacing(np.abs(hi))
    return hi, lo


@pytest.mark.parametrize("dtype_name", ["float16", "bfloat16"])
def test_round_to_dtype_near_midpoints_rounds_once(dtype_name):
    dtype = NARROW[dtype_name]
    hi, lo = _near_midpoints(dtype, seed=7)
    got = round_to_dtype(hi, lo, dtype).astype(np.float64)
    expected = [
        _round_exactly(Fraction(h) + Fraction(r), dtype) for h, r in zip(hi, lo, strict=True)
    ]
    wrong = [(h, r, g, e) for h, r, g, e in zip(hi, lo, got, expected, strict=True) if g != e]
    assert not wrong, f"{len(wrong)} wrong, e.g. (hi, lo, got, expected) = {wrong[:3]}"


def test_bfloat16_rounding_of_a_log_softmax_element_is_not_double():
    # -71.2500000000222 rounds to float32 as -71.25, a bfloat16 midpoint (spacing 0.5 in
    # [64, 128)); rounded once it is nearer -71.5 than -71.0.
    hi, lo = np.array([-71.2500000000222]), np.array([0.0])
    assert Fraction(-71.2500000000222) < Fraction(-7125, 100)
    assert round_to_dtype(hi, lo, NARROW["bfloat16"]).astype(np.float64).tolist() == [-71.5]


# ---------------------------------------------------------------- at the edge of the range

LARGEST = Fraction(2**1024 - 2**971)  # the largest float64, (2 - 2^-52) * 2^1023
TO_INFINITY = Fraction(2**1024 - 2**970)  # IEEE 754: from this midpoint up, RN64 is inf


def test_a_value_just_above_the_largest_float_rounds_to_it_with_its_residual():
    tiny = Fraction(1, 2**1000)
    assert round_one_sided(LARGEST + tiny, tiny, 1) == (float(LARGEST), 1.5 * 2.0**-1000)


@pytest.mark.parametrize("sign", [1, -1])
def test_the_midpoint_to_infinity_rounds_by_the_side_the_remainder_lies_on(sign):
    hi, lo = round_one_sided(TO_INFINITY, Fraction(1), sign)
    if sign > 0:
        assert (hi, lo) == (math.inf, 0.0)
    else:
        assert (hi, lo) == (float(LARGEST), float(TO_INFINITY - Fraction(1, 2) - LARGEST))
    assert round_one_sided(-TO_INFINITY, Fraction(1), -sign) == (-hi, -lo)


def test_soft_cross_entropy_of_a_loss_at_the_largest_float_is_finite():
    # 0.5 * (lse - x_1) with x = [0, -max, max]: max + 0.5 log(1 + e^-max + e^-2max) rounds to max
    largest = float(LARGEST)
    logits = np.array([[0.0, -largest, largest]])
    labels = np.array([[0.0, 0.5, 0.0]])
    assert reference.exact(SOFT_CE, logits, labels, "value").hi.tolist() == [largest]
