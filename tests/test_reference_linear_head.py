"""The linear op under the LLM head's options (reference.linear_head), against mpmath written
here (the textbook formula on exact dot products), numerical derivatives, and identities."""

from __future__ import annotations

import mpmath
import numpy as np
import pytest

from xentbench.reference import exact

LINEAR = "linear_cross_entropy"
mpmath.mp.prec = 300


def _inputs(seed=0, n=3, c=7, d=5):
    rng = np.random.default_rng(seed)
    x, w = rng.normal(size=(n, d)), rng.normal(size=(c, d)) * 3
    return x, w, rng.normal(size=c), rng.integers(0, c, n)


def _mp_losses(x, w, b, y, t, cap, z_loss, ignore=None):
    """Per row: lse(t) - t_y + z_loss lse(t)^2, t = cap tanh(z / T / cap), z exact."""
    out = []
    for i, row in enumerate(x):
        if ignore is not None and y[i] == ignore:
            out.append(mpmath.mpf(0))
            continue
        z = [
            mpmath.fsum(mpmath.mpf(a) * mpmath.mpf(v) for a, v in zip(row, wj, strict=True))
            + mpmath.mpf(bj)
            for wj, bj in zip(w, b, strict=True)
        ]
        ti = mpmath.mpf(t[i] if np.ndim(t) else t)
        tz = [v / ti if cap is None else cap * mpmath.tanh(v / ti / cap) for v in z]
        lse = mpmath.log(mpmath.fsum(mpmath.exp(v) for v in tz))
        out.append(lse - tz[y[i]] + mpmath.mpf(z_loss) * lse**2)
    return out


CASES = [
    {"softcap": 2.0, "temperature": 0.7, "z_loss": 1e-2},
    {"softcap": 30.0},
    {"temperature": np.array([0.5, 1.5, 2.0])},
    {"z_loss": 1e-3},
]


@pytest.mark.parametrize("options", CASES)
def test_values_match_mpmath(options):
    x, w, b, y = _inputs()
    got = exact(LINEAR, x, y, weight=w, bias=b, **options).hi
    t = options.get("temperature", 1.0)
    truth = _mp_losses(x, w, b, y, t, options.get("softcap"), options.get("z_loss", 0.0))
    assert got.tolist() == [float(v) for v in truth]


@pytest.mark.parametrize("options", CASES[:2] + CASES[3:])
@pytest.mark.parametrize(
    ("quantity", "which"), [("grad_hidden", 0), ("grad_weight", 1), ("grad_bias", 2)]
)
def test_gradients_match_mpmath_derivatives(options, quantity, which):
    """Central differences at step 2^-80 in 300-bit arithmetic: error ~2^-160, far below."""
    x, w, b, y = _inputs(1)
    got = exact(LINEAR, x, y, quantity=quantity, weight=w, bias=b, **options).hi
    arrays = [a.astype(object) for a in (x, w, b)]
    h = mpmath.mpf(2) ** -80
    rng = np.random.default_rng(2)
    for index in (tuple(rng.integers(0, s) for s in got.shape) for _ in range(3)):
        sides = []
        for sign in (1, -1):
            moved = [a.copy() for a in arrays]
            moved[which][index] = mpmath.mpf(moved[which][index]) + sign * h
            t = options.get("temperature", 1.0)
            args = (*moved, y, t, options.get("softcap"), options.get("z_loss", 0.0))
            sides.append(mpmath.fsum(_mp_losses(*args)))
        derivative = (sides[0] - sides[1]) / (2 * h)
        assert abs(got[index] - float(derivative)) <= 2 * np.spacing(abs(got[index])), index


def test_neutral_options_change_nothing():
    x, w, b, y = _inputs(3)
    for quantity in ("value", "grad_hidden", "grad_weight", "grad_bias"):
        plain = exact(LINEAR, x, y, quantity=quantity, weight=w, bias=b).hi
        neutral = exact(
            LINEAR,
            x,
            y,
            quantity=quantity,
            weight=w,
            bias=b,
            softcap=np.inf,
            temperature=1.0,
            z_loss=0.0,
        ).hi
        np.testing.assert_array_equal(neutral, plain)


def test_a_constant_column_keeps_the_z_loss_gradient():
    """W's constant column c gives dX = c sum_j G_ij, 0 for the plain loss but 2 z L c / T
    with a z-loss: the plain op's exact-zero shortcut must not apply."""
    x, w, b, y = _inputs(4)
    x[:, 0], w[:, 0] = 1.0, 1000.0
    got = exact(LINEAR, x, y, quantity="grad_hidden", weight=w, bias=b, z_loss=1e-4).hi
    losses = _mp_losses(x, w, b, y, 1.0, None, 0.0)
    for i in range(len(x)):
        lse = (
            losses[i]
            + sum(mpmath.mpf(a) * mpmath.mpf(v) for a, v in zip(x[i], w[y[i]], strict=True))
            + b[y[i]]
        )
        assert got[i, 0] == pytest.approx(float(2 * mpmath.mpf(1e-4) * lse * 1000), rel=1e-12)


def test_padding_rows_take_no_part():
    x, w, b, y = _inputs(5, n=4)
    y[1] = -100
    options = {"softcap": 3.0, "z_loss": 1e-2, "ignore_index": -100}
    value = exact(LINEAR, x, y, weight=w, bias=b, **options).hi
    truth = _mp_losses(x, w, b, y, 1.0, 3.0, 1e-2, ignore=-100)
    assert value.tolist() == [float(v) for v in truth]
    grad = exact(LINEAR, x, y, quantity="grad_hidden", weight=w, bias=b, **options).hi
    assert (grad[1] == 0).all()


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"softcap": -1.0}, "softcap -1.0"),
        ({"temperature": 0.0}, "temperature 0.0"),
        ({"z_loss": -1.0}, "z_loss -1.0"),
        ({"temperature": np.ones(2)}, "temperature shape"),
    ],
)
def test_bad_head_options_are_refused(options, named):
    x, w, _, y = _inputs()
    with pytest.raises(ValueError, match=named):
        exact(LINEAR, x, y, weight=w, **options)


def test_non_finite_inputs_are_refused_under_the_head():
    x, w, _, y = _inputs()
    x[0, 0] = np.nan
    with pytest.raises(ValueError, match="finite hidden"):
        exact(LINEAR, x, y, weight=w, softcap=30.0)
