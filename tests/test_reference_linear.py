"""The linear_cross_entropy reference against an independent exact computation.

The oracle here shares nothing with ``reference.linear``: logits as exact rationals
(``fractions.Fraction`` sums of products of the given floats), then softmax, loss and the three
gradients in mpmath at 300 bits, with dX from the identity dX_i = sum_j p_ij (W_j - W_{y_i})
(an exact zero stays zero), dW = (softmax - onehot)^T X and db = sum over rows of
(softmax - onehot); each is rounded to float64 once. The reference
must agree bit for bit (correct rounding) and say it proved every element.
"""

from __future__ import annotations

from fractions import Fraction

import ml_dtypes
import mpmath
import numpy as np
import pytest

from xentbench.reference import exact, linear, ozaki
from xentbench.reference.evaluate import output_shape

QUANTITIES = ("value", "grad_hidden", "grad_weight", "grad_bias")


def _oracle(x, w, b, labels, ignore=None) -> dict[str, np.ndarray]:
    """Every quantity by exact rationals and 300-bit mpmath, rounded to float64 once."""
    x64, w64 = x.astype(np.float64), w.astype(np.float64)
    b64 = np.zeros(len(w)) if b is None else b.astype(np.float64)
    rows, classes, features = len(x), len(w), x.shape[1]
    with mpmath.workprec(300):
        z = [
            [
                sum(
                    Fraction(float(x64[i, k])) * Fraction(float(w64[j, k])) for k in range(features)
                )
                + Fraction(float(b64[j]))
                for j in range(classes)
            ]
            for i in range(rows)
        ]
        z = [[mpmath.mpf(v.numerator) / v.denominator for v in row] for row in z]
        active = [ignore is None or labels[i] != ignore for i in range(rows)]
        lse = [mpmath.log(mpmath.fsum(mpmath.exp(v) for v in row)) for row in z]
        loss = [lse[i] - z[i][labels[i]] if active[i] else mpmath.mpf(0) for i in range(rows)]
        g = [
            [
                (mpmath.exp(z[i][j] - lse[i]) - (j == labels[i])) if active[i] else mpmath.mpf(0)
                for j in range(classes)
            ]
            for i in range(rows)
        ]
        # dX_i = sum_j p_ij (W_j - W_y) (the identity sum_j p_ij = 1): exact zeros stay zero.
        dx = [
            [
                mpmath.fsum(
                    (g[i][j] + (j == labels[i]))
                    * (mpmath.mpf(float(w64[j, k])) - float(w64[labels[i], k]))
                    for j in range(classes)
                )
                if active[i]
                else mpmath.mpf(0)
                for k in range(features)
            ]
            for i in range(rows)
        ]
        dw = [
            [mpmath.fsum(g[i][j] * float(x64[i, k]) for i in range(rows)) for k in range(features)]
            for j in range(classes)
        ]
        db = [mpmath.fsum(g[i][j] for i in range(rows)) for j in range(classes)]
        as_float = lambda values: np.array(values, dtype=object).astype(float)  # noqa: E731
        return {
            "value": as_float(loss),
            "grad_hidden": as_float(dx),
            "grad_weight": as_float(dw),
            "grad_bias": as_float(db),
        }


def _inputs(dtype, seed: int, rows=3, classes=7, features=5, scale=3.0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, features)).astype(dtype)
    w = (rng.normal(size=(classes, features)) * scale / np.sqrt(features)).astype(dtype)
    b = rng.normal(size=classes).astype(dtype)
    labels = rng.integers(0, classes, size=rows)
    return x, w, b, labels


@pytest.mark.parametrize("dtype", [np.float32, ml_dtypes.bfloat16, np.float16, np.float64])
def test_reference_is_correctly_rounded_against_rationals_and_mpmath(dtype):
    x, w, b, labels = _inputs(dtype, seed=1)
    truth = _oracle(x, w, b, labels)
    for quantity in QUANTITIES:
        result = linear.linear_exact(quantity, x, labels, {"weight": w, "bias": b})
        np.testing.assert_array_equal(result.hi, truth[quantity], err_msg=quantity)
        assert result.proven.all(), quantity


def test_confident_rows_offsets_and_padding_are_exact():
    """p_y = 1 - ~e^-30 (the true-class gradient is tiny, not 0), a common logit offset of
    512 (exact logits differ from float64 ones), and a padding row."""
    x, w, _, _ = _inputs(np.float32, seed=2, rows=4, classes=6, features=4)
    labels = np.array([0, 1, -100, 3])
    w[labels[[0, 1, 3]]] = x[[0, 1, 3]] * (30.0 / (x[[0, 1, 3]] ** 2).sum(axis=1, keepdims=True))
    x[:, 0], w[:, 0] = 1.0, 512.0
    options = {"weight": w, "ignore_index": -100}
    truth = _oracle(x, w, None, labels, ignore=-100)
    for quantity in QUANTITIES[:3]:
        result = linear.linear_exact(quantity, x, labels, options)
        np.testing.assert_array_equal(result.hi, truth[quantity], err_msg=quantity)
    assert linear.linear_exact("value", x, labels, options).hi[2] == 0.0


def test_split_product_is_exact_against_rationals_on_wide_ranges():
    """Ozaki splitting with elements spanning 2^-60..2^60 in one row: every slice product exact."""
    rng = np.random.default_rng(3)
    a = np.ldexp(rng.normal(size=(3, 40)), rng.integers(-60, 60, size=(3, 40)))
    b = np.ldexp(rng.normal(size=(40, 4)), rng.integers(-60, 60, size=(40, 4)))
    result = ozaki.product([a], b)
    for i in range(3):
        for j in range(4):
            true = sum(Fraction(float(a[i, k])) * Fraction(float(b[k, j])) for k in range(40))
            assert float(result.hi[i, j]) == float(true)  # hi is the correctly rounded sum
            enclosed = Fraction(float(result.hi[i, j])) + Fraction(float(result.lo[i, j]))
            assert abs(enclosed - true) <= Fraction(float(result.err[i, j]))


def test_exact_entry_point_shapes_and_invalid_input():
    x, w, b, labels = _inputs(np.float32, seed=4)
    options = {"weight": w, "bias": b}
    for quantity in QUANTITIES:
        got = exact("linear_cross_entropy", x, labels, quantity, **options)
        assert got.hi.shape == output_shape("linear_cross_entropy", quantity, x.shape, options)
    with pytest.raises(ValueError, match="outside"):
        exact("linear_cross_entropy", x, labels + 7, "value", **options)
    with pytest.raises(ValueError, match="grad_bias needs"):
        exact("linear_cross_entropy", x, labels, "grad_bias", weight=w)
    with pytest.raises(ValueError, match="weight"):
        exact("linear_cross_entropy", x, labels, "value")


@pytest.mark.parametrize("name", ["normal", "bias", "confident", "offset-1000", "padding-75pct"])
def test_reference_proves_every_output_of_the_linear_cases(name):
    from xentbench.suites.catalog.cases import find

    case = find(f"linear_cross_entropy/linear/{name}")
    for dtype in ("float32", "bfloat16"):
        hidden, labels = case.inputs(dtype, seed=0)
        options = case.call_options(dtype, 0, "value")
        for quantity in QUANTITIES[: 4 if case.bias else 3]:
            result = linear.linear_exact(quantity, hidden, labels, options)
            assert result.proven.all(), (dtype, quantity, int((~result.proven).sum()))
