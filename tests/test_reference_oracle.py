"""The exact reference against an independent oracle and published values.

mpmath (not the reference's python-flint) evaluates the textbook formulas on random and
adversarial rows; TensorFlow's documented examples and hand-derived extremes complete the check.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
from mpmath_oracle import mismatch, oracle_row, oracle_sigmoid
from reference_helpers import FAMILY_IDS, INF, SIGMOID_CE, SOFTMAX_FAMILY, _op_labels

from xentbench import reference


def _random_rows(scale: float, classes: int, seed: int) -> np.ndarray:
    """Four rows: one with a masked class, one with a tie at the max, integers, float32 values."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(4, classes)) * scale
    if classes > 1:
        x[0, -1] = -INF
        x[1, 0] = x[1, 1] = x[1].max()
    x[2] = np.round(x[2])
    x[3] = x[3].astype(np.float32)
    return x


ADVERSARIAL = {
    "dominant": [[40, 0, -1], [800, 0, 0], [1e4, 0, -1e4], [37, 0, 36.9]],
    "tails-e700": [
        [0, -700, -700.5, -650.1],
        [0, -649.9, -701, -745.3],
        [5, 5 - 745.1, -795, -INF],
        [0, -709.8, -744.4, -746.1],
    ],
    "tails-e760": [
        [0, -760, -760, -760],
        [0, -762.9, -763.1, -1000],
        [1, -759.5, -764, -800],
        [0, -0.5, -761, -763],
    ],
    "near-ties": [
        [1, 1 + 2**-52, 1 - 2**-53, 1],
        [0, 0, 0, 0],
        [-1000, -1000.5, -1000, -INF],
        [1e-300, -1e-300, 0, 5e-324],
    ],
    # log S near e^-745.13 = 2^-1075: log_softmax at the max rounds to -0 or -2^-1074.
    "underflow-edge": [
        [0, -745.12, -INF, -INF],
        [0, -745.14, -INF, -INF],
        [0, -746, -746, -746],
        [0, -744.44, -800, -745.5],
    ],
    "huge": [[3e38, -3e38, 0], [1.7e308, 1.7e308, -1.7e308], [2.0**1000, 2.0**1000 - 2.0**950, 0]],
}


def _groups() -> dict[str, np.ndarray]:
    groups = {}
    for seed, (scale, classes) in enumerate(
        (s, c) for s in (1, 10, 100, 700) for c in (1, 2, 5, 40)
    ):
        groups[f"scale{scale}-C{classes}"] = _random_rows(scale, classes, seed)
    groups.update({name: np.array(rows, dtype=np.float64) for name, rows in ADVERSARIAL.items()})
    return groups


GROUPS = _groups()


def _labels(x: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Soft labels (normalised, scaled, signed; 0 on masked classes) and valid sparse labels."""
    rng = np.random.default_rng(seed)
    rows, classes = x.shape
    soft = rng.dirichlet(np.ones(classes), size=rows)
    soft[1::3] *= 2.5
    soft[2::3] = rng.uniform(-1, 2, size=soft[2::3].shape)
    live = x != -INF
    soft = np.where(live, soft, 0.0)
    sparse = rng.integers(0, classes, size=rows)
    sparse = np.where(live[np.arange(rows), sparse], sparse, np.argmax(live, axis=1))
    return soft, sparse


@functools.cache
def _group_truths(name: str):
    x = GROUPS[name]
    soft, sparse = _labels(x, seed=len(name))
    truths = [oracle_row(x[r], soft[r], int(sparse[r])) for r in range(len(x))]
    return x, soft, sparse, truths


@pytest.mark.parametrize(("op", "quantity"), SOFTMAX_FAMILY, ids=FAMILY_IDS)
@pytest.mark.parametrize("group", list(GROUPS))
def test_softmax_family_matches_mpmath_oracle(group, op, quantity):
    x, soft, sparse, truths = _group_truths(group)
    got = reference.exact(op, x, _op_labels(op, soft, sparse), quantity)
    hi, lo = got.hi.reshape(len(x), -1), got.lo.reshape(len(x), -1)
    failures = []
    for row, row_truths in enumerate(truths):
        for index, truth in enumerate(row_truths[(op, quantity)]):
            problem = mismatch(float(hi[row, index]), float(lo[row, index]), truth)
            if problem:
                failures.append(f"row {row} {x[row].tolist()[:6]} [{index}]: {problem}")
    assert not failures, f"{op} {quantity} on {group}:\n" + "\n".join(failures[:8])


SIGMOID_LABELS = [0.0, 1.0, 0.3, -0.5, 1.5, 0.5, 2.0**-54, 1 - 2.0**-53]
SIGMOID_SPECIAL = [0.0, -0.0, 5e-324, 1e-300, 2.0**-60, 36.7, 650, 700, 745.2, 763.5, 800, 2e4]


def _sigmoid_inputs(name: str) -> tuple[np.ndarray, np.ndarray]:
    if name == "special":
        x = np.array([s * v for v in SIGMOID_SPECIAL for s in (1, -1)])
        return np.repeat(x, len(SIGMOID_LABELS)), np.tile(SIGMOID_LABELS, len(x))
    scale = float(name.removeprefix("scale"))
    rng = np.random.default_rng(int(scale))
    count = 24 if scale > 1000 else 64
    x = rng.normal(size=count) * scale
    z = np.where(np.arange(count) % 2, rng.choice(SIGMOID_LABELS, count), rng.uniform(-1, 2, count))
    return x, z


@pytest.mark.parametrize("quantity", ["value", "grad"])
@pytest.mark.parametrize(
    "inputs", ["scale1", "scale10", "scale100", "scale700", "scale1e4", "special"]
)
def test_sigmoid_cross_entropy_matches_mpmath_oracle(inputs, quantity):
    x, z = _sigmoid_inputs(inputs)
    got = reference.exact(SIGMOID_CE, x, z, quantity)
    failures = []
    for i in range(len(x)):
        problem = mismatch(float(got.hi[i]), float(got.lo[i]), oracle_sigmoid(quantity, x[i], z[i]))
        if problem:
            failures.append(f"x={x[i]!r} z={z[i]!r}: {problem}")
    assert not failures, "\n".join(failures[:8])


# --- published and hand-derived values ------------------------------------------------------


def test_softmax_matches_tensorflow_documentation_example():
    # tf.nn.softmax([0.1, 0.3, 0.5, 0.9]) in the TensorFlow API docs, printed to 8 decimals.
    got = reference.softmax(np.array([0.1, 0.3, 0.5, 0.9]))
    assert np.round(got, 8).tolist() == [0.16838508, 0.205666, 0.25120102, 0.37474789]


def test_softmax_cross_entropy_matches_tensorflow_documentation_example():
    # tf.nn.softmax_cross_entropy_with_logits docs: logits [[4, 2, 1], [0, 5, 1]], labels
    # [[1, 0, 0], [0, .8, .2]] -> [0.16984604, 0.82474494] in float32; the exact float64 values
    # (mpmath at 300 bits: log(e^4 + e^2 + e) - 4 and log(1 + e^5 + e) - .8 * 5 - .2 * 1).
    got = reference.softmax_cross_entropy(
        np.array([[4.0, 2, 1], [0, 5, 1]]), np.array([[1.0, 0, 0], [0, 0.8, 0.2]])
    )
    assert got.tolist() == [0.16984601955628564, 0.8247448901388227]
    np.testing.assert_allclose(got.astype(np.float32), [0.16984604, 0.82474494], rtol=2e-7)


def test_logits_of_plus_minus_1e4_give_exact_finite_answers():
    # e^-20000 ~ 2^-28854 is far below an ULP of anything here and below float64's range.
    x = np.array([[1e4, -1e4]])
    assert reference.logsumexp(x).tolist() == [1e4]  # 1e4 + log1p(e^-2e4)
    assert reference.softmax(x).tolist() == [[1.0, 0.0]]  # 1/(1 + e^-2e4), e^-2e4/(...)
    assert reference.log_softmax(x).tolist() == [[0.0, -2e4]]  # -log1p(e^-2e4), -2e4 - ...
    assert reference.sparse_softmax_cross_entropy(x, np.array([1])).tolist() == [2e4]
    assert reference.sparse_softmax_cross_entropy(x, np.array([0])).tolist() == [0.0]
    assert reference.sparse_softmax_cross_entropy_grad(x, np.array([1])).tolist() == [[1.0, -1.0]]


def test_float32_extreme_logits_give_exact_finite_answers():
    big = float(np.float32(3e38))  # exactly 300000000549775575777803994281145270272
    x = np.array([[big, -big]], dtype=np.float32)
    assert reference.logsumexp(x).tolist() == [big]
    assert reference.log_softmax(x).tolist() == [[0.0, -2 * big]]  # 2 big: exact in float64
    # (1 - z) x + log1p(e^-x) at x = big, z x + log1p(e^-x) at x = -big; the products of
    # 24-bit significands by 0.75 / 0.25 are exact; the gradients are 1 - z and -z.
    logits = np.array([big, -big], dtype=np.float32)
    labels = np.array([0.25, 0.25], dtype=np.float32)
    assert reference.sigmoid_cross_entropy(logits, labels).tolist() == [0.75 * big, 0.25 * big]
    assert reference.sigmoid_cross_entropy_grad(logits, labels).tolist() == [0.75, -0.25]
