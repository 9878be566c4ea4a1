"""``nats_error``: the largest |got - exact| of a log-probability-valued output, in nats,
against truths written out here with mpmath; stored, reported, and absent from older runs."""

from __future__ import annotations

import json
import math

import mpmath
import numpy as np
import pandas as pd
import pytest
from sample_helpers import EVERY_CASE, SAMPLE, sample_copy

from xentbench.reference import exact
from xentbench.suites.cli import main
from xentbench.suites.judge.measure import evaluate
from xentbench.suites.report.build import build_report
from xentbench.suites.report.nats import is_sampled_token_row, worst_nats_table
from xentbench.suites.store.rows import RowWriter, load
from xentbench.suites.store.schema import ACCURACY_SCHEMA

mpmath.mp.dps = 40


def _log_softmax(row) -> list[mpmath.mpf]:
    values = [mpmath.mpf(float(v)) for v in row]
    lse = mpmath.log(mpmath.fsum(mpmath.exp(v) for v in values))
    return [v - lse for v in values]


def _largest_gap(got: np.ndarray, truth: list[mpmath.mpf]) -> float:
    """max_i |got_i - truth_i| in mpmath, as float."""
    return float(max(abs(mpmath.mpf(float(g)) - t) for g, t in zip(got, truth, strict=True)))


def test_log_softmax_nats_error_is_the_largest_absolute_error():
    logits = np.array([[0.0, 1.0, 2.0, -3.0]])
    truth = _log_softmax(logits[0])
    # Perturbations in nats: the largest (2e-6) sits on the element of largest magnitude.
    got = np.array([[float(t) for t in truth]]) + np.array([[3e-7, 0.0, -1e-7, 2e-6]])
    result = evaluate("log_softmax", "value", "float64", logits, None, got,
                      exact("log_softmax", logits))  # fmt: skip
    expected = _largest_gap(got[0], truth)
    assert expected == pytest.approx(2e-6, rel=1e-6)  # the hand-made gap
    assert result.nats_error == pytest.approx(expected, rel=1e-12)


def test_sparse_cross_entropy_nats_error_per_row():
    logits = np.array([[2.0, 0.0, -1.0], [0.5, 0.5, 3.0]])
    labels = np.array([0, 2])
    truth = [-_log_softmax(row)[k] for row, k in zip(logits, labels, strict=True)]
    got = np.array([float(truth[0]) - 4e-9, float(truth[1]) + 1e-9])
    result = evaluate("sparse_softmax_cross_entropy", "value", "float64", logits, labels, got,
                      exact("sparse_softmax_cross_entropy", logits, labels))  # fmt: skip
    assert result.nats_error == pytest.approx(_largest_gap(got, truth), rel=1e-12)
    assert result.nats_error == pytest.approx(4e-9, rel=1e-6)


def test_nats_error_is_nan_where_not_applicable_and_inf_for_a_wrong_kind():
    logits = np.array([[0.0, 1.0, 2.0]])
    softmax = exact("softmax", logits)
    assert math.isnan(
        evaluate("softmax", "value", "float64", logits, None, softmax.hi, softmax).nats_error
    )
    grad = exact("log_softmax", logits, None, "grad")
    assert math.isnan(
        evaluate("log_softmax", "grad", "float64", logits, None, grad.hi, grad).nats_error
    )
    value = exact("log_softmax", logits)
    broken = value.hi.copy()
    broken[0, 1] = np.nan
    assert evaluate("log_softmax", "value", "float64", logits, None, broken, value).nats_error == (
        math.inf
    )


def test_check_json_carries_the_nats_error(tmp_path, capsys):
    logits = np.array([[1.5, -0.25, 0.75, 3.0]], dtype=np.float32)
    paths = tmp_path / "x.npy", tmp_path / "y.npy"
    np.save(paths[0], logits)
    np.save(paths[1], np.array([2]))
    argv = ["check", "--op", "sparse_softmax_cross_entropy", "--logits", str(paths[0])]
    argv += ["--labels", str(paths[1]), "--backend", "torch", "--format", "json"]
    assert main(argv) == 0
    records = json.loads(capsys.readouterr().out)
    by_quantity = {
        r["quantity"]: r for r in records if r["implementation"] == "torch:F.cross_entropy"
    }
    truth = -_log_softmax(logits[0])[2]
    value = by_quantity["value"]  # one row: its only element is the worst
    assert value["nats_error"] == pytest.approx(float(abs(mpmath.mpf(value["got"]) - truth)))
    assert math.isnan(by_quantity["grad"]["nats_error"])


def _row(implementation: str, dtype: str, nats: float, **values) -> dict:
    row = {
        "run_id": "r",
        "host": "h",
        "backend": implementation.split(":")[0],
        "implementation": implementation,
        "op": "sparse_softmax_cross_entropy",
        "dtype": dtype,
        "quantity": "value",
        "verdict": "pass",
        "options": "",
        "nats_error": nats,
    }
    return {**row, **values}


def test_report_table_takes_the_worst_per_implementation_and_dtype():
    rows = pd.DataFrame(
        [
            _row("torch:F.cross_entropy", "float32", 1e-7),
            _row("torch:F.cross_entropy", "float32", 3e-6, options="reduction=mean"),
            _row("torch:F.cross_entropy", "float16", 2e-3, options="ignore_index=-100"),
            _row("torch:torch.log_softmax", "float32", 5e-7, op="log_softmax"),
        ]
    )
    table = worst_nats_table(rows).set_index("implementation")
    assert table.loc["torch:F.cross_entropy", "float32"] == "3e-06"
    assert table.loc["torch:F.cross_entropy", "float16"] == "0.002"
    assert table.loc["torch:torch.log_softmax", "float16"] == ""
    sampled = rows[rows.apply(is_sampled_token_row, axis=1)]
    assert sampled["nats_error"].tolist() == [1e-7, 2e-3]  # no mean, no log_softmax


def test_nats_error_is_stored_and_read_back(tmp_path):
    writer = RowWriter(tmp_path, "accuracy", "torch")
    row = {name: None for name in ACCURACY_SCHEMA.names}
    key = {"implementation": "torch:F.cross_entropy", "case_id": "c", "quantity": "value"}
    writer.write({**row, **key, "dtype": "float32", "device": "cpu", "mode": "eager",
                  "nats_error": 2.5e-7})  # fmt: skip
    writer.close()
    assert load([tmp_path], "accuracy")["nats_error"].tolist() == [2.5e-7]


# One worker runs the committed sample's tests in turn: the exact values the first computes
# (reference cache) are read back by the next instead of computed on both workers at once.
@pytest.mark.xdist_group("committed-sample")
@pytest.mark.parametrize("every_case", EVERY_CASE)
def test_the_committed_sample_run_still_loads_and_reports(tmp_path, every_case):
    accuracy = load([SAMPLE], "accuracy")  # the whole sample, read only
    assert len(accuracy) > 0 and accuracy["nats_error"].notna().any()
    # The fast tier's report: every backend on the benign, special and soft-label cases.
    families = frozenset({"benign", "special", "soft_labels"})
    run = sample_copy(tmp_path / "sample", every_case, families)
    build_report([run], tmp_path / "report")
    text = (tmp_path / "report" / "report.md").read_text()
    assert "Log-probability error in nats" in text
