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
from xentbench.suites.cli import main
from xentbench.suites.store.rows import load


def _run(out: Path, *cases: str) -> pd.DataFrame:
    arguments = ["run", "--suite", "accuracy", "--backend", "careful", "--out", str(out)]
    assert main(arguments + (["--cases", *cases] if cases else [])) == 0
    return load([out], "accuracy")


def _flagged_on_finite_inputs(rows: pd.DataFrame) -> pd.DataFrame:
    flagged = rows[rows["verdict"].isin(["inaccurate", "wrong", "error"])]
    return flagged[flagged.apply(has_finite_inputs, axis=1)]


def test_careful_backend_is_registered_as_a_baseline_plugin_with_every_logits_op():
    adapter = registry.load("careful")
    implementations = adapter.implementations()
    assert {impl.op for impl in implementations} == set(CAREFUL_OPS)
    assert all(impl.baseline and impl.gradient for impl in implementations)
    assert registry.registered()["careful"][1].startswith("entry point")


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


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_careful_kernel_passes_every_finite_input_case_of_the_default_catalog(tmp_path):
    rows = _run(tmp_path / "run")
    assert (rows["verdict"] == "pass").sum() > 1000
    flagged = _flagged_on_finite_inputs(rows)
    columns = ["implementation", "case_id", "dtype", "quantity", "worst_ratio"]
    assert flagged.empty, flagged[columns]
