"""``xentbench check --class-axis K``: the arrays are judged as the user gives them, with the
classes on axis K, by the reference and by every implementation (torch ``[N, C, d]``, Keras and
JAX ``axis=``); expected values are written out here with mpmath, never taken from a framework."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import mpmath
import numpy as np
import pytest

from xentbench.suites.accuracy.check import CheckRequest, run_check
from xentbench.suites.cli import main
from xentbench.suites.cli.check_inputs import normalise
from xentbench.suites.cli.usage import UsageError

mpmath.mp.dps = 40

# Soft labels [1, 3, 2] with the 3 classes on axis 1: a one-hot target in each column.
KERAS_LOGITS = np.array([[[2.0, -1.0], [0.0, 0.5], [-1.0, 1.5]]], dtype=np.float32)
KERAS_LABELS = np.array([[[1.0, 0.0], [0.0, 0.0], [0.0, 1.0]]], dtype=np.float32)


def _column_losses(logits, labels, smoothing: str, classes: int) -> list[mpmath.mpf]:
    """Per column j of [3, 2] (one sample), sum_i ((1 - eps) y_ij + eps / classes) (lse_j - x_ij):
    the smoothed cross-entropy over axis 1, eps / ``classes`` the smoothing mass per class."""
    eps = mpmath.mpf(smoothing)
    losses = []
    for j in range(logits.shape[2]):
        x = [mpmath.mpf(float(v)) for v in logits[0, :, j]]
        y = [mpmath.mpf(float(v)) for v in labels[0, :, j]]
        lse = mpmath.log(mpmath.fsum(mpmath.exp(v) for v in x))
        smoothed = [(1 - eps) * t + eps / classes for t in y]
        losses.append(mpmath.fsum(s * (lse - v) for s, v in zip(smoothed, x, strict=True)))
    return losses


def _sparse_losses(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """-log softmax(x[n, :, k])[y[n, k]] per (n, k), classes on axis 1, with mpmath."""
    out = np.empty(labels.shape)
    for n, k in np.ndindex(*labels.shape):
        x = [mpmath.mpf(float(v)) for v in logits[n, :, k]]
        lse = mpmath.log(mpmath.fsum(mpmath.exp(v) for v in x))
        out[n, k] = float(lse - x[int(labels[n, k])])
    return out


def _xentbench_check(*args: str) -> list[dict]:
    result = subprocess.run(
        [sys.executable, "-m", "xentbench.suites.cli", "check", *args, "--format", "json"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout)


def _index(record: dict) -> tuple[int, ...]:
    return tuple(json.loads(record["worst_index"].replace("(", "[").replace(")", "]")))


def _column(record: dict) -> int:
    """The column (position along the last axis) of a per-column loss's worst element."""
    return _index(record)[1]


def _saved(tmp_path: Path, **arrays: np.ndarray) -> dict[str, str]:
    paths = {}
    for name, array in arrays.items():
        paths[name] = str(tmp_path / f"{name}.npy")
        np.save(paths[name], array)
    return paths


def test_the_smoothing_formula_itself():
    """The hand-written formula on a column of equal logits: every -log p is log 3."""
    flat = np.zeros((1, 3, 1))
    target = np.array([[[0.0], [1.0], [0.0]]])
    (loss,) = _column_losses(flat, target, "0.1", 3)
    assert mpmath.almosteq(loss, mpmath.log(3), 1e-35)


def test_keras_smoothing_over_the_last_axis_is_flagged_through_the_cli(tmp_path):
    paths = _saved(tmp_path, x=KERAS_LOGITS, y=KERAS_LABELS)
    records = _xentbench_check(
        "--op", "softmax_cross_entropy", "--logits", paths["x"], "--labels", paths["y"],
        "--class-axis", "1", "--label-smoothing", "0.1", "--quantity", "value",
        "--backend", "tensorflow", "torch",
    )  # fmt: skip
    truth = _column_losses(KERAS_LOGITS, KERAS_LABELS, "0.1", classes=3)
    keras_smooths_by = _column_losses(KERAS_LOGITS, KERAS_LABELS, "0.1", classes=2)
    by_name = {r["implementation"]: r for r in records}
    keras = by_name["tensorflow:keras.losses.categorical_crossentropy(from_logits=True)"]
    torch = by_name["torch:F.cross_entropy(probabilities)"]
    for record in (keras, torch):
        assert record["options"] == "label_smoothing=0.1,class_axis=1"
        assert record["expected"] == pytest.approx(float(truth[_column(record)]), rel=1e-15)
    assert keras["verdict"] in ("inaccurate", "wrong")
    # keras#23451: Keras smooths by eps / 2, the size of the last axis
    assert keras["got"] == pytest.approx(float(keras_smooths_by[_column(keras)]), rel=1e-6)
    assert torch["verdict"] == "pass"


@pytest.mark.parametrize("labelled", ["sparse", "soft"])
def test_torch_layout_n_c_d_is_judged_as_given_through_the_cli(tmp_path, labelled):
    rng = np.random.default_rng(3)
    logits = rng.standard_normal((2, 5, 7)).astype(np.float32)
    ids = rng.integers(0, 5, (2, 7))
    labels = ids if labelled == "sparse" else np.moveaxis(np.eye(5)[ids], -1, 1)
    op = "sparse_softmax_cross_entropy" if labelled == "sparse" else "softmax_cross_entropy"
    paths = _saved(tmp_path, x=logits, y=labels.astype(np.float32) if labelled == "soft" else ids)
    records = _xentbench_check(
        "--op", op, "--logits", paths["x"], "--labels", paths["y"], "--class-axis", "1",
        "--quantity", "value", "--backend", "torch",
    )  # fmt: skip
    truth = _sparse_losses(logits, ids)  # a one-hot soft label is the sparse loss
    # implementations that take no class axis (the head compositions) say so: unsupported
    records = [r for r in records if r["verdict"] != "unsupported"]
    assert records and all(r["verdict"] == "pass" for r in records)
    for record in records:
        index = _index(record)
        assert len(index) == 2  # a loss per (sample, position): the classes were axis 1
        assert record["expected"] == pytest.approx(truth[index], rel=1e-15)


def test_normalise_keeps_the_user_layout_for_another_class_axis():
    logits = np.zeros((2, 5, 7), dtype=np.float32)
    ids = np.zeros((2, 7), dtype=np.int32)
    x, y, axis = normalise("sparse_softmax_cross_entropy", logits, ids, -2)
    assert (x.shape, y.shape, y.dtype, axis) == ((2, 5, 7), (2, 7), np.int64, 1)
    # without --class-axis the classes are last: [2, 5] ids for [2, 5, 7], rows flattened
    x, y, axis = normalise("sparse_softmax_cross_entropy", logits, ids[:, :5], None)
    assert (x.shape, y.shape, axis) == ((10, 7), (10,), None)
    # the last axis named explicitly is the default layout: rows flattened, no option
    x, y, axis = normalise("softmax", logits, None, 2)
    assert (x.shape, y, axis) == ((10, 7), None, None)


@pytest.mark.parametrize(
    "op, logits_shape, labels, class_axis, named",
    [
        ("sparse_softmax_cross_entropy", (2, 5, 7), np.zeros((2, 5), int), 1, "(2, 7)"),
        ("softmax_cross_entropy", (2, 5, 7), np.zeros((2, 7, 5)), 1, "(2, 5, 7)"),
        ("softmax", (2, 5, 7), None, 3, "-3 to 2"),
        ("sigmoid_cross_entropy", (2, 5), np.zeros((2, 5)), 0, "no class axis"),
    ],
)
def test_normalise_refuses_labels_and_axes_that_do_not_fit(
    op, logits_shape, labels, class_axis, named
):
    with pytest.raises(UsageError, match=named.replace("(", r"\(").replace(")", r"\)")):
        normalise(op, np.zeros(logits_shape, np.float32), labels, class_axis)


def test_run_check_judges_softmax_over_axis_0():
    """Function level: the classes on axis 0 of [4, 3], every element against mpmath."""
    logits = np.array([[1.0, -2.0, 0.5], [3.0, 0.0, 0.25], [-1.0, 1.0, 2.0], [0.0, 0.0, -3.0]])
    x, _, axis = normalise("log_softmax", logits, None, 0)
    request = CheckRequest("log_softmax", x, None, ("torch",), ("float64",),
                           options={"class_axis": axis}, quantities=("value",))  # fmt: skip
    records = {r["implementation"]: r for r in run_check(request)}
    record = records["torch:torch.log_softmax"]
    assert record["verdict"] == "pass" and record["options"] == "class_axis=0"
    row, column = _index(record)
    column_values = [mpmath.mpf(v) for v in logits[:, column]]
    lse = mpmath.log(mpmath.fsum(mpmath.exp(v) for v in column_values))
    assert record["expected"] == pytest.approx(float(column_values[row] - lse), rel=1e-15)


def test_cli_class_axis_out_of_range_exits_2(tmp_path, capsys):
    paths = _saved(tmp_path, x=np.zeros((2, 3), np.float32))
    assert main(["check", "--op", "softmax", "--logits", paths["x"], "--class-axis", "2"]) == 2
    assert "--class-axis 2" in capsys.readouterr().err
