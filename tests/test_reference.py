"""The exact reference, checked without trusting it.

An independent oracle (mpmath, a different library from the reference's python-flint, at a
precision chosen per row) evaluates the textbook formulas on random and adversarial rows; hand
derived cases cover values on float64 rounding midpoints that no finite precision can settle;
published values, identities between ops, the fast path against the definition, the edge
conventions of DESIGN.md and rounding to narrow dtypes complete the picture.
"""

from __future__ import annotations

import bisect
import functools
import math
from dataclasses import dataclass
from fractions import Fraction

import ml_dtypes
import mpmath
import numpy as np
import pytest

import reference
from reference import exact_arb, fast
from reference.evaluate import REDUCING
from reference.rounding import LO_ACCURACY, round_to_dtype

INF = math.inf
NAN = math.nan
SOFT_CE, SPARSE_CE = "softmax_cross_entropy", "sparse_softmax_cross_entropy"
SIGMOID_CE = "sigmoid_cross_entropy"
SOFTMAX_FAMILY = [
    (op, quantity)
    for op in reference.OPS
    if op != SIGMOID_CE
    for quantity in (("value", "grad") if op in reference.GRADIENT_OPS else ("value",))
]
FAMILY_IDS = [f"{op}-{quantity}" for op, quantity in SOFTMAX_FAMILY]


# --- the oracle: mpmath, textbook formulas ------------------------------------------------


@dataclass(frozen=True)
class Truth:
    """An oracle value: exact rational (or +-inf) within ``window`` of the true value."""

    value: Fraction | float
    window: Fraction


def _truth(value: mpmath.mpf, window: Fraction) -> Truth:
    """An oracle value as an exact rational; magnitudes beyond float64's range are clamped."""
    if mpmath.isinf(value) or mpmath.mag(value) > 1100:  # RN64 overflows: +-inf
        return Truth(float(mpmath.sign(value)) * INF, window)
    if value == 0 or mpmath.mag(value) < -1200:  # RN64 is +-0: anything within 2^-1200 is
        return Truth(Fraction(0), max(window, Fraction(2) ** -1200) if value else window)
    man, exp = value.man_exp  # the magnitude's mantissa: the sign is taken separately
    magnitude = Fraction(int(man)) * Fraction(2) ** int(exp)
    return Truth(-magnitude if value < 0 else magnitude, window)


def _to_float(value: Fraction) -> float:
    try:
        return value.numerator / value.denominator  # int division rounds correctly
    except OverflowError:
        return INF if value > 0 else -INF


def _bounds(truth: Truth) -> tuple[float, float]:
    """RN64 of both ends of the oracle's window: RN is monotone, so RN(true value) lies between.

    Far from a rounding boundary both ends agree; at a midpoint (or a cancellation to 0 that
    mpmath cannot resolve) they differ and every float64 between them is accepted.
    """
    if isinstance(truth.value, float):
        return truth.value, truth.value
    return _to_float(truth.value - truth.window), _to_float(truth.value + truth.window)


def _mismatch(hi: float, lo: float, truth: Truth) -> str | None:
    """Why (hi, lo) disagrees with the oracle, or None: hi correctly rounded, lo accurate."""
    low, high = _bounds(truth)
    if not low <= hi <= high:
        expected = repr(low) if low == high else f"in [{low!r}, {high!r}]"
        return f"hi={hi!r}, expected {expected}"
    if math.isfinite(hi) and abs(hi) >= 2.0**-990:  # lo is meaningful above subnormal range
        error = abs(Fraction(hi) + Fraction(lo) - truth.value)
        bound = Fraction(LO_ACCURACY * math.ulp(hi)) + Fraction(math.ulp(lo)) + truth.window
        if error > bound:
            return f"lo={lo!r}: hi+lo off by {float(error / Fraction(math.ulp(hi))):.3g} ulp"
    return None


def _row_bits(x: np.ndarray) -> int:
    """Enough bits to resolve every exp(x_i - max) against 1 (e^-s needs 1.45 s bits), capped."""
    finite = x[np.isfinite(x)]
    span = min(float(finite.max()) / 2 - float(finite.min()) / 2, 3000.0) * 2  # no overflow
    magnitude_bits = max(0, math.frexp(float(np.abs(finite).max()))[1])
    return min(8000, 256 + int(1.5 * span) + magnitude_bits)


def _oracle_row(x: np.ndarray, soft: np.ndarray, sparse: int) -> dict[tuple[str, str], list]:
    """Every softmax-family output of one row straight from the definitions, as Truths."""
    bits = _row_bits(x)
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
        truths = {key: [_truth(v, window) for v in vs] for key, vs in values.items()}
    for key, row in truths.items():  # masked classes: probability and gradients exactly 0
        if len(row) == len(x) and key != ("log_softmax", "value"):
            row[:] = [
                t if i in live else Truth(Fraction(0), Fraction(0)) for i, t in enumerate(row)
            ]
    return truths


def _random_rows(scale: float, classes: int, seed: int) -> np.ndarray:
    """Four rows: one with a masked class, one with a tie at the max, integers, float32 values."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(4, classes)) * scale
    if classes > 1:
        x[0, -1] = -INF
        x[1, 0] = x[1, 1] = x[1].max()
    x[2] = np.round(x[2])
    x[3] = x[3].astype(np.float32)
    return x


ADVERSARIAL = {
    "dominant": [[40, 0, -1], [800, 0, 0], [1e4, 0, -1e4], [37, 0, 36.9]],
    "tails-e700": [
        [0, -700, -700.5, -650.1],
        [0, -649.9, -701, -745.3],
        [5, 5 - 745.1, -795, -INF],
        [0, -709.8, -744.4, -746.1],
    ],
    "tails-e760": [
        [0, -760, -760, -760],
        [0, -762.9, -763.1, -1000],
        [1, -759.5, -764, -800],
        [0, -0.5, -761, -763],
    ],
    "near-ties": [
        [1, 1 + 2**-52, 1 - 2**-53, 1],
        [0, 0, 0, 0],
        [-1000, -1000.5, -1000, -INF],
        [1e-300, -1e-300, 0, 5e-324],
    ],
    # log S near e^-745.13 = 2^-1075: log_softmax at the max rounds to -0 or -2^-1074.
    "underflow-edge": [
        [0, -745.12, -INF, -INF],
        [0, -745.14, -INF, -INF],
        [0, -746, -746, -746],
        [0, -744.44, -800, -745.5],
    ],
    "huge": [[3e38, -3e38, 0], [1.7e308, 1.7e308, -1.7e308], [2.0**1000, 2.0**1000 - 2.0**950, 0]],
}


def _groups() -> dict[str, np.ndarray]:
    groups = {}
    for seed, (scale, classes) in enumerate(
        (s, c) for s in (1, 10, 100, 700) for c in (1, 2, 5, 40)
    ):
        groups[f"scale{scale}-C{classes}"] = _random_rows(scale, classes, seed)
    groups.update({name: np.array(rows, dtype=np.float64) for name, rows in ADVERSARIAL.items()})
    return groups


GROUPS = _groups()


def _labels(x: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Soft labels (normalised, scaled, signed; 0 on masked classes) and valid sparse labels."""
    rng = np.random.default_rng(seed)
    rows, classes = x.shape
    soft = rng.dirichlet(np.ones(classes), size=rows)
    soft[1::3] *= 2.5
    soft[2::3] = rng.uniform(-1, 2, size=soft[2::3].shape)
    live = x != -INF
    soft = np.where(live, soft, 0.0)
    sparse = rng.integers(0, classes, size=rows)
    sparse = np.where(live[np.arange(rows), sparse], sparse, np.argmax(live, axis=1))
    return soft, sparse


@functools.cache
def _group_truths(name: str):
    x = GROUPS[name]
    soft, sparse = _labels(x, seed=len(name))
    truths = [_oracle_row(x[r], soft[r], int(sparse[r])) for r in range(len(x))]
    return x, soft, sparse, truths


def _op_labels(op: str, soft: np.ndarray, sparse: np.ndarray) -> np.ndarray | None:
    return {SOFT_CE: soft, SPARSE_CE: sparse}.get(op)


@pytest.mark.parametrize(("op", "quantity"), SOFTMAX_FAMILY, ids=FAMILY_IDS)
@pytest.mark.parametrize("group", list(GROUPS))
def test_softmax_family_matches_mpmath_oracle(group, op, quantity):
    x, soft, sparse, truths = _group_truths(group)
    got = reference.exact(op, x, _op_labels(op, soft, sparse), quantity)
    hi, lo = got.hi.reshape(len(x), -1), got.lo.reshape(len(x), -1)
    failures = []
    for row, row_truths in enumerate(truths):
        for index, truth in enumerate(row_truths[(op, quantity)]):
            problem = _mismatch(float(hi[row, index]), float(lo[row, index]), truth)
            if problem:
                failures.append(f"row {row} {x[row].tolist()[:6]} [{index}]: {problem}")
    assert not failures, f"{op} {quantity} on {group}:\n" + "\n".join(failures[:8])


def _oracle_sigmoid(quantity: str, x: float, z: float) -> Truth:
    """Sigmoid cross-entropy from the textbook formulas, resolving exp(-|x|) against 1."""
    bits = 256 + int(1.5 * abs(x)) + max(0, -math.frexp(x)[1])  # and 1 - exp(-x) for tiny x
    with mpmath.workprec(bits):
        xm, zm = mpmath.mpf(x), mpmath.mpf(z)
        if quantity == "grad":
            value = 1 / (1 + mpmath.exp(-xm)) - zm
        else:
            value = zm * mpmath.log(1 + mpmath.exp(-xm)) + (1 - zm) * mpmath.log(1 + mpmath.exp(xm))
        window = Fraction(2) ** (64 - bits) * Fraction((1 + abs(x)) * (2 + abs(z)))
        return _truth(value, window)


SIGMOID_LABELS = [0.0, 1.0, 0.3, -0.5, 1.5, 0.5, 2.0**-54, 1 - 2.0**-53]
SIGMOID_SPECIAL = [0.0, -0.0, 5e-324, 1e-300, 2.0**-60, 36.7, 650, 700, 745.2, 763.5, 800, 2e4]


def _sigmoid_inputs(name: str) -> tuple[np.ndarray, np.ndarray]:
    if name == "special":
        x = np.array([s * v for v in SIGMOID_SPECIAL for s in (1, -1)])
        return np.repeat(x, len(SIGMOID_LABELS)), np.tile(SIGMOID_LABELS, len(x))
    scale = float(name.removeprefix("scale"))
    rng = np.random.default_rng(int(scale))
    count = 24 if scale > 1000 else 64
    x = rng.normal(size=count) * scale
    z = np.where(np.arange(count) % 2, rng.choice(SIGMOID_LABELS, count), rng.uniform(-1, 2, count))
    return x, z


@pytest.mark.parametrize("quantity", ["value", "grad"])
@pytest.mark.parametrize(
    "inputs", ["scale1", "scale10", "scale100", "scale700", "scale1e4", "special"]
)
def test_sigmoid_cross_entropy_matches_mpmath_oracle(inputs, quantity):
    x, z = _sigmoid_inputs(inputs)
    got = reference.exact(SIGMOID_CE, x, z, quantity)
    failures = []
    for i in range(len(x)):
        problem = _mismatch(
            float(got.hi[i]), float(got.lo[i]), _oracle_sigmoid(quantity, x[i], z[i])
        )
        if problem:
            failures.append(f"x={x[i]!r} z={z[i]!r}: {problem}")
    assert not failures, "\n".join(failures[:8])


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


# --- published and hand-derived values ------------------------------------------------------


def test_softmax_matches_tensorflow_documentation_example():
    # tf.nn.softmax([0.1, 0.3, 0.5, 0.9]) in the TensorFlow API docs, printed to 8 decimals.
    got = reference.softmax(np.array([0.1, 0.3, 0.5, 0.9]))
    assert np.round(got, 8).tolist() == [0.16838508, 0.205666, 0.25120102, 0.37474789]


def test_softmax_cross_entropy_matches_tensorflow_documentation_example():
    # tf.nn.softmax_cross_entropy_with_logits docs: logits [[4, 2, 1], [0, 5, 1]], labels
    # [[1, 0, 0], [0, .8, .2]] -> [0.16984604, 0.82474494] in float32; the exact float64 values
    # (mpmath at 300 bits: log(e^4 + e^2 + e) - 4 and log(1 + e^5 + e) - .8 * 5 - .2 * 1).
    got = reference.softmax_cross_entropy(
        np.array([[4.0, 2, 1], [0, 5, 1]]), np.array([[1.0, 0, 0], [0, 0.8, 0.2]])
    )
    assert got.tolist() == [0.16984601955628564, 0.8247448901388227]
    np.testing.assert_allclose(got.astype(np.float32), [0.16984604, 0.82474494], rtol=2e-7)


def test_logits_of_plus_minus_1e4_give_exact_finite_answers():
    # e^-20000 ~ 2^-28854 is far below an ULP of anything here and below float64's range.
    x = np.array([[1e4, -1e4]])
    assert reference.logsumexp(x).tolist() == [1e4]  # 1e4 + log1p(e^-2e4)
    assert reference.softmax(x).tolist() == [[1.0, 0.0]]  # 1/(1 + e^-2e4), e^-2e4/(...)
    assert reference.log_softmax(x).tolist() == [[0.0, -2e4]]  # -log1p(e^-2e4), -2e4 - ...
    assert reference.sparse_softmax_cross_entropy(x, np.array([1])).tolist() == [2e4]
    assert reference.sparse_softmax_cross_entropy(x, np.array([0])).tolist() == [0.0]
    assert reference.sparse_softmax_cross_entropy_grad(x, np.array([1])).tolist() == [[1.0, -1.0]]


def test_float32_extreme_logits_give_exact_finite_answers():
    big = float(np.float32(3e38))  # exactly 300000000549775575777803994281145270272
    x = np.array([[big, -big]], dtype=np.float32)
    assert reference.logsumexp(x).tolist() == [big]
    assert reference.log_softmax(x).tolist() == [[0.0, -2 * big]]  # 2 big: exact in float64
    # (1 - z) x + log1p(e^-x) at x = big, z x + log1p(e^-x) at x = -big; the products of
    # 24-bit significands by 0.75 / 0.25 are exact; the gradients are 1 - z and -z.
    logits = np.array([big, -big], dtype=np.float32)
    labels = np.array([0.25, 0.25], dtype=np.float32)
    assert reference.sigmoid_cross_entropy(logits, labels).tolist() == [0.75 * big, 0.25 * big]
    assert reference.sigmoid_cross_entropy_grad(logits, labels).tolist() == [0.75, -0.25]


# --- identities between ops -----------------------------------------------------------------


def _benign(seed: int, rows: int = 6, classes: int = 33, scale: float = 8.0) -> np.ndarray:
    """Logits on a 2^-10 grid below 2^10 in magnitude, so adding 2^12 or -3.25 stays exact."""
    rng = np.random.default_rng(seed)
    return np.round(rng.normal(size=(rows, classes)) * scale * 2**10) / 2**10


def _exact_values(result: reference.Exact) -> list[Fraction]:
    return [
        Fraction(h) + Fraction(r) for h, r in zip(result.hi.ravel(), result.lo.ravel(), strict=True)
    ]


def _lo_error(hi: float, lo: float) -> Fraction:
    """How far hi + lo may be from the true value (the reference's residual accuracy)."""
    return Fraction(LO_ACCURACY * math.ulp(hi)) + Fraction(math.ulp(lo))


def test_softmax_rows_sum_to_one():
    x = np.concatenate([_benign(1), _benign(2, scale=100.0), [[0.0, -700.0, -745.0] + [-INF] * 30]])
    got = reference.exact("softmax", x)
    for row in range(len(x)):
        hi_sum = sum(map(Fraction, got.hi[row]))  # each hi within ulp/2 <= 2^-53 p_i
        assert abs(hi_sum - 1) <= Fraction(2) ** -53 + x.shape[1] * Fraction(2) ** -1074
        exact_sum = sum(_exact_values(reference.Exact(got.hi[row], got.lo[row])))
        assert abs(exact_sum - 1) <= Fraction(2) ** -81, float(exact_sum - 1)


def _decided(value: Fraction, error: Fraction) -> float | None:
    """RN64 of every number within ``error`` of ``value``, or None when they differ."""
    low, high = _to_float(value - error), _to_float(value + error)
    return low if low == high else None


def _check_derived(got_hi: np.ndarray, derived: list[tuple[Fraction, Fraction]]) -> int:
    """Assert hi == RN(value) wherever (value, error) decides it; return how many were decided."""
    checked = 0
    for hi, (value, error) in zip(got_hi.ravel(), derived, strict=True):
        expected = _decided(value, error)
        if expected is not None:
            assert hi == expected, (hi, expected)
            checked += 1
    return checked


def test_log_softmax_is_logits_minus_logsumexp():
    x = np.concatenate([_benign(3), _benign(4, scale=300.0)])
    lse = reference.exact("logsumexp", x)
    derived = []
    for row in range(len(x)):
        total = Fraction(lse.hi[row]) + Fraction(lse.lo[row])
        error = _lo_error(lse.hi[row], lse.lo[row])
        derived += [(Fraction(v) - total, error) for v in x[row]]
    checked = _check_derived(reference.log_softmax(x), derived)
    assert checked >= 0.95 * x.size


def test_softmax_cross_entropy_grad_is_softmax_times_label_sum_minus_labels():
    x = _benign(5)
    labels = np.random.default_rng(5).uniform(-1, 2, size=x.shape)
    softmax = reference.exact("softmax", x)
    derived = []
    for row in range(len(x)):
        label_sum = sum(map(Fraction, labels[row]))
        for p_hi, p_lo, y in zip(softmax.hi[row], softmax.lo[row], labels[row], strict=True):
            value = label_sum * (Fraction(p_hi) + Fraction(p_lo)) - Fraction(y)
            derived.append((value, abs(label_sum) * _lo_error(p_hi, p_lo)))
    checked = _check_derived(reference.softmax_cross_entropy_grad(x, labels), derived)
    assert checked >= 0.95 * x.size


def test_sparse_grad_is_softmax_minus_one_hot():
    x = _benign(6)
    labels = np.random.default_rng(6).integers(0, x.shape[1], size=len(x))
    softmax = reference.exact("softmax", x)
    grad = reference.sparse_softmax_cross_entropy_grad(x, labels)
    rows = np.arange(len(x))
    off_label = np.ones(x.shape, dtype=bool)
    off_label[rows, labels] = False
    np.testing.assert_array_equal(grad[off_label], softmax.hi[off_label])
    derived = [
        (
            Fraction(softmax.hi[r, k]) + Fraction(softmax.lo[r, k]) - 1,
            _lo_error(softmax.hi[r, k], softmax.lo[r, k]),
        )
        for r, k in zip(rows, labels, strict=True)
    ]
    assert _check_derived(grad[rows, labels], derived) >= len(x) - 1


def test_logsumexp_grad_is_softmax():
    x = np.concatenate([_benign(7), [[0.0, -700.0, -745.0] + [-INF] * 30]])
    grad = reference.exact("logsumexp", x, quantity="grad")
    softmax = reference.exact("softmax", x)
    np.testing.assert_array_equal(grad.hi, softmax.hi)
    np.testing.assert_array_equal(grad.lo, softmax.lo)


@pytest.mark.parametrize("shift", [4096.0, -3.25, 2.0**-10])
@pytest.mark.parametrize(
    ("op", "labels"),
    [
        ("softmax", None),
        ("log_softmax", None),
        (SPARSE_CE, np.arange(6) * 5),
        (SOFT_CE, np.full((6, 33), 1 / 33)),
    ],
    ids=["softmax", "log_softmax", "sparse_ce", "soft_ce"],
)
def test_outputs_are_shift_invariant(op, labels, shift):
    x = _benign(8)
    assert np.array_equal((x + shift) - shift, x)  # the shift is exact
    np.testing.assert_array_equal(
        reference.exact(op, x + shift, labels).hi, reference.exact(op, x, labels).hi
    )


def test_sigmoid_ops_equal_two_class_softmax_ops():
    # sigmoid(x) = softmax([x, 0])_0, so sigmoid CE's grad at z = 0 is that probability, and
    # its value at z = 1 (softplus(-x)) and z = 0 (softplus(x)) are the sparse losses of [x, 0].
    x = np.concatenate([np.random.default_rng(9).normal(size=40) * 30, [-745.2, 700.5, 1e-300]])
    pairs = np.stack([x, np.zeros_like(x)], axis=1)
    zeros, ones = np.zeros_like(x), np.ones_like(x)
    np.testing.assert_array_equal(
        reference.sigmoid_cross_entropy_grad(x, zeros), reference.softmax(pairs)[:, 0]
    )
    np.testing.assert_array_equal(
        reference.sigmoid_cross_entropy(x, ones),
        reference.sparse_softmax_cross_entropy(pairs, np.zeros(len(x), dtype=np.int64)),
    )
    np.testing.assert_array_equal(
        reference.sigmoid_cross_entropy(x, zeros),
        reference.sparse_softmax_cross_entropy(pairs, np.ones(len(x), dtype=np.int64)),
    )


# --- the fast path against the definition ---------------------------------------------------


def _mixed_rows() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(10)
    x = np.concatenate([rng.normal(size=(3, 17)) * s for s in (1.0, 10.0, 100.0)])
    x[0, 3] = -INF
    soft = np.where(x == -INF, 0.0, rng.uniform(-0.5, 1.5, size=x.shape))
    sparse = np.array([0, 1, 2, 3, 16, 5, 6, 7, 8])
    return x, soft, sparse


def _assert_residuals_agree(hi: np.ndarray, lo: np.ndarray, other_lo: np.ndarray) -> None:
    """Two residuals of the same hi, each within the reference's residual accuracy."""
    for h, a, b in zip(hi, lo, other_lo, strict=True):
        if math.isfinite(h):
            bound = 2 * _lo_error(h, max(abs(a), abs(b)))
            assert abs(Fraction(a) - Fraction(b)) <= bound, f"hi={h!r}: lo {a!r} vs {b!r}"


@pytest.mark.parametrize(("op", "quantity"), SOFTMAX_FAMILY, ids=FAMILY_IDS)
def test_fast_path_agrees_with_the_definition_bit_for_bit(op, quantity):
    x, soft, sparse = _mixed_rows()
    labels = _op_labels(op, soft, sparse)
    with np.errstate(all="ignore"):
        assert fast.softmax_family(op, quantity, x, labels).ok.mean() > 0.9  # fast path compared
    got = reference.exact(op, x, labels, quantity)
    hi, lo = got.hi.reshape(len(x), -1), got.lo.reshape(len(x), -1)
    wanted = [0] if (op, quantity) in REDUCING else list(range(x.shape[1]))
    for row in range(len(x)):
        label = None if labels is None else labels[row]
        arb_hi, arb_lo = exact_arb.exact_row(op, quantity, x[row], label, wanted)
        np.testing.assert_array_equal(hi[row], arb_hi, err_msg=f"row {row}")
        _assert_residuals_agree(arb_hi, arb_lo, lo[row])


@pytest.mark.parametrize("quantity", ["value", "grad"])
def test_fast_sigmoid_agrees_with_the_definition_bit_for_bit(quantity):
    rng = np.random.default_rng(11)
    x = np.concatenate([rng.normal(size=50) * s for s in (1.0, 30.0, 300.0)])
    z = rng.choice([0.0, 1.0, 0.25, -0.5, 1.5], size=len(x))
    with np.errstate(all="ignore"):
        assert fast.sigmoid(quantity, x, z).ok.mean() > 0.8  # the fast path is what is compared
    got = reference.exact(SIGMOID_CE, x, z, quantity)
    arb_hi, arb_lo = exact_arb.exact_sigmoid(quantity, x, z)
    np.testing.assert_array_equal(got.hi, arb_hi)
    _assert_residuals_agree(arb_hi, arb_lo, got.lo)


@pytest.mark.parametrize(("op", "quantity"), SOFTMAX_FAMILY, ids=FAMILY_IDS)
def test_fast_path_answers_almost_every_benign_output(op, quantity):
    rng = np.random.default_rng(12)
    x = rng.normal(size=(64, 1000)) * 3
    soft = rng.dirichlet(np.ones(1000), size=64)
    sparse = rng.integers(0, 1000, size=64)
    with np.errstate(all="ignore"):
        outputs = fast.softmax_family(op, quantity, x, _op_labels(op, soft, sparse))
    assert outputs.ok.mean() > 0.99


@pytest.mark.parametrize("quantity", ["value", "grad"])
def test_fast_sigmoid_answers_almost_every_benign_output(quantity):
    rng = np.random.default_rng(13)
    x, z = rng.normal(size=10_000) * 3, rng.uniform(0, 1, size=10_000)
    with np.errstate(all="ignore"):
        assert fast.sigmoid(quantity, x, z).ok.mean() > 0.99


# --- edge semantics (DESIGN.md "Semantics at the edges", reference/edges.py) ----------------

MASKED = [[0.0, -INF]]
ALL_MASKED = [[-INF, -INF]]
ONE_PLUS_INF = [[0.0, INF, -INF, 1.0]]
EDGE_CASES = {
    # sum_i y_i (L - x_i) with L = 0: the label-0 term is 0 * inf -> 0, a signed label -> +-inf.
    "soft-ce-zero-label-on-masked": (SOFT_CE, "value", MASKED, [[1.0, 0.0]], [0.0]),
    "soft-ce-positive-label-on-masked": (SOFT_CE, "value", MASKED, [[0.5, 0.5]], [INF]),
    "soft-ce-negative-label-on-masked": (SOFT_CE, "value", MASKED, [[1.5, -0.5]], [-INF]),
    # softmax = [1, 0]: grad = 1 * [1, 0] - [0.5, 0.5].
    "soft-ce-grad-masked": (SOFT_CE, "grad", MASKED, [[0.5, 0.5]], [[0.5, -0.5]]),
    "sparse-ce-label-on-masked": (SPARSE_CE, "value", MASKED, [1], [INF]),
    "sparse-ce-grad-label-on-masked": (SPARSE_CE, "grad", MASKED, [1], [[1.0, -1.0]]),
    "all-masked-softmax": ("softmax", "value", ALL_MASKED, None, [[NAN, NAN]]),
    "all-masked-log-softmax": ("log_softmax", "value", ALL_MASKED, None, [[NAN, NAN]]),
    "all-masked-logsumexp": ("logsumexp", "value", ALL_MASKED, None, [-INF]),  # log 0
    "all-masked-logsumexp-grad": ("logsumexp", "grad", ALL_MASKED, None, [[NAN, NAN]]),
    "all-masked-sparse-ce": (SPARSE_CE, "value", ALL_MASKED, [0], [NAN]),
    "all-masked-soft-ce": (SOFT_CE, "value", ALL_MASKED, [[0.0, 1.0]], [NAN]),
    # One +inf: the limit is the one-hot vector on it.
    "plus-inf-softmax": ("softmax", "value", ONE_PLUS_INF, None, [[0.0, 1.0, 0.0, 0.0]]),
    "plus-inf-log-softmax": ("log_softmax", "value", ONE_PLUS_INF, None, [[-INF, 0, -INF, -INF]]),
    "plus-inf-logsumexp": ("logsumexp", "value", ONE_PLUS_INF, None, [INF]),
    "plus-inf-logsumexp-grad": ("logsumexp", "grad", ONE_PLUS_INF, None, [[0.0, 1.0, 0.0, 0.0]]),
    "plus-inf-sparse-ce-on-it": (SPARSE_CE, "value", ONE_PLUS_INF, [1], [0.0]),
    "plus-inf-sparse-ce-elsewhere": (SPARSE_CE, "value", ONE_PLUS_INF, [3], [INF]),
    "plus-inf-sparse-ce-grad": (SPARSE_CE, "grad", ONE_PLUS_INF, [0], [[-1.0, 1.0, 0.0, 0.0]]),
    "plus-inf-soft-ce-on-it": (SOFT_CE, "value", ONE_PLUS_INF, [[0.0, 1.0, 0.0, 0.0]], [0.0]),
    # Two +inf: their split depends on the path (NaN); the finite entry's probability is 0.
    "two-plus-inf-softmax": ("softmax", "value", [[INF, 0.0, INF]], None, [[NAN, 0.0, NAN]]),
    "two-plus-inf-logsumexp": ("logsumexp", "value", [[INF, 0.0, INF]], None, [INF]),
    # Sigmoid CE -> (1 - z) inf as x -> +inf and z inf as x -> -inf; grad -> 1 - z and -z.
    "sigmoid-plus-inf": (SIGMOID_CE, "value", [INF] * 3, [0, 1, 0.25], [INF, 0, INF]),
    "sigmoid-minus-inf": (SIGMOID_CE, "value", [-INF] * 3, [0, 1, 0.25], [0, INF, INF]),
    "sigmoid-plus-inf-grad": (SIGMOID_CE, "grad", [INF] * 3, [0, 1, 0.25], [1, 0, 0.75]),
    "sigmoid-minus-inf-grad": (SIGMOID_CE, "grad", [-INF] * 3, [0, 1, 0.25], [0, -1, -0.25]),
    "sigmoid-nan": (SIGMOID_CE, "value", [NAN, 0.0, 1.0], [0.5, NAN, INF], [NAN] * 3),
}


@pytest.mark.parametrize(
    ("op", "quantity", "logits", "labels", "expected"), EDGE_CASES.values(), ids=EDGE_CASES.keys()
)
def test_edge_semantics_follow_the_limits(op, quantity, logits, labels, expected):
    labels = None if labels is None else np.array(labels)
    got = reference.exact(op, np.array(logits, dtype=np.float64), labels, quantity)
    np.testing.assert_array_equal(got.hi, np.array(expected, dtype=np.float64))


def test_sigmoid_grad_at_plus_inf_keeps_the_residual_of_one_minus_z():
    got = reference.exact(SIGMOID_CE, np.array([INF]), np.array([2.0**-60]), "grad")
    assert (got.hi[0], got.lo[0]) == (1.0, -(2.0**-60))  # 1 - 2^-60 = 1 + (-2^-60)


@pytest.mark.parametrize(("op", "quantity"), SOFTMAX_FAMILY, ids=FAMILY_IDS)
def test_nan_in_a_row_makes_that_row_nan_and_leaves_others_alone(op, quantity):
    x = np.array([[0.0, NAN, 1.0], [0.0, 1.0, 2.0]])
    labels = _op_labels(op, np.array([[0.2, 0.3, 0.5]] * 2), np.array([0, 2]))
    got = reference.exact(op, x, labels, quantity).hi.reshape(2, -1)
    assert np.isnan(got[0]).all()
    alone = reference.exact(op, x[1:], None if labels is None else labels[1:], quantity)
    np.testing.assert_array_equal(got[1], alone.hi.ravel())


def test_nan_soft_label_makes_the_row_nan():
    x = np.array([[0.0, 1.0, 2.0]])
    for quantity in ("value", "grad"):
        got = reference.exact(SOFT_CE, x, np.array([[0.5, NAN, 0.5]]), quantity)
        assert np.isnan(got.hi).all()


X23 = np.zeros((2, 3))
INVALID = {  # (op, quantity, logits, labels, what the message must say)
    "sparse-label-too-large": (SPARSE_CE, "value", X23, np.array([0, 3]), r"label 3 .*\[0, 3\)"),
    "sparse-label-negative": (SPARSE_CE, "value", X23, np.array([-1, 0]), r"sparse label -1 "),
    "sparse-labels-shape": (SPARSE_CE, "value", X23, np.array([0, 1, 2]), r"\(3,\).*\(2, 3\)"),
    "sparse-labels-float": (SPARSE_CE, "value", X23, np.array([0.0, 1.0]), "integers.*float64"),
    "soft-labels-shape": (SOFT_CE, "value", X23, np.zeros((2, 4)), r"\(2, 4\).*\(2, 3\)"),
    "soft-labels-missing": (SOFT_CE, "value", X23, None, "needs labels"),
    "sigmoid-labels-shape": (SIGMOID_CE, "value", X23, np.zeros(3), r"\(3,\).*\(2, 3\)"),
    "integer-logits": ("softmax", "value", X23.astype(np.int64), None, "float dtype.*int64"),
    "empty-class-axis": ("softmax", "value", np.zeros((2, 0)), None, r"non-empty.*\(2, 0\)"),
    "unknown-op": ("softmaxx", "value", X23, None, "unknown op 'softmaxx'"),
    "unknown-quantity": ("logsumexp", "hessian", X23, None, "no quantity 'hessian'"),
    "grad-of-softmax": ("softmax", "grad", X23, None, "softmax has no quantity 'grad'"),
}


@pytest.mark.parametrize(
    ("op", "quantity", "logits", "labels", "message"), INVALID.values(), ids=INVALID.keys()
)
def test_invalid_input_raises_a_value_error_naming_the_problem(
    op, quantity, logits, labels, message
):
    with pytest.raises(ValueError, match=message):
        reference.exact(op, logits, labels, quantity)


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
