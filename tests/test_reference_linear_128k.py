"""The ``hundreds-128k`` linear case (|logit| in the hundreds over 131072 classes): dW and the
loss of the reference against an independent Arb computation.

Independent of ``reference.linear`` (Ozaki splitting, double-double softmax, Arb refinement of
undecided elements only): the logits are one ``arb_mat`` product at 300 bits (products of the
given floats are exact there), logsumexp sums all 131072 Arb exponentials, and each checked
dW_jk = sum_i (exp(z_ij - lse_i) - [j = y_i]) x_ik is a ball whose two ends must round to the
same float64 (python-flint rounds to nearest, subnormals included), which must equal the
reference's value wherever the reference says it proved it; elsewhere (classes below e^-746
in some row, where the reference only bounds the probability) within the stated bound
E_LOW * sum_i |x_ik|. Checked classes: each row's label and top class, and the classes
whose logit sits nearest 50, 300, 640, 660 (around dd.exp's e^-650 range limit), 700, 740,
750 (around the e^-746 cut-off) and 1000 below the row's max, the row's minimum, and three
drawn at random.
"""

from __future__ import annotations

import numpy as np
import pytest
from flint import arb, arb_mat, ctx

from xentbench.reference import linear
from xentbench.suites.catalog import cases

CASE = "linear_cross_entropy/linear/hundreds-128k"
GAPS = (50.0, 300.0, 640.0, 660.0, 700.0, 740.0, 750.0, 1000.0)


def _arb_logits(x: np.ndarray, w: np.ndarray) -> list[list]:
    product = arb_mat(x.tolist()) * arb_mat(w.T.tolist())
    return [[product[i, j] for j in range(product.ncols())] for i in range(product.nrows())]


def _classes(z_mid: np.ndarray, labels: np.ndarray) -> list[int]:
    """The classes whose dW rows are checked (see the module docstring)."""
    chosen = set(labels.tolist())
    for row in z_mid:
        top = row.max()
        chosen |= {int(row.argmax()), int(row.argmin())}
        chosen |= {int(np.abs(row - (top - gap)).argmin()) for gap in GAPS}
    chosen |= set(np.random.default_rng(0).integers(0, z_mid.shape[1], 3).tolist())
    return sorted(chosen)


def _rounded(ball) -> float:
    low, high = float(ball.lower()), float(ball.upper())
    assert low == high, f"the Arb ball {ball} does not decide its float64 rounding"
    return low


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_hundreds_128k_grad_weight_and_loss_against_arb(dtype):
    hidden, labels, options = cases.find(CASE).linear_inputs(dtype, 0)
    x = hidden.astype(np.float64)
    w = np.asarray(options["weight"]).astype(np.float64)
    with ctx.workprec(300):
        z = _arb_logits(x, w)
        lse = []
        for row in z:
            total = arb(0)
            for value in row:
                total += value.exp()
            lse.append(total.log())
        z_mid = np.array([[float(v) for v in row] for row in z])
        assert np.abs(z_mid).max() > 500  # the case is what it says: logits in the hundreds
        classes = _classes(z_mid, labels)
        expected = np.empty((len(classes), x.shape[1]))
        for a, j in enumerate(classes):
            g = [(z[i][j] - lse[i]).exp() - int(j == labels[i]) for i in range(len(x))]
            for k in range(x.shape[1]):
                ball = sum((g[i] * float(x[i, k]) for i in range(len(x))), arb(0))
                expected[a, k] = _rounded(ball)
        loss = [_rounded(lse[i] - z[i][labels[i]]) for i in range(len(x))]
    grad_weight = linear.linear_exact("grad_weight", hidden, labels, options)
    proven = grad_weight.proven[classes]
    got = grad_weight.hi[classes]
    np.testing.assert_array_equal(got[proven], expected[proven])  # correctly rounded
    # Unproven: only classes below e^-746 in some row (DEEP: a probability there is bounded by
    # E_LOW = 2^-1074, not evaluated); the centre returned is within that bound of the truth.
    gaps = z_mid.max(axis=1, keepdims=True) - z_mid[:, classes]
    unproven_rows = ~proven.all(axis=1)
    assert (gaps.max(axis=0)[unproven_rows] > -linear.DEEP).all()
    bound = linear.E_LOW * np.abs(x).sum(axis=0) * 1.01
    assert (np.abs(got - expected)[unproven_rows] <= bound).all()
    assert proven[gaps.max(axis=0) < 740].all() and proven.sum() > 16 * len(labels)
    value = linear.linear_exact("value", hidden, labels, options)
    assert value.proven.all()
    np.testing.assert_array_equal(value.hi, loss)
    assert (expected[proven] != 0).sum() > 16  # not only underflowed zeros were compared
