"""The hunt: deterministic for a seed, finds deliberately flawed plugins with no catalog to
help, leaves a careful one alone, and its rows, files and report section are usable."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from plugin_helpers import register_plugins

from xentbench.adapters.base import Call
from xentbench.adapters.numpy_adapter import NumpyAdapter
from xentbench.reference import exact
from xentbench.suites.catalog import cases, generators
from xentbench.suites.cli import main
from xentbench.suites.hunt.search import HuntSpec, hunt
from xentbench.suites.hunt.task import load_input
from xentbench.suites.judge.verdicts import FAILURES
from xentbench.suites.store.rows import load

FLAWED = {
    "flawed-hunt": "flawed.hunt:FlawedHuntAdapter",
    "careful-hunt": "flawed.hunt:CarefulHuntAdapter",
}


def _kept(found):
    scores = [*found.broken.values(), found.worst]
    return [(s.candidate.origin, s.verdict, s.ratio, s.candidate.logits.tobytes()) for s in scores]


def test_hunt_is_deterministic_for_a_seed():
    adapter = NumpyAdapter()
    call = Call(adapter.implementation("numpy:naive.log_softmax"), "float32")
    spec = HuntSpec(budget_s=600.0, max_evals=400, from_scratch=True)
    first, second = hunt(adapter, call, spec, seed=3), hunt(adapter, call, spec, seed=3)
    assert first.clock.candidates == second.clock.candidates >= 400
    assert _kept(first) == _kept(second)
    other = hunt(adapter, call, spec, seed=4)
    assert _kept(other) != _kept(first)


# The tests that read the one hunted run share a worker: it runs once, not once per worker.
HUNTED = pytest.mark.xdist_group("hunted-run")


@pytest.fixture(scope="module")
def hunted_run(tmp_path_factory) -> Path:
    """A from-scratch hunt of the flawed and careful plugins, through the public CLI."""
    site = tmp_path_factory.mktemp("site")
    run_dir = tmp_path_factory.mktemp("hunt") / "run"
    with pytest.MonkeyPatch.context() as monkeypatch:
        register_plugins(site, monkeypatch, FLAWED, "xentbench-flawed-hunt")
        argv = ["hunt", "--backend", *FLAWED, "--from-scratch", "--dtype", "float32"]
        status = main([*argv, "--budget-s", "2", "--out", str(run_dir)])
    assert status == 0
    return run_dir


def _rows(run_dir: Path):
    return load([run_dir], "accuracy")


@HUNTED
@pytest.mark.parametrize(
    ("implementation", "verdict", "evidence"),
    [
        ("flawed-hunt:float32-exp-softmax", "wrong", "max(x)="),  # overflow past 88.72
        ("flawed-hunt:rounded-lse-log_softmax", "inaccurate", "C="),
        ("flawed-hunt:wrapping-sparse", "wrong", "invalid input"),
    ],
)
def test_hunt_flags_each_flawed_implementation(hunted_run, implementation, verdict, evidence):
    rows = _rows(hunted_run)
    found = rows[(rows["implementation"] == implementation) & (rows["verdict"] == verdict)]
    assert not found.empty, rows[rows["implementation"] == implementation][["verdict", "message"]]
    text = " ".join(found["worst_input"].fillna("") + " " + found["message"].fillna(""))
    assert evidence in text
    if implementation.endswith("float32-exp-softmax"):  # exp overflows float32 past 88.72
        maxima = [float(m) for m in re.findall(r"max\(x\)=([-0-9.e+]+)", text)]
        assert max(maxima) > 88.72, text


@HUNTED
def test_hunt_does_not_flag_a_careful_implementation(hunted_run):
    rows = _rows(hunted_run)
    careful = rows[rows["backend"] == "careful-hunt"]
    assert set(careful["implementation"]) == {
        "careful-hunt:softmax",
        "careful-hunt:log_softmax",
        "careful-hunt:sparse",
    }
    assert not careful["verdict"].isin(FAILURES).any(), careful[["verdict", "message"]]
    assert (careful["worst_ratio"].dropna() <= 1).all()


@HUNTED
def test_hunted_rows_are_stored_with_their_inputs_and_exact_values(hunted_run):
    rows = _rows(hunted_run)
    assert (rows["source"] == "hunt").all()
    assert rows["case_id"].map(lambda c: bool(re.fullmatch(r"hunt/[a-z_]+/[0-9a-f]{12}", c))).all()
    row = rows[rows["implementation"] == "flawed-hunt:float32-exp-softmax"].iloc[0]
    name = row["case_id"].rsplit("/", 1)[1]
    logits = np.load(hunted_run / "hunt" / f"{name}-logits.npy")
    assert logits.shape == (1, row["n_classes"]) and logits.dtype == np.float32
    saved = np.load(hunted_run / "hunt" / f"{name}-exact.npz")
    truth = exact("softmax", logits)  # computed again, independently of the stored file
    np.testing.assert_array_equal(saved["hi"], truth.hi)
    assert row["expected"] in truth.hi
    again, labels = load_input(hunted_run, row["case_id"], "float32")
    assert labels is None and again.tobytes() == logits.tobytes()


@HUNTED
def test_report_shows_the_hunt_section(hunted_run, tmp_path):
    assert main(["report", str(hunted_run), "--out", str(tmp_path)]) == 0
    text = (tmp_path / "report.md").read_text()
    section = text[text.index("## Hunt") :]
    assert "flawed-hunt:float32-exp-softmax" in section
    assert "catalog does not contain" in section
    assert 'S("' in section  # the promotion line


@HUNTED
def test_a_hunted_input_is_promoted_by_one_declarative_line(hunted_run, tmp_path, monkeypatch):
    rows = _rows(hunted_run)
    row = rows[rows["implementation"] == "flawed-hunt:wrapping-sparse"].iloc[0]
    name = row["case_id"].rsplit("/", 1)[1]
    for kind in ("logits", "labels"):
        shutil.copy(hunted_run / "hunt" / f"{name}-{kind}.npy", tmp_path)
    monkeypatch.setattr(generators, "SAVED_DIR", tmp_path)
    case = cases.S(
        name,
        "saved",
        "hunted",
        {"logits": f"{name}-logits.npy", "labels": f"{name}-labels.npy"},
        labels="saved",
        ops=("sparse_softmax_cross_entropy",),
        dtypes=("float32",),
        batch=1,
        classes=int(row["n_classes"]),
    ).cases("hunted")[0]
    logits, labels = case.inputs("float32", seed=0)
    np.testing.assert_array_equal(logits, np.load(tmp_path / f"{name}-logits.npy"))
    np.testing.assert_array_equal(labels, np.load(tmp_path / f"{name}-labels.npy"))


def test_hunt_rejects_an_unknown_implementation(capsys):
    assert main(["hunt", "--implementation", "nosuch:softmax"]) == 2
    assert "unknown implementation 'nosuch:softmax'" in capsys.readouterr().err
