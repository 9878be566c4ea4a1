"""Tests of the invariants a value output must keep (suites.judge.invariants).

Correctly rounded outputs must break no invariant; outputs broken by hand must be caught.
"""

from __future__ import annotations

import numpy as np
import pytest
from accuracy_helpers import random_case

from xentbench import reference
from xentbench.adapters.base import DTYPES
from xentbench.suites.judge import invariants


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "op",
    [
        "softmax",
        "log_softmax",
        "sparse_softmax_cross_entropy",
        "softmax_cross_entropy",
        "sigmoid_cross_entropy",
    ],
)
def test_correctly_rounded_outputs_break_no_invariant(op, dtype):
    logits, labels = random_case(op, dtype, shape=(3, 1000))
    got = reference.exact(op, logits, labels).rounded(dtype)
    assert invariants.invariant_failures(op, dtype, logits, labels, got) == []


def test_invariants_detect_constructed_violations():
    logits = np.array([[1.0, 3.0, 2.0], [0.0, 0.0, -1.0]], np.float32)
    p = reference.exact("softmax", logits).rounded("float32")
    assert invariants.invariant_failures("softmax", "float32", logits, None, p * 1.01) == [
        "sums_to_one"
    ]
    swapped = p[:, [1, 0, 2]]
    assert "argmax_preserved" in invariants.invariant_failures(
        "softmax", "float32", logits, None, swapped
    )
    log_p = reference.exact("log_softmax", logits).rounded("float32")
    log_p[0, 1] = 1e-3  # the largest entry, so only the sign is broken
    assert invariants.invariant_failures("log_softmax", "float32", logits, None, log_p) == [
        "log_softmax_nonpositive"
    ]
    loss = np.array([0.5, -1e-3], np.float32)
    assert invariants.invariant_failures(
        "sparse_softmax_cross_entropy", "float32", logits, np.array([0, 1]), loss
    ) == ["nonnegative_loss"]


def test_argmax_allows_ties_in_logits_and_outputs():
    logits = np.array([[2.0, 2.0, 1.0], [1.0, 1.0 + 2.0**-20, 0.0]], np.float32)
    got = np.array([[0.4, 0.4, 0.2], [0.45, 0.45, 0.1]], np.float16)
    assert "argmax_preserved" not in invariants.invariant_failures(
        "softmax", "float16", logits, None, got
    )


def test_negative_loss_is_allowed_for_negative_labels():
    logits = np.zeros((1, 2), np.float32)
    labels = np.array([[2.0, -1.0]], np.float32)
    loss = np.array([-0.5], np.float32)
    assert (
        invariants.invariant_failures("softmax_cross_entropy", "float32", logits, labels, loss)
        == []
    )
    assert (
        invariants.invariant_failures(
            "sigmoid_cross_entropy", "float32", np.array([10.0]), np.array([2.0]), np.array([-10.0])
        )
        == []
    )
    assert invariants.invariant_failures(
        "sigmoid_cross_entropy", "float32", np.array([10.0]), np.array([0.5]), np.array([-1.0])
    ) == ["nonnegative_loss"]


def test_invariants_skip_rows_with_non_finite_logits():
    logits = np.array([[np.nan, 0.0], [0.0, 1.0]])
    got = np.array([[np.nan, np.nan], [0.2689414213699951, 0.7310585786300049]])
    assert invariants.invariant_failures("softmax", "float64", logits, None, got) == []


def test_sums_to_one_tolerance_grows_with_classes_and_unit_roundoff():
    assert invariants.sums_to_one_tolerance("float32", 1000) > invariants.sums_to_one_tolerance(
        "float32", 10
    )
    assert invariants.sums_to_one_tolerance("float16", 10) > invariants.sums_to_one_tolerance(
        "float32", 10
    )
