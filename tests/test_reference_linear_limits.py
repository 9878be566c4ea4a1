"""Non-finite hidden, weight and bias in the linear_cross_entropy reference, checked independently.

The oracle below shares nothing with ``reference.linear_limits``: logits are mpmath sums of
mpmath products (mpmath's own inf * 0 = NaN and inf - inf = NaN), a row's loss and gradient
follow the limit rules of ``reference.edges`` written out again here, the gradients are mpmath
sums of G_ij * v with an exact-zero G_ij contributing 0, and every finite result is rounded to
float64 once. A few values are also asserted by hand, so the oracle cannot agree by sharing a
mistake.
"""

from __future__ import annotations

import mpmath
import numpy as np
import pytest

from xentbench.reference import linear
from xentbench.suites.catalog.linear import (
    IGNORE_INDEX,
    LINEAR_GENERATORS,
    NON_FINITE_LINEAR,
    LinearDraw,
)

INF, NAN = np.inf, np.nan
IGNORE = -100


def _row_terms(z: list, label: int) -> tuple:
    """(loss, G row) of one row of mpmath logits, by the limit rules."""
    if any(mpmath.isnan(v) for v in z):
        return mpmath.nan, [mpmath.nan] * len(z)
    plus = [j for j, v in enumerate(z) if v == mpmath.inf]
    onehot = [mpmath.mpf(j == label) for j in range(len(z))]
    if plus:
        share = mpmath.mpf(1) if len(plus) == 1 else mpmath.nan
        p = [share if j in plus else mpmath.mpf(0) for j in range(len(z))]
        loss = (0 if len(plus) == 1 else mpmath.nan) if label in plus else mpmath.inf
        return mpmath.mpf(loss), [pj - yj for pj, yj in zip(p, onehot, strict=True)]
    if all(v == -mpmath.inf for v in z):
        return mpmath.nan, [mpmath.nan] * len(z)
    top = max(v for v in z if v != -mpmath.inf)
    e = [mpmath.exp(v - top) for v in z]  # exp(-inf) = 0: a masked class
    total = mpmath.fsum(e)
    loss = mpmath.log(total) - (z[label] - top)
    return loss, [ej / total - yj for ej, yj in zip(e, onehot, strict=True)]


def _dot(terms) -> mpmath.mpf:
    """Sum of G * v pairs; a G of exactly 0 contributes 0 whatever v is."""
    values = [g * v for g, v in terms if g != 0]
    return mpmath.fsum(values) if values else mpmath.mpf(0)


def _oracle(x, w, b, labels):
    """Every quantity in mpmath (300 bits), rounded to float64 once."""
    rows, classes, features = len(x), len(w), x.shape[1]
    mp = np.vectorize(lambda v: mpmath.mpf(float(v)), otypes=[object])
    xm, wm, bm = mp(x), mp(w), mp(np.zeros(classes) if b is None else b)
    with mpmath.workprec(300):
        z = [
            [
                mpmath.fsum([xm[i, k] * wm[j, k] for k in range(features)] + [bm[j]])
                for j in range(classes)
            ]
            for i in range(rows)
        ]
        loss, g = [], []
        for i in range(rows):
            if labels[i] == IGNORE:
                loss.append(mpmath.mpf(0))
                g.append([mpmath.mpf(0)] * classes)
            else:
                row_loss, row_g = _row_terms(z[i], int(labels[i]))
                loss.append(row_loss)
                g.append(row_g)
        dx = [
            [_dot((g[i][j], wm[j, k]) for j in range(classes)) for k in range(features)]
            for i in range(rows)
        ]
        dw = [
            [_dot((g[i][j], xm[i, k]) for i in range(rows)) for k in range(features)]
            for j in range(classes)
        ]
        db = [_dot((g[i][j], mpmath.mpf(1)) for i in range(rows)) for j in range(classes)]
    as_float = np.vectorize(lambda v: float(v), otypes=[np.float64])
    with np.errstate(invalid="ignore"):
        return {
            "value": as_float(loss),
            "grad_hidden": as_float(dx),
            "grad_weight": as_float(dw),
            "grad_bias": as_float(db),
        }


def _base():
    x = np.array([[1.0, 2.0], [0.5, -1.0], [0.25, 0.75], [-1.5, 0.5]])
    w = np.array([[1.0, 0.5], [-1.0, 2.0], [0.25, -0.125]])
    return x, w, np.array([0.5, -0.25, 1.0]), np.array([0, 2, 1, 2])


def _nan_hidden():
    x, w, b, y = _base()
    x[1, 0] = NAN
    return x, w, b, y


def _inf_times_zero():
    x, w, b, y = _base()
    x[0, 0], w[2, 0] = INF, 0.0  # z_02 = inf * 0 + ...: NaN, so row 0 is NaN
    return x, w, b, y


def _masked_class():
    x, w, b, y = _base()
    w[2, 1] = -INF  # column 2: -inf for rows with x_i1 > 0, +inf for row 1 (x_11 < 0)
    return x, w, b, y


def _plus_and_minus():
    x, w, b, y = _base()
    x[3] = [INF, -INF]  # z_30 = inf - inf: NaN; z_31 = -inf - inf = -inf; z_32 = inf + inf
    return x, w, b, y


def _infinite_bias_and_padding():
    x, w, b, _ = _base()
    b[1] = -INF  # class 1 masked everywhere
    x[2] = [NAN, INF]  # an ignored row: takes no part
    return x, w, b, np.array([0, 2, IGNORE, 1])


def _two_plus_infinities():
    x, w, b, y = _base()
    b[0] = b[2] = INF  # two +inf logits per row: the split between them has no limit
    return x, w, b, y


CASES = {
    "nan-hidden": _nan_hidden,
    "inf-times-zero": _inf_times_zero,
    "masked-class": _masked_class,
    "plus-and-minus": _plus_and_minus,
    "infinite-bias-and-padding": _infinite_bias_and_padding,
    "two-plus-infinities": _two_plus_infinities,
}


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("quantity", linear.QUANTITIES)
def test_non_finite_inputs_follow_the_limits(name, quantity):
    x, w, b, y = CASES[name]()
    options = {"weight": w, "bias": b}
    if name == "infinite-bias-and-padding":
        options["ignore_index"] = IGNORE
    result = linear.linear_exact(quantity, x, y, options)
    expected = _oracle(x, w, b, y)[quantity]
    np.testing.assert_array_equal(result.hi, expected)  # NaN matches NaN, signs of inf count
    assert result.proven.all()


def test_hand_computed_limits():
    """Values worked out by hand (independent of both the reference and the oracle)."""
    x, w, b, y = _masked_class()
    options = {"weight": w, "bias": b}
    loss = linear.linear_exact("value", x, y, options).hi
    # Row 1 (x = [0.5, -1]): z_12 = 0.5 * 0.25 + (-1) * (-inf) + 1 = +inf, its label: loss 0.
    # Row 2 (label 1): z_22 = -inf, the others finite: softmax over classes 0 and 1 only.
    z20, z21 = 0.25 * 1.0 + 0.75 * 0.5 + 0.5, 0.25 * -1.0 + 0.75 * 2.0 - 0.25
    assert loss[1] == 0.0
    assert loss[2] == pytest.approx(float(mpmath.log(mpmath.exp(z20) + mpmath.exp(z21)) - z21))
    grad_w = linear.linear_exact("grad_weight", x, y, options).hi
    # Class 2 at row 1 is the +inf label: G_12 = 0 exactly; rows 0, 2, 3 mask it (p = 0), so
    # dW_2 = 0 except the label of row 3 (y = 2, p_32 = 0): G_32 = -1, dW_2 = -x_3.
    np.testing.assert_array_equal(grad_w[2], [1.5, -0.5])
    x, w, b, y = _infinite_bias_and_padding()
    grad_x = linear.linear_exact(
        "grad_hidden", x, y, {"weight": w, "bias": b, "ignore_index": IGNORE}
    ).hi
    assert (grad_x[2] == 0).all()  # the ignored row holds NaN and inf: still no gradient
    loss = linear.linear_exact("value", x, y, {"weight": w, "bias": b, "ignore_index": IGNORE})
    assert loss.hi[3] == INF  # label 1 is masked by the -inf bias
    nan_loss = linear.linear_exact("value", *_nan_hidden()[::3], {"weight": _base()[1]}).hi
    assert np.isnan(nan_loss[1]) and np.isfinite(nan_loss[[0, 2, 3]]).all()


@pytest.mark.parametrize("row", NON_FINITE_LINEAR, ids=[row[0] for row in NON_FINITE_LINEAR])
def test_non_finite_catalog_rows_are_proven_with_their_stated_limits(row):
    """The catalog's non-finite inputs: the reference proves every output, and the NaN and
    infinite entries sit where the case's description says."""
    _, generator, params, rows, features, classes, extra, _ = row
    draw = LinearDraw(np.random.default_rng(0), rows, classes, features)
    x, w, labels = LINEAR_GENERATORS[generator](draw, **params)
    options = {"weight": w}
    if extra.get("padding"):
        options["ignore_index"] = IGNORE_INDEX
    if extra.get("bias"):
        options["bias"] = np.random.default_rng(1).normal(size=classes)
    results = {
        q: linear.linear_exact(q, x, labels, options)
        for q in linear.QUANTITIES
        if q != "grad_bias" or "bias" in options
    }
    assert all(r.proven.all() for r in results.values())
    bad_row = params.get("row", 0)
    loss = results["value"].hi
    others = np.delete(loss, bad_row)
    assert np.isfinite(others).all()
    if params.get("pad"):
        assert loss[bad_row] == 0 and np.isfinite(results["grad_weight"].hi).all()
    elif np.isnan(params["value"]):
        assert np.isnan(loss[bad_row]) and np.isnan(results["grad_weight"].hi).all()
        assert np.isnan(results["grad_hidden"].hi[bad_row]).all()
        assert np.isfinite(np.delete(results["grad_hidden"].hi, bad_row, axis=0)).all()
    else:  # +inf: +-inf logits, several +inf among them (their split has no limit)
        assert not np.isfinite(loss[bad_row])
        assert np.isnan(results["grad_hidden"].hi[bad_row]).all()
