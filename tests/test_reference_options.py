"""The parameterised family of ``reference.options``, verified independently: mpmath at 60
digits from the definitions (values, derivatives by mpmath's own numerical differentiation),
identities between options, and the conventions (zero weights, the mean over zero rows)."""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest

from xentbench.reference import exact

mpmath.mp.dps = 60
SPARSE, SOFT = "sparse_softmax_cross_entropy", "softmax_cross_entropy"


def _batch(seed=0, rows=6, classes=5):
    rng = np.random.default_rng(seed)
    x = rng.normal(scale=3.0, size=(rows, classes))
    k = rng.integers(0, classes, rows)
    return x, k, rng


def _mp_row_loss(row, coefficients):
    lse = mpmath.log(mpmath.fsum(mpmath.exp(mpmath.mpf(v)) for v in row))
    return mpmath.fsum(
        mpmath.mpf(c) * (lse - mpmath.mpf(v)) for c, v in zip(coefficients, row, strict=True)
    )


def _mp_coefficients(k, classes, eps, weights):
    eps = mpmath.mpf(eps)
    return [mpmath.mpf(w) * ((1 - eps) * (i == k) + eps / classes) for i, w in enumerate(weights)]


def _mp_mean_loss(x, k, eps, weights, ignore, sample):
    total, divisor = mpmath.mpf(0), mpmath.mpf(0)
    for row, label, sw in zip(x, k, sample, strict=True):
        if label == ignore:
            continue
        c = _mp_coefficients(int(label), x.shape[1], eps, weights)
        total += mpmath.mpf(sw) * _mp_row_loss(row, c)
        divisor += mpmath.mpf(sw) * mpmath.mpf(weights[int(label)])
    return total / divisor


def _correctly_rounded(hi: float, truth) -> bool:
    """hi is the float64 nearest to truth (within half an ULP, with a hair for the 60 digits)."""
    return abs(mpmath.mpf(hi) - truth) <= mpmath.mpf(math.ulp(hi)) / 2 * (1 + mpmath.mpf(1e-30))


def test_weighted_smoothed_mean_over_kept_rows_matches_mpmath():
    x, k, rng = _batch(rows=12)
    k[::3] = -100
    weights = 10.0 ** rng.uniform(-3, 3, 5)
    sample = rng.uniform(0.1, 4.0, 12)
    options = {"reduction": "mean", "ignore_index": -100, "label_smoothing": 0.1}
    options |= {"class_weight": weights, "sample_weight": sample}
    got = exact(SPARSE, x, k, **options)
    truth = _mp_mean_loss(x, k, 0.1, weights, -100, sample)
    assert got.hi.shape == ()
    assert _correctly_rounded(float(got.hi), truth)
    assert abs(mpmath.mpf(float(got.hi)) + mpmath.mpf(float(got.lo)) - truth) < abs(truth) * 1e-28


def test_gradient_of_the_mean_is_the_numerical_derivative_of_the_mpmath_mean():
    x, k, rng = _batch(seed=3, rows=4, classes=3)
    k[1] = -100
    weights = rng.uniform(0.5, 2.0, 3)
    options = {"reduction": "mean", "ignore_index": -100, "label_smoothing": 0.2}
    got = exact(SPARSE, x, k, "grad", class_weight=weights, **options).hi
    ones = np.ones(4)
    for r, j in ((0, 0), (0, 2), (1, 1), (3, 1)):

        def loss(value, r=r, j=j):
            moved = x.astype(object).copy()
            moved[r, j] = value
            return _mp_mean_loss(moved, k, 0.2, weights, -100, ones)

        derivative = mpmath.diff(loss, mpmath.mpf(x[r, j]))
        assert abs(got[r, j] - derivative) <= 1e-15 * max(abs(derivative), 1e-300) + 1e-300


def _mp_outputs(op: str, row) -> list:
    values = [mpmath.mpf(v) for v in row]
    lse = mpmath.log(mpmath.fsum(mpmath.exp(v) for v in values))
    if op == "logsumexp":
        return [lse]
    return [mpmath.exp(v - lse) if op == "softmax" else v - lse for v in values]


def _mp_directional(op: str, row, direction, index: int):
    """d/dh of output ``index`` at row + h * direction, by mpmath's numerical differentiation."""

    def along(h):
        moved = [mpmath.mpf(v) + h * mpmath.mpf(t) for v, t in zip(row, direction, strict=True)]
        return _mp_outputs(op, moved)[index]

    return mpmath.diff(along, 0)


@pytest.mark.parametrize("op", ["softmax", "log_softmax", "logsumexp"])
def test_vjp_and_jvp_of_the_unlabelled_ops_match_mpmath_derivatives(op):
    x, _, rng = _batch(seed=5, rows=2, classes=4)
    shape = (2,) if op == "logsumexp" else (2, 4)
    cotangent, tangent = rng.normal(size=shape), rng.normal(size=(2, 4))
    vjp = exact(op, x, quantity="grad", cotangent=cotangent).hi
    jvp = exact(op, x, quantity="jvp", tangent=tangent).hi.reshape(2, -1)
    g = cotangent.reshape(2, -1)
    for r in range(2):
        for i in range(g.shape[1]):
            truth = _mp_directional(op, x[r], tangent[r], i)
            assert abs(jvp[r, i] - truth) <= 1e-14 * abs(truth) + 1e-300
        for j in range(4):
            unit = np.eye(4)[j]
            parts = [g[r, i] * _mp_directional(op, x[r], unit, i) for i in range(g.shape[1])]
            truth = mpmath.fsum(parts)
            assert abs(vjp[r, j] - truth) <= 1e-14 * abs(truth) + 1e-300


def test_without_options_the_family_is_the_plain_reference():
    x, k, rng = _batch()
    y = rng.dirichlet(np.ones(5), 6)
    for op, labels in ((SPARSE, k), (SOFT, y)):
        plain = exact(op, x, labels)
        assert np.array_equal(exact(op, x, labels, reduction="none").hi, plain.hi)
        grad = exact(op, x, labels, "grad")
        assert np.array_equal(exact(op, x, labels, "grad", reduction="none").hi, grad.hi)
    assert np.allclose(exact(SPARSE, x, k, reduction="sum").hi, exact(SPARSE, x, k).hi.sum())


def test_smoothing_identities():
    x, k, _ = _batch()
    onehot = np.eye(5)[k]
    # eps = 0 is no smoothing; sparse smoothing is soft smoothing of the one-hot labels.
    assert np.array_equal(exact(SPARSE, x, k, label_smoothing=0.0).hi, exact(SPARSE, x, k).hi)
    sparse = exact(SPARSE, x, k, label_smoothing=0.25).hi
    assert np.array_equal(sparse, exact(SOFT, x, onehot, label_smoothing=0.25).hi)
    # eps = 1 is the uniform target: the mean of -log p over the classes.
    uniform = exact(SOFT, x, np.full((6, 5), 0.2)).hi
    assert np.allclose(exact(SPARSE, x, k, label_smoothing=1.0).hi, uniform, rtol=1e-15)


def test_class_axis_moves_the_classes_and_nothing_else():
    x, k, rng = _batch(rows=6)
    y = rng.dirichlet(np.ones(5), 6)
    # [2, 3, 5] rows -> [2, 5, 3] with the classes on axis 1
    x3, y3 = x.reshape(2, 3, 5), y.reshape(2, 3, 5)
    moved_x, moved_y = x3.transpose(0, 2, 1), y3.transpose(0, 2, 1)
    for op, labels, moved in ((SPARSE, k.reshape(2, 3), k.reshape(2, 3)), (SOFT, y3, moved_y)):
        plain = exact(op, x3, labels, label_smoothing=0.1)
        assert np.array_equal(
            exact(op, moved_x, moved, class_axis=1, label_smoothing=0.1).hi, plain.hi
        )
        grad = exact(op, moved_x, moved, "grad", class_axis=1).hi
        assert np.array_equal(grad, exact(op, x3, labels, "grad").hi.transpose(0, 2, 1))


def test_the_mean_over_zero_rows_is_nan_and_its_gradient_zero():
    x, k, _ = _batch()
    ignored = np.full(6, -100)
    options = {"reduction": "mean", "ignore_index": -100}
    assert np.isnan(exact(SPARSE, x, ignored, **options).hi)
    assert np.array_equal(exact(SPARSE, x, ignored, "grad", **options).hi, np.zeros((6, 5)))
    assert exact(SPARSE, x, ignored, reduction="sum", ignore_index=-100).hi == 0.0
    zero_weights = {"reduction": "mean", "sample_weight": np.zeros(6)}
    assert np.isnan(exact(SPARSE, x, k, **zero_weights).hi)


def test_a_zero_cotangent_on_an_undefined_row_contributes_exactly_zero():
    x, k, _ = _batch(rows=3)
    x[1] = -np.inf  # no softmax, logsumexp -inf: its gradient is undefined
    cotangent = np.array([1.0, 0.0, 2.0])
    grad = exact("logsumexp", x, quantity="grad", cotangent=cotangent).hi
    assert np.array_equal(grad[1], np.zeros(5))
    assert np.array_equal(grad[0], exact("softmax", x[:1]).hi[0])
    assert np.all(np.isnan(exact("logsumexp", x, quantity="grad", cotangent=np.ones(3)).hi[1]))
    sparse = exact(SPARSE, x, k, "grad", cotangent=cotangent).hi
    assert np.array_equal(sparse[1], np.zeros(5))
    x[1, 0] = np.nan  # NaN in, NaN out, whatever the cotangent
    assert np.all(np.isnan(exact("logsumexp", x, quantity="grad", cotangent=cotangent).hi[1]))


def test_masked_classes_keep_forward_mode_finite():
    x, _, rng = _batch()
    x[:, 0] = -np.inf
    y = np.zeros((6, 5))
    y[np.arange(6), 1 + np.arange(6) % 4] = 1.0
    jvp = exact(SOFT, x, y, "jvp", tangent=rng.normal(size=(6, 5))).hi
    assert np.all(np.isfinite(jvp))
    assert np.all(np.isinf(exact(SOFT, x, y, label_smoothing=0.1).hi))


def test_options_the_op_cannot_take_are_refused():
    x, k, _ = _batch()
    with pytest.raises(ValueError, match="takes no option 'reduction'"):
        exact("softmax", x, reduction="mean")
    with pytest.raises(ValueError, match="unknown reduction"):
        exact(SPARSE, x, k, reduction="avg")
    with pytest.raises(ValueError, match="outside"):
        exact(SPARSE, x, np.full(6, -100), reduction="mean")  # -100 without ignore_index


def test_a_weighted_sum_beyond_the_float64_range_beside_an_infinite_loss_is_inf():
    # Row 0's loss is 1e308 and its weight 1e3: the exact term 1e311 is beyond DBL_MAX. Row 1's
    # loss is +inf (a positive label on a -inf logit). The sum is +inf; testing the exact term
    # for finiteness (math.isfinite converts it to a float) used to raise OverflowError.
    logits = np.array([[1e308, 0.0], [0.0, -np.inf]])
    labels = np.array([[0.0, 1.0], [0.0, 1.0]])
    weights = np.array([1e3, 1.0])
    total = exact(
        "softmax_cross_entropy", logits, labels, "value", reduction="sum", sample_weight=weights
    )
    assert total.hi == math.inf
