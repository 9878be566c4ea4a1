"""Tests of ULP errors, the error budget and verdicts (suites.judge: ulps, budget, measure).

Known errors are built by hand: outputs k representable numbers away from the exact value
(``np.nextafter`` in the output dtype) must measure exactly k ULPs.
"""

from __future__ import annotations

import math

import ml_dtypes
import numpy as np
import pytest
from accuracy_helpers import RNG_SEED, random_case, steps

from xentbench import reference
from xentbench.adapters.base import DTYPES, numpy_dtype
from xentbench.reference import Exact
from xentbench.reference.dtypes import BFLOAT16, unit_roundoff
from xentbench.suites.judge import measure, ulps, verdicts
from xentbench.suites.judge.allowance import call_allowance as allowance
from xentbench.suites.judge.budget import BUDGET_RULE, Output, error_scale
from xentbench.suites.judge.ulps import absolute_errors, nonfinite_mismatches, truth_in, ulp_at
from xentbench.suites.store.schema import ACCURACY_SCHEMA


def ulp_errors(got, exact: Exact, dtype) -> np.ndarray:
    """|got - t| in ULPs of ``dtype`` at t rounded to it: the plain ruler, for these tests."""
    dtype = numpy_dtype(dtype)
    with np.errstate(invalid="ignore", over="ignore"):
        return absolute_errors(got, exact) / ulp_at(truth_in(exact, dtype), dtype)


def budget_ulps(op, quantity, dtype, logits, labels, exact) -> np.ndarray:
    return allowance(Output(op, quantity, dtype, logits, labels, exact)).in_ulps


def exactly(values) -> Exact:
    """An Exact whose value is the given float64 numbers (no residual)."""
    hi = np.asarray(values, dtype=np.float64)
    return Exact(hi, np.zeros_like(hi))


# ------------------------------------------------------------------------ ULP errors


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k", [0, 1, 3, -1, -3])
@pytest.mark.parametrize("value", [1.5, -1.5, -0.75, 96.0, 3.0e-3])
def test_output_k_representable_numbers_away_measures_k_ulps(dtype, k, value):
    truth = np.asarray(value, dtype=numpy_dtype(dtype)).astype(np.float64)
    got = steps(truth, k, dtype)
    assert ulp_errors(got, exactly(truth), dtype) == pytest.approx(abs(k), abs=1e-9)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k", [0, 1, 3])
def test_ulp_above_a_power_of_two_uses_its_binade_spacing(dtype, k):
    for power in (1.0, -1.0, 0.25, 64.0):
        got = steps(power, k if power > 0 else -k, dtype)
        assert ulp_errors(got, exactly(power), dtype) == pytest.approx(k)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k", [1, 3])
def test_ulp_below_a_power_of_two_uses_the_lower_binade_spacing(dtype, k):
    below_two = steps(2.0, -1, dtype).astype(np.float64)  # the largest number under 2
    got = steps(below_two, -k, dtype)
    assert ulp_errors(got, exactly(below_two), dtype) == pytest.approx(k)


@pytest.mark.parametrize("dtype", DTYPES)
def test_ulp_at_a_power_of_two_is_the_gap_above_it(dtype):
    # Goldberg's ulp: the result's binade [1, 2); the number just below 1 is half a gap away.
    got = steps(1.0, -2, dtype)
    assert ulp_errors(got, exactly(1.0), dtype) == pytest.approx(1.0)
    got = steps(steps(1.0, -1, dtype), 2, dtype)  # from just below 1, two steps up: 1 + gap
    truth = steps(1.0, -1, dtype).astype(np.float64)
    assert ulp_errors(got, exactly(truth), dtype) == pytest.approx(3.0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k", [1, 3])
def test_zero_and_subnormals_use_the_smallest_subnormal_spacing(dtype, k):
    tiny = float(ml_dtypes.finfo(numpy_dtype(dtype)).smallest_subnormal)
    smallest_normal = float(ml_dtypes.finfo(numpy_dtype(dtype)).smallest_normal)
    assert ulp_errors(steps(0.0, k, dtype), exactly(0.0), dtype) == pytest.approx(k)
    assert ulp_errors(steps(0.0, -k, dtype), exactly(0.0), dtype) == pytest.approx(k)
    truth = 5 * tiny
    assert ulp_errors(steps(truth, k, dtype), exactly(truth), dtype) == pytest.approx(k)
    # The lowest normal binade has the subnormal gap, on both sides of the smallest normal.
    below = steps(smallest_normal, -k, dtype)
    assert ulp_errors(below, exactly(smallest_normal), dtype) == pytest.approx(k)


@pytest.mark.parametrize("k", [0, 1, 3])
def test_float64_errors_include_the_residual_beyond_float64(k):
    hi = 1.0 + 3 * 2.0**-52
    exact = Exact(np.array([hi, hi]), np.array([2.0**-54, -(2.0**-54)]))  # +-1/4 ULP
    up = steps(np.array([hi, hi]), k, "float64")
    assert ulp_errors(up, exact, "float64") == pytest.approx([abs(k - 0.25), k + 0.25])
    down = steps(np.array([hi, hi]), -k, "float64")
    assert ulp_errors(down, exact, "float64") == pytest.approx([k + 0.25, abs(k - 0.25)])


def test_truth_between_numbers_of_the_output_dtype_measures_the_fraction():
    truth = 1.0 + 2.0**-23 / 4  # float32 rounds it to 1.0, a quarter gap below it
    got = np.float32(1.0) + np.float32(2.0**-23)
    assert ulp_errors(np.float32(1.0), exactly(truth), "float32") == pytest.approx(0.25)
    assert ulp_errors(got, exactly(truth), "float32") == pytest.approx(0.75)


def test_relative_errors_handle_zero_truth():
    exact = exactly([2.0, 0.0, 0.0, np.nan])
    relative = ulps.relative(absolute_errors(np.array([2.5, 0.0, 1e-30, np.nan]), exact), exact)
    assert relative[:3].tolist() == [0.25, 0.0, math.inf]
    assert np.isnan(relative[3])


def test_unit_roundoff_of_each_dtype():
    units = [unit_roundoff(name) for name in DTYPES]
    assert units == [2.0**-11, 2.0**-8, 2.0**-24, 2.0**-53]


# ------------------------------------------------------------------ non-finite classes

KINDS = [
    (np.nan, np.nan, False),
    (np.inf, np.inf, False),
    (-np.inf, -np.inf, False),
    (1.0, 2.0, False),
    (np.nan, 1.0, True),
    (np.inf, 1.0, True),
    (1.0, np.nan, True),
    (1.0, -np.inf, True),
    (-np.inf, np.inf, True),
    (np.nan, np.inf, True),
    (np.inf, np.nan, True),
]


@pytest.mark.parametrize(("got", "expected", "mismatch"), KINDS)
def test_nonfinite_classification(got, expected, mismatch):
    assert bool(nonfinite_mismatches(np.array([got]), np.array([expected]))[0]) is mismatch


def test_ulp_errors_are_nan_where_either_side_is_not_finite():
    errors = ulp_errors(np.array([np.nan, 1.0, np.inf]), exactly([1.0, np.nan, 1.0]), "float32")
    assert np.isnan(errors).all()


def test_truth_beyond_the_dtype_range_expects_infinity():
    logits, labels = np.array([1e5, 1e5], np.float32), np.zeros(2, np.float32)
    exact = reference.exact("sigmoid_cross_entropy", logits, labels)  # 1e5: inf in float16
    got = np.array([np.inf, 65504.0], np.float16)
    evaluation = measure.evaluate(
        "sigmoid_cross_entropy", "value", "float16", logits, labels, got, exact
    )
    assert (evaluation.verdict, evaluation.worst_index) == ("wrong", "(1,)")
    got[1] = np.inf
    evaluation = measure.evaluate(
        "sigmoid_cross_entropy", "value", "float16", logits, labels, got, exact
    )
    assert evaluation.verdict == "pass"


# ------------------------------------------------------------------------------ verdicts


@pytest.fixture(scope="module")
def log_softmax_case():
    """float32 log_softmax of 4 x 100 logits with its exact value."""
    logits = np.random.default_rng(RNG_SEED).normal(scale=3.0, size=(4, 100)).astype(np.float32)
    return logits, reference.exact("log_softmax", logits)


def test_correctly_rounded_result_passes(log_softmax_case):
    logits, exact = log_softmax_case
    evaluation = measure.evaluate(
        "log_softmax", "value", "float32", logits, None, exact.rounded("float32"), exact
    )
    assert evaluation.verdict == "pass"
    assert evaluation.max_ulp_error <= 0.5
    assert evaluation.nonfinite_mismatches == 0
    assert evaluation.message == ""


def test_nan_where_the_truth_is_finite_is_wrong_and_worst(log_softmax_case):
    logits, exact = log_softmax_case
    got = exact.rounded("float32")
    got[0, 0] = got[0, 0] * 2  # a larger, finite error elsewhere does not take precedence
    got[2, 7] = np.nan
    evaluation = measure.evaluate("log_softmax", "value", "float32", logits, None, got, exact)
    assert (evaluation.verdict, evaluation.nonfinite_mismatches) == ("wrong", 1)
    assert evaluation.worst_index == "(2, 7)"
    assert math.isnan(evaluation.got)
    assert evaluation.expected == exact.hi[2, 7]


def test_error_within_budget_passes_and_beyond_is_inaccurate(log_softmax_case):
    logits, exact = log_softmax_case
    budgets = budget_ulps("log_softmax", "value", "float32", logits, None, exact)
    assert budgets[1, 5] > 3
    got = exact.rounded("float32")
    got[1, 5] = steps(got[1, 5], 3, "float32")
    assert (
        measure.evaluate("log_softmax", "value", "float32", logits, None, got, exact).verdict
        == "pass"
    )
    got[1, 5] = got[1, 5] * np.float32(1.001)  # about 8000 ULPs
    evaluation = measure.evaluate("log_softmax", "value", "float32", logits, None, got, exact)
    assert evaluation.verdict == "inaccurate"
    assert evaluation.worst_index == "(1, 5)"
    assert evaluation.budget_ulps == budgets[1, 5]
    assert evaluation.max_ulp_error > evaluation.budget_ulps


def test_wrong_shape_is_wrong(log_softmax_case):
    logits, exact = log_softmax_case
    evaluation = measure.evaluate(
        "log_softmax", "value", "float32", logits, None, exact.hi[:, :-1], exact
    )
    assert evaluation.verdict == "wrong"
    assert "shape" in evaluation.message


def test_other_output_dtype_is_measured_in_requested_ulps(log_softmax_case):
    logits, exact = log_softmax_case
    got = exact.rounded("float32").astype(np.float64)
    got[3, 3] = steps(np.float32(got[3, 3]), 2, "float32")
    evaluation = measure.evaluate("log_softmax", "value", "float32", logits, None, got, exact)
    assert evaluation.message == "returned float64 for float32"
    assert evaluation.max_ulp_error == pytest.approx(2, abs=0.5)


def test_verdict_rules():
    assert verdicts.verdict_for_result(0, 0) == "pass"
    assert verdicts.verdict_for_result(0, 3) == "inaccurate"
    assert verdicts.verdict_for_result(1, 3) == "wrong"
    assert verdicts.verdict_for_exception(input_invalid=True) == "pass"
    assert verdicts.verdict_for_exception(input_invalid=False) == "error"
    assert verdicts.verdict_for_invalid_result() == "wrong"
    assert set(verdicts.VERDICTS) == {"pass", "inaccurate", "wrong", "error", "unsupported"}


def test_evaluation_fields_are_accuracy_columns(log_softmax_case):
    logits, exact = log_softmax_case
    row = measure.evaluate(
        "log_softmax", "value", "float32", logits, None, exact.hi, exact
    ).as_row()
    assert set(row) <= set(ACCURACY_SCHEMA.names)
    assert row["worst_input"].startswith("C=100")


# ------------------------------------------------------------------------------- budget


def test_budget_grows_with_sqrt_of_the_class_count():
    scales = []
    for n_classes in (10_000, 40_000):
        logits = np.zeros((1, n_classes), np.float32)
        exact = reference.exact("log_softmax", logits)
        scales.append(
            error_scale(Output("log_softmax", "value", "float32", logits, None, exact))[0, 0]
        )
    assert 1.8 < scales[1] / scales[0] <= 2.0


def test_budget_grows_with_distance_from_the_row_maximum():
    logits = np.array([[0.0, -10.0, -1000.0, -1.0]], np.float32)
    exact = reference.exact("log_softmax", logits)
    scale = error_scale(Output("log_softmax", "value", "float32", logits, None, exact))[0]
    assert scale[0] < scale[3] < scale[1] < scale[2]


CASES = [
    ("softmax", "value"),
    ("log_softmax", "value"),
    ("logsumexp", "value"),
    ("logsumexp", "grad"),
    ("softmax_cross_entropy", "value"),
    ("softmax_cross_entropy", "grad"),
    ("sparse_softmax_cross_entropy", "value"),
    ("sparse_softmax_cross_entropy", "grad"),
    ("sigmoid_cross_entropy", "value"),
    ("sigmoid_cross_entropy", "grad"),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("op", "quantity"), CASES)
def test_allowance_is_finite_and_at_least_one_ulp_of_the_truth(op, quantity, dtype):
    logits, labels = random_case(op, dtype)
    exact = reference.exact(op, logits, labels, quantity)
    allowed = allowance(Output(op, quantity, dtype, logits, labels, exact))
    assert allowed.absolute.shape == exact.hi.shape
    one_ulp = ulp_at(truth_in(exact, numpy_dtype(dtype)), numpy_dtype(dtype))
    assert np.isfinite(allowed.in_ulps).all() and (allowed.absolute >= one_ulp).all()


def test_budget_is_nan_on_non_finite_results():
    logits = np.array([[0.0, -np.inf, 1.0], [np.nan, 0.0, 0.0]])
    exact = reference.exact("log_softmax", logits)
    budget = budget_ulps("log_softmax", "value", "float64", logits, None, exact)
    assert np.isnan(budget[0, 1]) and np.isnan(budget[1]).all()
    assert np.isfinite(budget[0, [0, 2]]).all()


def test_finite_limits_at_infinite_logits_get_one_ulp():
    logits = np.array([[np.inf, 0.0, -1.0]])
    exact = reference.exact("softmax", logits)  # the one-hot limit [1, 0, 0]
    budget = budget_ulps("softmax", "value", "float32", logits, None, exact)
    assert budget.tolist() == [[1.0, 1.0, 1.0]]


def _shifted(op: str, quantity: str, x: np.ndarray, y, internal=None) -> np.ndarray:
    """The shifted algorithms computed in ``internal`` (default: the input dtype), every step
    rounded to it, the result rounded once to the input dtype."""
    internal = x.dtype if internal is None else np.dtype(internal)
    wide_y = y if y is None or y.dtype.kind == "i" else y.astype(internal)
    with np.errstate(over="ignore", invalid="ignore"):
        return _shifted_outputs(x.astype(internal), wide_y)[(op, quantity)]().astype(x.dtype)


def _shifted_outputs(x: np.ndarray, y) -> dict:
    d = x - x.max(axis=-1, keepdims=True)
    e = np.exp(d)
    log_s = np.log(e.sum(axis=-1, keepdims=True))
    p = e / e.sum(axis=-1, keepdims=True)
    one = np.ones((), x.dtype)
    outputs = {
        ("softmax", "value"): lambda: p,
        ("log_softmax", "value"): lambda: d - log_s,
        ("logsumexp", "value"): lambda: x.max(axis=-1) + log_s[..., 0],
        ("logsumexp", "grad"): lambda: p,
        ("softmax_cross_entropy", "value"): lambda: (y * (log_s - d)).sum(axis=-1),
        ("softmax_cross_entropy", "grad"): lambda: p * y.sum(axis=-1, keepdims=True) - y,
        ("sparse_softmax_cross_entropy", "value"): lambda: (log_s - d)[np.arange(len(x)), y],
        ("sparse_softmax_cross_entropy", "grad"): lambda: p - np.eye(x.shape[-1], dtype=x.dtype)[y],
        ("sigmoid_cross_entropy", "value"): lambda: (
            np.maximum(x, 0) - x * y + np.log1p(np.exp(-np.abs(x)))
        ),
        ("sigmoid_cross_entropy", "grad"): lambda: (
            np.where(x >= 0, one / (one + np.exp(-x)), np.exp(x) / (one + np.exp(x))) - y
        ),
    }
    return outputs


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("offset", [0.0, -40.0, 200.0])
@pytest.mark.parametrize(("op", "quantity"), CASES)
def test_shifted_algorithm_with_float32_internals_passes(op, quantity, dtype, offset):
    # float32 internals for the 16-bit dtypes (BUDGET_RULE's u_acc), the dtype's own otherwise
    logits, labels = random_case(op, dtype, shape=(4, 300), offset=offset)
    exact = reference.exact(op, logits, labels, quantity)
    internal = "float32" if dtype in ("float16", "bfloat16") else None
    got = _shifted(op, quantity, logits, labels, internal)
    evaluation = measure.evaluate(op, quantity, dtype, logits, labels, got, exact)
    assert evaluation.verdict == "pass", evaluation


@pytest.mark.parametrize("dtype", ["bfloat16"])  # NumPy sums float16 in float32 internally
@pytest.mark.parametrize("op", ["softmax", "log_softmax", "logsumexp"])
def test_shifted_algorithm_with_16_bit_internals_is_inaccurate(op, dtype):
    # every step in bfloat16: the sum of 4000 exponentials loses ~sqrt(C) u_out
    logits, labels = random_case(op, dtype, shape=(2, 4000))
    exact = reference.exact(op, logits, labels)
    got = _shifted(op, "value", logits, labels)
    evaluation = measure.evaluate(op, "value", dtype, logits, labels, got, exact)
    assert evaluation.verdict == "inaccurate", evaluation


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_unshifted_log_softmax_is_inaccurate_for_large_logits(dtype):
    logits, _ = random_case("log_softmax", dtype, shape=(2, 10), offset=1e4)
    exact = reference.exact("log_softmax", logits)
    lse = reference.exact("logsumexp", logits).rounded(dtype)  # even an exact L, rounded
    got = logits - lse[:, None]
    evaluation = measure.evaluate("log_softmax", "value", dtype, logits, None, got, exact)
    assert evaluation.verdict == "inaccurate"


def test_naive_sigmoid_cross_entropy_is_wrong_for_large_logits():
    logits, labels = np.array([40.0, -40.0, 1.0], np.float32), np.full(3, 0.3, np.float32)
    exact = reference.exact("sigmoid_cross_entropy", logits, labels)
    with np.errstate(divide="ignore"):
        sigmoid = 1 / (1 + np.exp(-logits))
        got = -labels * np.log(sigmoid) - (1 - labels) * np.log(1 - sigmoid)
    evaluation = measure.evaluate(
        "sigmoid_cross_entropy", "value", "float32", logits, labels, got, exact
    )
    assert (evaluation.verdict, evaluation.worst_index, evaluation.got) == (
        "wrong",
        "(0,)",
        math.inf,
    )


def test_budget_rule_cites_its_sources():
    assert "Blanchard, Higham & Mary" in BUDGET_RULE
    assert "Higham & Mary, 'A new approach to probabilistic" in BUDGET_RULE


def test_worst_ratio_is_below_one_exactly_when_the_result_passes():
    logits, _ = random_case("log_softmax", "float32")
    exact = reference.exact("log_softmax", logits)
    rounded = exact.rounded("float32")
    good = measure.evaluate("log_softmax", "value", "float32", logits, None, rounded, exact)
    assert good.verdict == "pass" and 0 <= good.worst_ratio < 1
    far = rounded.copy()
    far[1, 5] = steps(far[1, 5], 10_000, "float32")
    bad = measure.evaluate("log_softmax", "value", "float32", logits, None, far, exact)
    assert bad.verdict == "inaccurate" and bad.worst_ratio > 1
    far[0, 0] = np.nan
    wrong = measure.evaluate("log_softmax", "value", "float32", logits, None, far, exact)
    assert wrong.verdict == "wrong" and wrong.worst_ratio == np.inf


def test_tiers_rank_results_that_pass(log_softmax_case):
    logits, exact = log_softmax_case
    rounded = exact.rounded("float32")
    tier = measure.evaluate("log_softmax", "value", "float32", logits, None, rounded, exact).tier
    assert tier == "correctly rounded"
    off = rounded.copy()
    off[1, 5] = steps(off[1, 5], 3, "float32")
    assert measure.evaluate("log_softmax", "value", "float32", logits, None, off, exact).tier == (
        "within budget"
    )
    off[1, 5] = off[1, 5] * np.float32(1.001)
    result = measure.evaluate("log_softmax", "value", "float32", logits, None, off, exact)
    assert (result.verdict, result.tier) == ("inaccurate", "over budget")


def test_worst_element_columns_describe_the_same_element(log_softmax_case):
    logits, exact = log_softmax_case
    got = exact.rounded("float32")
    got[2, 9] = got[2, 9] * np.float32(1.01)
    result = measure.evaluate("log_softmax", "value", "float32", logits, None, got, exact)
    assert result.worst_index == "(2, 9)"
    assert result.got == float(got[2, 9]) and result.expected == exact.hi[2, 9]
    assert result.worst_ratio == pytest.approx(result.abs_error / result.allowance)
    assert result.worst_ratio == pytest.approx(result.ulp_error / result.budget_ulps)


def test_a_cancelling_result_near_zero_is_not_measured_in_subnormal_ulps():
    # log_softmax of a dominant class is -log(1 + e^-60) ~ -8.8e-27: float32 internals give
    # it to ~u in absolute terms; in ULPs of the truth that would be ~1e20
    logits = np.array([[60.0, 0.0, 0.0, 0.0]], np.float32)
    exact = reference.exact("log_softmax", logits)
    got = exact.rounded("float32")
    got[0, 0] = np.float32(-(2.0**-30))
    result = measure.evaluate("log_softmax", "value", "float32", logits, None, got, exact)
    assert result.worst_index == "(0, 0)"
    assert result.verdict == "pass" and result.ulp_error < 1


def test_sixteen_bit_budget_assumes_float32_internals():
    # bfloat16 softmax of 50,000 equal logits: p = 2e-5; an element 2% off is ~2.6 bfloat16
    # ULPs, far beyond the float32-internals allowance (the old u = 2^-8 rule allowed ~7x)
    logits = np.zeros((1, 50_000), dtype=BFLOAT16)
    exact = reference.exact("softmax", logits)
    got = exact.rounded("bfloat16").astype(np.float64)
    got[0, 7] *= 1.02
    result = measure.evaluate(
        "softmax", "value", "bfloat16", logits, None, got.astype(BFLOAT16), exact
    )
    assert result.verdict == "inaccurate" and result.budget_ulps < 1.1


def test_the_truth_is_rounded_once_per_exact_result_and_dtype(monkeypatch):
    """Every implementation of a case is judged against one exact result: its rounding to the
    output dtype is computed once, kept read-only, and the same as rounding it afresh."""
    import xentbench.reference.evaluate as evaluate

    logits = np.array([[0.5, -1.25, 3.0], [1e-3, 2.0, -7.5]])
    exact = reference.exact("log_softmax", logits)
    fresh = {d: exact.rounded(d).astype(np.float64) for d in ("float16", "bfloat16")}
    calls = []
    rounding = evaluate.round_to_dtype
    monkeypatch.setattr(evaluate, "round_to_dtype", lambda *a: calls.append(a) or rounding(*a))
    for _ in range(3):
        for dtype in ("float16", "bfloat16"):
            got = measure.evaluate("log_softmax", "value", dtype, logits, None, fresh[dtype], exact)
            assert got.verdict == "pass"
            truth = truth_in(exact, numpy_dtype(dtype))
            np.testing.assert_array_equal(truth, fresh[dtype])
            assert not truth.flags.writeable
    assert len(calls) == 2  # once per dtype
