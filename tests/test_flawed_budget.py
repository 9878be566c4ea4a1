"""Testing the tester: deliberately flawed implementations (``tests/flawed/budget.py``) must be
flagged on the default catalog, careful ones never on finite inputs.

Each backend is registered through the ``xentbench.adapters`` entry-point group and run with
the public CLI (``xentbench run --suite accuracy``) on every case of the default catalog; each
backend declares only the ops and dtypes its flaw concerns, which keeps the runs short.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from accuracy_helpers import has_finite_inputs
from flawed.budget import CAREFUL, ENTRY_POINTS, FLAWED
from plugin_helpers import register_plugins

from xentbench.suites.cli import main
from xentbench.suites.store.rows import load


@pytest.fixture
def budget_plugins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    register_plugins(tmp_path / "site", monkeypatch, ENTRY_POINTS, "xentbench-flawed-budget")


def _run(out: Path, *backends: str) -> pd.DataFrame:
    code = main(["run", "--suite", "accuracy", "--backend", *backends, "--out", str(out)])
    assert code == 0
    return load([out], "accuracy")


# Each flaw and where it shows: the verdict it must get on at least one case of the catalog.
EXPECTED = {
    "flawed-bf16-sum": "inaccurate",
    "flawed-f16-sum": "inaccurate",
    "flawed-f32-in-f64": "inaccurate",
    "flawed-f16-exp": "inaccurate",
    "flawed-rounded-lse": "inaccurate",
    "flawed-clip": "inaccurate",
    "flawed-label-wrap": "wrong",
    "flawed-zero-inf": "wrong",
    "flawed-chunk-masked": "wrong",
    "flawed-chunk-tail": "wrong",
    "flawed-online-rescale": "inaccurate",
}


@pytest.mark.slow
@pytest.mark.timeout(3600)  # ten backends on every case of the catalog
def test_every_flawed_implementation_is_flagged_and_no_careful_one_on_finite_inputs(
    budget_plugins, tmp_path
):
    assert set(EXPECTED) == set(FLAWED)
    rows = _run(tmp_path / "run", *FLAWED, *CAREFUL)
    verdicts = rows.groupby("backend")["verdict"].agg(set)
    for backend, verdict in EXPECTED.items():
        assert verdict in verdicts[backend], (backend, verdicts[backend])
    careful = rows[rows["backend"].isin(list(CAREFUL))]
    assert (careful["verdict"] == "pass").sum() > 1000
    # flagged = judged inaccurate or wrong; an `error` row is the harness's (a task killed at
    # its timeout on an oversubscribed machine), not a verdict on the numbers
    flagged = careful[careful["verdict"].isin(["inaccurate", "wrong"])]
    on_finite = flagged[flagged.apply(has_finite_inputs, axis=1)]
    assert on_finite.empty, on_finite[["implementation", "case_id", "dtype", "worst_ratio"]]


@pytest.mark.parametrize(
    ("backend", "cases", "verdict"),
    [
        ("flawed-bf16-sum", "*/size/classes-32000", "inaccurate"),
        ("flawed-f16-sum", "*/size/classes-32000", "inaccurate"),
        ("flawed-f32-in-f64", "*/benign/normal-4x16", "inaccurate"),
        ("flawed-f16-exp", "*/benign/wide-8x1000", "inaccurate"),
        ("flawed-rounded-lse", "*/benign/normal-4x16", "inaccurate"),
        ("flawed-clip", "*/extreme/dominant-label-elsewhere", "inaccurate"),
        ("flawed-label-wrap", "*/soft_labels/label-minus-one", "wrong"),
        ("flawed-zero-inf", "*/special/masked", "wrong"),
        ("flawed-chunk-masked", "*/special/masked-blocks-32000", "wrong"),
        ("flawed-chunk-tail", "*/size/classes-32000", "inaccurate"),
        ("flawed-chunk-tail", "*/benign/wide-8x1000", "wrong"),
        ("flawed-online-rescale", "*/size/classes-32000", "inaccurate"),
    ],
)
def test_flawed_implementation_is_flagged_where_its_flaw_shows(
    budget_plugins, tmp_path, backend, cases, verdict
):
    rows = _run(tmp_path / "run", backend, "--cases", cases)
    assert not rows.empty
    assert (rows["verdict"] == verdict).any(), rows[["case_id", "dtype", "verdict"]]


def test_careful_implementations_pass_typical_and_large_cases(budget_plugins, tmp_path):
    cases = ("*/benign/*", "*/size/classes-32000", "*/extreme/magnitude-1e4")
    cases += ("*/special/masked-blocks-32000",)
    rows = _run(tmp_path / "run", *CAREFUL, "--cases", *cases)
    rows = rows[rows["verdict"] != "unsupported"]  # careful-float64 has no float64
    assert len(rows) > 100
    assert (rows["verdict"] == "pass").all(), rows[rows["verdict"] != "pass"]
    assert rows["tier"].isin(["correctly rounded", "faithful"]).all()
