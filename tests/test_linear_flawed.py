"""Through the public CLI, the accuracy suite flags the fused-head bugs of tests/flawed/linear.py
and passes the careful float32 composition (NumPy here, torch's F.linear + F.cross_entropy too)."""

from __future__ import annotations

import pandas as pd
import pytest
from plugin_helpers import register_plugins

from xentbench.suites.catalog.cases import find
from xentbench.suites.cli import main
from xentbench.suites.store.rows import load

CASES = ["linear_cross_entropy/linear/confident", "linear_cross_entropy/linear/normal"]


def _run(tmp_path, monkeypatch, backend: str, impl: str, cases: list[str]) -> pd.DataFrame:
    from flawed.linear import ENTRY_POINTS

    register_plugins(tmp_path / "site", monkeypatch, ENTRY_POINTS, "xentbench-flawed-linear")
    out = tmp_path / "run"
    args = ["run", "--suite", "accuracy", "--backend", backend, "--op", "linear_cross_entropy"]
    args += ["--dtype", "float32", "--impl", impl, "--cases", *cases, "--out", str(out)]
    assert main(args) == 0
    return load([out], "accuracy")


def _verdicts(rows: pd.DataFrame, implementation: str) -> dict[tuple[str, str], str]:
    mine = rows[rows["implementation"] == implementation]
    return {(r.case_id.split("/")[-1], r.quantity): r.verdict for r in mine.itertuples()}


def test_true_class_gradient_rounded_to_bfloat16_is_flagged(tmp_path, monkeypatch):
    rows = _run(tmp_path, monkeypatch, "flawed-linear", "flawed-linear:*", CASES)
    flawed = _verdicts(rows, "flawed-linear:bf16-true-class-grad")
    assert flawed[("confident", "value")] == "pass"  # the forward is right
    for quantity in ("grad_hidden", "grad_weight"):
        assert flawed[("confident", quantity)] == "inaccurate"
    careful = _verdicts(rows, "flawed-linear:careful")
    assert set(careful.values()) == {"pass"}, careful


def test_logits_saved_in_bfloat16_for_the_backward_are_flagged(tmp_path, monkeypatch):
    cases = ["linear_cross_entropy/linear/offset-1000"]
    rows = _run(tmp_path, monkeypatch, "flawed-linear", "flawed-linear:bf16-*", cases)
    flawed = _verdicts(rows, "flawed-linear:bf16-logits-backward")
    assert flawed[("offset-1000", "value")] == "pass"
    assert flawed[("offset-1000", "grad_hidden")] == "inaccurate"


@pytest.mark.slow
def test_torch_float32_composition_passes_every_finite_linear_case(tmp_path, monkeypatch):
    """The budget holds a plain float32 composition on finite inputs. On the non-finite cases
    (NaN and inf hidden rows) its results are judged by the edge conventions, where torch's
    backward may differ (0 * NaN in dW): findings of the accuracy suite, not this rule's."""
    pytest.importorskip("torch")
    cases = ["linear_cross_entropy/linear/*"]
    rows = _run(tmp_path, monkeypatch, "torch", "torch:F.linear+F.cross_entropy", cases)
    finite = rows[[find(case_id).generator != "non_finite" for case_id in rows["case_id"]]]
    # the LLM head's options (softcap, z-loss, temperature) are not this composition's
    declined = finite[finite["verdict"] == "unsupported"]
    assert all(find(case_id).options for case_id in declined["case_id"]), declined
    finite = finite[finite["verdict"] != "unsupported"]
    assert len(finite) >= 8 * 3
    assert set(finite["verdict"]) == {"pass"}, finite[finite["verdict"] != "pass"]


@pytest.mark.slow
def test_cut_cross_entropy_plugin_runs_through_its_entry_point(tmp_path, monkeypatch):
    pytest.importorskip("cut_cross_entropy")
    entry = {
        "cut_cross_entropy": "xentbench.adapters.cut_cross_entropy_adapter:CutCrossEntropyAdapter"
    }
    register_plugins(tmp_path / "site", monkeypatch, entry, "xentbench-cce-check")
    out = tmp_path / "run"
    args = ["run", "--suite", "accuracy", "--backend", "cut_cross_entropy", "--dtype", "float32"]
    args += ["--op", "linear_cross_entropy", "--cases", CASES[1], "--out", str(out)]
    assert main(args) == 0
    rows = load([out], "accuracy")
    cpu = rows[rows["implementation"].str.contains("torch_compile")]
    assert set(cpu["quantity"]) == {"value", "grad_hidden", "grad_weight"}
    assert set(cpu["verdict"]) == {"pass"}, cpu[["quantity", "verdict", "message"]]
