"""The LLM head's options (softcap, temperature, z_loss) in the reference, checked against
mpmath written here (a second method), identities, and numerical derivatives."""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest

from xentbench.reference import exact

mpmath.mp.prec = 400
SPARSE, SOFT = "sparse_softmax_cross_entropy", "softmax_cross_entropy"
UNLABELLED = ("softmax", "log_softmax", "logsumexp")


def _batch(seed=0, rows=4, classes=6, scale=3.0):
    rng = np.random.default_rng(seed)
    return rng.normal(scale=scale, size=(rows, classes)), rng.integers(0, classes, rows), rng


def _mp_z(row, t, cap):
    """cap * tanh(x / T / cap) in mpmath (x / T without a cap); -inf stays -inf uncapped."""
    out = []
    for v in row:
        w = mpmath.mpf(v) / mpmath.mpf(t)
        out.append(w if math.isinf(cap) else mpmath.mpf(cap) * mpmath.tanh(w / mpmath.mpf(cap)))
    return out


def _mp_lse(z):
    top = max(z)
    return top + mpmath.log(mpmath.fsum(mpmath.exp(v - top) for v in z))


def _mp_outputs(op, row, t=1.0, cap=math.inf, z_loss=0.0, label=None):
    """Every output of ``op`` on one row under the head's options, in mpmath."""
    z = _mp_z(row, t, cap)
    lse = _mp_lse(z)
    if op == "logsumexp":
        return [lse]
    if op == "log_softmax":
        return [v - lse for v in z]
    if op == "softmax":
        return [mpmath.exp(v - lse) for v in z]
    coefficients = np.eye(len(row))[label] if op == SPARSE else label
    loss = mpmath.fsum(mpmath.mpf(c) * (lse - v) for c, v in zip(coefficients, z, strict=True))
    return [loss + mpmath.mpf(z_loss) * lse**2]


def _correctly_rounded(hi: float, truth) -> bool:
    return abs(mpmath.mpf(hi) - truth) <= mpmath.mpf(math.ulp(hi)) / 2 * (1 + mpmath.mpf(1e-40))


@pytest.mark.parametrize("op", [*UNLABELLED, SPARSE])
@pytest.mark.parametrize(
    ("t", "cap", "z_loss"), [(1.0, 30.0, 0.0), (0.5, math.inf, 0.0), (2.0, 50.0, 1e-4)]
)
def test_values_are_correctly_rounded_against_mpmath(op, t, cap, z_loss):
    x, k, _ = _batch(scale=40.0)
    x[0] += 1e4  # a large common offset
    options = {"temperature": t, "softcap": cap}
    if op == SPARSE:
        options["z_loss"] = z_loss
    got = exact(op, x, k if op == SPARSE else None, **options).hi.reshape(len(x), -1)
    for r, row in enumerate(x):
        truth = _mp_outputs(op, row, t, cap, z_loss, int(k[r]))
        for i, value in enumerate(truth):
            assert _correctly_rounded(float(got[r, i]), value), (r, i)


def test_confident_rows_with_z_loss_and_soft_labels_match_mpmath():
    x, k, rng = _batch(seed=1, rows=3, classes=5)
    x[np.arange(3), k] = x.max(axis=1) + 20.0  # the true class 20 above the row max
    y = rng.dirichlet(np.ones(5), 3)
    got = exact(SOFT, x, y, softcap=30.0, z_loss=1e-4).hi
    for r in range(3):
        assert _correctly_rounded(float(got[r]), _mp_outputs(SOFT, x[r], 1.0, 30.0, 1e-4, y[r])[0])


def test_per_row_temperature_applies_to_its_own_row():
    x, k, _ = _batch(rows=3)
    t = np.array([0.5, 1.0, 2.0])
    got = exact(SPARSE, x, k, temperature=t).hi
    for r in range(3):
        assert _correctly_rounded(float(got[r]), _mp_outputs(SPARSE, x[r], t[r], label=k[r])[0])


def test_a_minus_inf_padding_lane_under_a_cap_becomes_minus_cap():
    x, _, _ = _batch(rows=2, classes=5)
    x[:, 3:] = -np.inf
    got = exact("log_softmax", x, softcap=30.0).hi
    for r in range(2):
        padded = [v if math.isfinite(v) else -1e300 for v in x[r]]  # tanh(-huge) = -1 exactly
        truth = _mp_outputs("log_softmax", padded, cap=30.0)
        assert all(_correctly_rounded(float(got[r, i]), truth[i]) for i in range(5))
    assert np.all(exact("softmax", x, softcap=30.0).hi[:, 3:] > 0)  # the lanes get mass
    uncapped = exact("softmax", x, temperature=2.0).hi
    assert np.all(uncapped[:, 3:] == 0)  # without a cap a -inf lane keeps probability 0


def _options_cases():
    return [{"softcap": math.inf}, {"temperature": 1.0}, {"z_loss": 0.0}]


@pytest.mark.parametrize("options", _options_cases(), ids=["cap-inf", "t-1", "z-0"])
@pytest.mark.parametrize("quantity", ["value", "grad"])
def test_neutral_values_equal_the_plain_reference(options, quantity):
    x, k, rng = _batch(seed=2)
    cotangent = {"cotangent": rng.normal(size=4)} if quantity == "grad" else {}
    plain = exact(SPARSE, x, k, quantity, reduction="none", **cotangent)
    head = exact(SPARSE, x, k, quantity, reduction="none", **cotangent, **options)
    assert np.array_equal(plain.hi, head.hi)
    if "z_loss" not in options:
        for op in UNLABELLED:
            assert np.array_equal(exact(op, x).hi, exact(op, x, **options).hi)


def test_z_loss_gradient_adds_two_z_lse_softmax():
    x, k, _ = _batch(seed=3)
    z = 1e-3
    plain = exact(SPARSE, x, k, "grad", reduction="none").hi
    head = exact(SPARSE, x, k, "grad", z_loss=z).hi
    lse = exact("logsumexp", x).hi
    expected = plain + 2 * z * lse[:, None] * exact("softmax", x).hi
    np.testing.assert_allclose(head, expected, rtol=1e-14, atol=1e-17)


@pytest.mark.parametrize("op", [SPARSE, "log_softmax", "softmax"])
def test_temperature_scales_the_gradient_by_one_over_t(op):
    x, k, rng = _batch(seed=4)
    t = 4.0  # a power of two: x / t is exact, so the scaled gradient is exactly 1/t times
    labels = k if op == SPARSE else None
    shape = (4,) if op == SPARSE else x.shape
    cotangent = rng.normal(size=shape)
    head = exact(op, x, labels, "grad", temperature=t, cotangent=cotangent).hi
    plain = exact(op, x / t, labels, "grad", cotangent=cotangent).hi
    np.testing.assert_array_equal(head, plain / t)


def _mp_loss_row(row, label, t, cap, z_loss):
    return _mp_outputs(SPARSE, row, t, cap, z_loss, label)[0]


def test_gradients_are_the_numerical_derivatives_of_the_mpmath_loss():
    x, k, rng = _batch(seed=5, rows=2, classes=4, scale=20.0)
    t, cap, z = 0.7, 10.0, 1e-2
    cotangent = rng.normal(size=2)
    got = exact(SPARSE, x, k, "grad", temperature=t, softcap=cap, z_loss=z, cotangent=cotangent)
    for r in range(2):
        for j in range(4):

            def loss(value, r=r, j=j):
                moved = list(x[r].astype(object))
                moved[j] = value
                return _mp_loss_row(moved, int(k[r]), t, cap, z)

            truth = mpmath.mpf(cotangent[r]) * mpmath.diff(loss, mpmath.mpf(x[r, j]))
            assert abs(got.hi[r, j] - truth) <= 1e-15 * abs(truth) + 1e-300


@pytest.mark.parametrize("op", UNLABELLED)
def test_jvp_of_the_unlabelled_ops_matches_the_mpmath_directional_derivative(op):
    x, _, rng = _batch(seed=6, rows=2, classes=4, scale=10.0)
    tangent = rng.normal(size=(2, 4))
    got = exact(op, x, quantity="jvp", tangent=tangent, softcap=5.0, temperature=1.5).hi
    got = got.reshape(2, -1)
    for r in range(2):

        def along(h, r=r, i=0):
            moved = [
                mpmath.mpf(v) + h * mpmath.mpf(d) for v, d in zip(x[r], tangent[r], strict=True)
            ]
            return _mp_outputs(op, moved, 1.5, 5.0)[i]

        for i in range(got.shape[1]):
            truth = mpmath.diff(lambda h, i=i, r=r: along(h, r, i), 0)
            assert abs(got[r, i] - truth) <= 1e-14 * abs(truth) + 1e-300


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"softcap": -1.0}, "softcap -1.0"),
        ({"softcap": 0.0}, "softcap 0.0"),
        ({"temperature": 0.0}, "temperature 0.0"),
        ({"temperature": -2.0}, "temperature -2.0"),
        ({"temperature": np.array([1.0, 0.0, 1.0, 1.0])}, "temperature 0.0"),
        ({"z_loss": -1e-4}, "z_loss -0.0001"),
        ({"temperature": math.inf}, "temperature inf"),
    ],
)
def test_invalid_values_are_refused_naming_the_value(options, named):
    x, k, _ = _batch()
    with pytest.raises(ValueError, match=named):
        exact(SPARSE, x, k, **options)


def test_z_loss_is_a_cross_entropy_option():
    with pytest.raises(ValueError, match="z_loss"):
        exact("softmax", np.zeros((1, 3)), z_loss=1e-4)


def test_saturated_caps_and_nan_rows():
    x = np.array([[1e4, -1e4, 0.0, np.nan], [1e4, 9999.0, -np.inf, 3.0]])
    got = exact("log_softmax", x, softcap=30.0)
    assert np.isnan(got.hi[0]).all()
    truth = _mp_outputs("log_softmax", [1e4, 9999.0, -1e300, 3.0], cap=30.0)
    assert all(_correctly_rounded(float(got.hi[1, i]), truth[i]) for i in range(4))
    grad = exact(SPARSE, x[1:], np.array([1]), "grad", softcap=30.0).hi
    assert grad[0, 2] == 0.0  # the -inf lane's slope is 0 under a cap
    assert 0 < abs(grad[0, 0]) < 1e-280  # sech^2(1e4/30) is about 2e-289


def test_the_cache_key_names_each_head_option():
    from xentbench.reference.cache import cache_key

    x, k, _ = _batch()
    keys = {
        cache_key(SPARSE, x, k, "value", options)
        for options in (
            {},
            {"softcap": 30.0},
            {"softcap": 50.0},
            {"temperature": 0.5},
            {"temperature": np.array([0.5, 1.0, 2.0, 1.0])},
            {"temperature": np.array([0.5, 1.0, 2.0, 2.0])},
            {"z_loss": 1e-4},
        )
    }
    assert len(keys) == 7


def test_the_allowance_of_neutral_head_options_is_the_plain_options_allowance():
    from xentbench.suites.judge.allowance import call_allowance
    from xentbench.suites.judge.budget import Output

    x, k, _ = _batch(seed=8)
    x = x.astype(np.float32)
    for quantity in ("value", "grad"):
        truth = exact(SPARSE, x, k, quantity, reduction="none")
        output = Output(SPARSE, quantity, "float32", x, k, truth)
        plain = call_allowance(output, {"reduction": "none"}).absolute
        neutral = {"reduction": "none", "softcap": math.inf, "temperature": 1.0}
        np.testing.assert_allclose(call_allowance(output, neutral).absolute, plain, rtol=1e-12)
        capped = call_allowance(output, {"reduction": "none", "softcap": 3.0}).absolute
        assert np.all(capped > 0) and not np.allclose(capped, plain)
