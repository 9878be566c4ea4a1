"""Properties of the exact reference: identities between ops, the fast path against the
definition, and the edge semantics and input validation of ARCHITECTURE.md.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from reference_helpers import (
    FAMILY_IDS,
    INF,
    NAN,
    SIGMOID_CE,
    SOFT_CE,
    SOFTMAX_FAMILY,
    SPARSE_CE,
    _op_labels,
    _to_float,
)

from xentbench import reference
from xentbench.reference import exact_arb, fast
from xentbench.reference.evaluate import REDUCING
from xentbench.reference.rounding import LO_ACCURACY

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


# --- edge semantics (ARCHITECTURE.md "Edge semantics", reference/edges.py) ----------------

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
    # softmax and log_softmax have a grad now: the VJP with a cotangent (reference.options)
    "jvp-of-sigmoid": (SIGMOID_CE, "jvp", X23, X23, "takes no options"),
}


@pytest.mark.parametrize(
    ("op", "quantity", "logits", "labels", "message"), INVALID.values(), ids=INVALID.keys()
)
def test_invalid_input_raises_a_value_error_naming_the_problem(
    op, quantity, logits, labels, message
):
    with pytest.raises(ValueError, match=message):
        reference.exact(op, logits, labels, quantity)
