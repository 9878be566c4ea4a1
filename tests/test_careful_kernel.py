"""The careful kernel (``adapters/careful_adapter.py``) is the budget's own algorithm: it must pass
every finite-input case of the default catalog in every dtype. Where it did not, the budget (not
the kernel) would be wrong there, and the failing case and ratio would be the report."""

from __future__ import annotations

from pathlib import Path

import ml_dtypes
import numpy as np
import pandas as pd
import pytest
from accuracy_helpers import has_finite_inputs

from xentbench.adapters import registry
from xentbench.adapters.careful_adapter import CAREFUL_OPS, careful, internal_dtype
from xentbench.reference.evaluate import LINEAR_OP, OPS
from xentbench.reference.options import ACCEPTED, CROSS_ENTROPIES
from xentbench.suites.accuracy.suite import case_options
from xentbench.suites.catalog import cases
from xentbench.suites.cli import main
from xentbench.suites.findings.careful import careful_ratio
from xentbench.suites.store.rows import load


def _run(out: Path, *cases: str) -> pd.DataFrame:
    arguments = ["run", "--suite", "accuracy", "--backend", "careful", "--out", str(out)]
    assert main(arguments + (["--cases", *cases] if cases else [])) == 0
    return load([out], "accuracy")


def _flagged_on_finite_inputs(rows: pd.DataFrame) -> pd.DataFrame:
    flagged = rows[rows["verdict"].isin(["inaccurate", "wrong", "error"])]
    return flagged[flagged.apply(has_finite_inputs, axis=1)]


def test_careful_backend_is_registered_as_a_baseline_plugin_with_every_op_and_option():
    adapter = registry.load("careful")
    implementations = {impl.op: impl for impl in adapter.implementations()}
    assert set(implementations) == set(CAREFUL_OPS) == set(OPS)
    assert all(impl.baseline and impl.gradient for impl in implementations.values())
    assert registry.registered()["careful"][1].startswith("entry point")
    for op in CROSS_ENTROPIES:  # every option the reference accepts there, and forward mode
        assert set(implementations[op].options) == set(ACCEPTED[op])
        assert "jvp" in implementations[op].quantities
    assert set(implementations[LINEAR_OP].quantities) == {
        "value", "grad_hidden", "grad_weight", "grad_bias"
    }  # fmt: skip


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_sixteen_bit_softmax_is_the_float32_computation_rounded_once(dtype):
    logits = np.random.default_rng(1).normal(0, 3, (4, 300)).astype(ml_dtypes.bfloat16)
    logits = logits.astype(np.float16) if dtype == "float16" else logits
    x = logits.astype(np.float32)
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    in_float32 = e / e.sum(axis=-1, keepdims=True)
    got = careful("softmax", "value", logits, None, dtype)
    assert internal_dtype(dtype) == np.float32
    assert got.dtype == logits.dtype
    np.testing.assert_array_equal(got, in_float32.astype(logits.dtype))


def test_soft_cross_entropy_over_the_whole_range_stays_finite_where_the_truth_is():
    big = np.finfo(np.float32).max
    logits = np.array([[big, -big, 0.0]], np.float32)
    labels = np.array([[0.5, 0.25, 0.25]], np.float32)
    got = careful("softmax_cross_entropy", "value", logits, labels, "float32")
    # 0.25 (L + max) + 0.25 L with L = max: 0.5 max + 0.25 max
    np.testing.assert_allclose(got, [0.75 * float(big)], rtol=1e-6)


def test_careful_kernel_passes_typical_large_and_extreme_cases_in_every_dtype(tmp_path):
    rows = _run(tmp_path / "run", "*/benign/*", "*/size/*", "*/extreme/*", "*/sigmoid/*")
    measured = rows[rows["verdict"] != "unsupported"]
    assert set(measured["dtype"]) == {"float16", "bfloat16", "float32", "float64"}
    assert len(measured) > 400
    assert _flagged_on_finite_inputs(measured).empty


def test_a_mean_with_ignored_rows_and_smoothing_is_the_float32_computation_rounded_once():
    rng = np.random.default_rng(2)
    logits = rng.normal(0, 3, (6, 5)).astype(np.float16)
    labels = np.array([0, 4, -100, 2, -100, 1])
    options = {"reduction": "mean", "ignore_index": -100, "label_smoothing": 0.1}
    got = careful("sparse_softmax_cross_entropy", "value", logits, labels, "float16",
                  options=options)  # fmt: skip
    x = logits.astype(np.float64)  # the definition, in float64 by hand
    log_p = x - x.max(1, keepdims=True)
    log_p -= np.log(np.exp(log_p).sum(1, keepdims=True))
    kept = labels != -100
    target = np.full((6, 5), 0.1 / 5)
    target[np.flatnonzero(kept), labels[kept]] += 0.9
    truth = -(target * log_p).sum(1)[kept].sum() / kept.sum()
    assert got.dtype == np.float16 and got.shape == ()
    assert abs(float(got) - truth) <= float(np.finfo(np.float16).eps) * abs(truth)


def test_forward_mode_along_a_tangent_is_the_directional_derivative():
    rng = np.random.default_rng(3)
    logits, tangent = rng.normal(0, 2, (3, 7)), rng.normal(0, 1, (3, 7))
    got = careful("logsumexp", "jvp", logits, None, "float64", options={"tangent": tangent})
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    np.testing.assert_allclose(got, (p * tangent).sum(1), rtol=1e-14)


# One case per option kind, forward mode and the linear head (gradients w.r.t. each input).
OPTION_CASES = (
    "sparse_softmax_cross_entropy/options/llm-mean-ignore-smoothing",
    "softmax_cross_entropy/options/class-axis-1-smoothing",
    "softmax_cross_entropy/options/sample-weights-mean",
    "sparse_softmax_cross_entropy/options/class-weights-spread-mean",
    "softmax/options/tangent-normal",
    "sparse_softmax_cross_entropy/options/tangent-mean-ignore-smoothing",
    "sparse_softmax_cross_entropy/options/head-offset-cap-z-loss",
    "log_softmax/options/temperature-half",
    "linear_cross_entropy/linear/bias",
    "linear_cross_entropy/linear/padding-75pct",
)


def test_careful_kernel_passes_cases_with_options_tangents_and_the_linear_head(tmp_path):
    rows = _run(tmp_path / "run", *OPTION_CASES)
    measured = rows[rows["verdict"] != "unsupported"]
    assert set(measured["dtype"]) == {"float16", "bfloat16", "float32", "float64"}
    assert {"value", "grad", "jvp", "grad_weight", "grad_bias"} <= set(measured["quantity"])
    assert len(measured) >= 4 * (len(OPTION_CASES) + 6)
    assert (measured["verdict"] == "pass").all(), measured[measured["verdict"] != "pass"]


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_careful_kernel_passes_every_finite_input_case_of_the_default_catalog(tmp_path):
    rows = _run(tmp_path / "run")
    assert (rows["verdict"] == "pass").sum() > 1000
    flagged = _flagged_on_finite_inputs(rows)
    columns = ["implementation", "case_id", "dtype", "quantity", "worst_ratio"]
    assert flagged.empty, flagged[columns]


HEAD_LINEAR_CASES = (
    "linear_cross_entropy/linear/softcap-30-temperature-per-row",
    "linear_cross_entropy/linear/head-confident",
    "linear_cross_entropy/linear/offset-z-loss",
)


@pytest.mark.parametrize("case_id", HEAD_LINEAR_CASES)
def test_the_linear_head_under_temperature_softcap_and_z_loss_is_within_the_budget(case_id):
    """The linear op's logits under the LLM head's options, in every dtype and quantity: the
    careful kernel takes them and stays within its allowance (a comparison for every finding)."""
    case = cases.find(case_id)
    assert {"temperature", "z_loss"} & set(case_options(case_id, "float32", 0, "value"))
    for dtype in case.dtypes:
        for quantity in ("value", "grad_hidden", "grad_weight", "grad_bias"):
            ratio = careful_ratio(LINEAR_OP, case_id, dtype, 0, quantity)
            assert 0 <= ratio <= 1, (dtype, quantity, ratio)
