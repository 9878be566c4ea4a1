"""Tests of the exact shifts (suites.judge.shift) and of the accuracy suite's shift check.

Exactness is checked with rational arithmetic (fractions), independently of the TwoSum test
that ``exact_shifts`` applies itself.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xentbench.adapters import registry
from xentbench.adapters.base import DTYPES, Call
from xentbench.reference.dtypes import finfo, numpy_dtype
from xentbench.suites.accuracy.suite import AccuracyTask
from xentbench.suites.catalog import cases
from xentbench.suites.judge import shift


def _is_exact(row: np.ndarray, c: float, dtype: str) -> bool:
    """x + c, as rationals, is a finite number of ``dtype`` for every finite x of the row."""
    for x in row.astype(np.float64):
        if not math.isfinite(x):
            continue
        total = Fraction(x) + Fraction(c)
        stored = np.array(float(total)).astype(numpy_dtype(dtype)).astype(np.float64)
        if not np.isfinite(stored) or Fraction(float(stored)) != total:
            return False
    return True


@pytest.mark.parametrize(
    ("value", "bit"),
    [(1.0, 1.0), (0.75, 0.25), (-6.0, 2.0), (3 * 2.0**-1074, 2.0**-1074), (2.0**1000, 2.0**1000)],
)
def test_lowest_bit(value, bit):
    assert shift.lowest_bit(np.array([value]))[0] == bit


def test_known_shifts():
    rows = np.array(
        [[1, 2, 3, -50], [0.5, 0.25, 0, 0], [0, 0, 0, 0], [np.inf, 1, 2, 3], [np.nan, 1, 2, 3]],
        np.float32,
    )
    # L = 2^24 q. q = 1: up to 2^24 - 3 -> 2^23, down to 2^24 - 50 -> 2^23, ties go up;
    # q = 1/4: up 2^22 - 1/2 -> 2^21, down 2^22 + 0 -> 2^22; zeros take q = 1; +inf and NaN stay
    # and the finite rest decides: up 2^24 - 3 -> 2^23, down 2^24 + 1 -> 2^24.
    expected = [2.0**23, -(2.0**22), 2.0**24, -(2.0**24), -(2.0**24)]
    np.testing.assert_array_equal(shift.exact_shifts(rows, "float32"), expected)
    full_mantissas = np.random.default_rng(0).standard_normal((3, 100)).astype(np.float32)
    np.testing.assert_array_equal(shift.exact_shifts(full_mantissas, "float32"), 0.0)
    masked = np.full((1, 4), -np.inf, np.float32)
    np.testing.assert_array_equal(shift.exact_shifts(masked, "float32"), 0.0)


@settings(max_examples=60, deadline=None)
@given(
    dtype=st.sampled_from(DTYPES),
    exponent=st.integers(-20, 20),
    integers=st.lists(st.integers(-3000, 3000), min_size=1, max_size=12),
    special=st.sampled_from([None, np.inf, -np.inf, np.nan]),
)
def test_every_returned_shift_is_exact(dtype, exponent, integers, special):
    row = np.ldexp(np.array(integers, np.float64), exponent)
    if special is not None:
        row = np.append(row, special)
    if np.abs(row[: len(integers)]).max() > float(finfo(dtype).max):
        return  # the grid overflows the dtype: not a row of the intended kind
    row = row.astype(numpy_dtype(dtype))
    c = float(shift.exact_shifts(row[None, :], dtype)[0])
    assert _is_exact(row, c, dtype)
    moved = shift.shifted_logits(row[None, :], np.array([c]))[0]
    finite = np.isfinite(row.astype(np.float64))
    assert (moved.astype(np.float64)[finite] - c == row.astype(np.float64)[finite]).all()


def _task(implementation: str, dtype: str) -> AccuracyTask:
    adapter = registry.load("numpy")
    impl = next(i for i in adapter.implementations() if i.name == implementation)
    case = cases.find(f"{impl.op}/extreme/quantised-1000")
    return AccuracyTask(adapter, Call(impl, dtype, "cpu", "eager", "value"), case, seed=0)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_max_shifted_softmax_keeps_shift_invariance(dtype):
    row = _task("numpy:stable.softmax", dtype).evaluate()
    assert row["verdict"] == "pass"
    assert row["shift"] == {"float32": 2.0**20, "float64": 2.0**49}[dtype]
    assert row["shift_verdict"] == "pass"
    assert row["shift_max_ulp_error"] == row["max_ulp_error"]  # x - max(x) is the same
    assert "shift_invariance" not in row["invariant_failures"]


def test_the_naive_softmax_breaks_shift_invariance():
    row = _task("numpy:naive.softmax", "float32").evaluate()
    assert row["verdict"] == "pass"  # exp(x) of logits in [-8, 8] is fine unshifted ...
    assert "shift_invariance" in row["invariant_failures"].split(",")  # ... exp(2^20 + x) is not
    assert row["shift_verdict"] == "wrong"  # NaN = inf/inf where the truth is finite


def test_logsumexp_value_is_not_checked():
    row = _task("numpy:stable.logsumexp", "float32").evaluate()
    assert math.isnan(row["shift"]) and row["shift_verdict"] is None
    assert "shift_invariance" not in row["invariant_failures"]
