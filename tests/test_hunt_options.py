"""The hunt's options family (cross-entropy options in the hunt): a from-scratch hunt through
the public CLI flags each deliberately flawed option implementation of
``tests/flawed/options.py`` and leaves the careful one (extended precision, rounded once)
alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from flawed import options as flawed_options
from plugin_helpers import register_plugins

from xentbench.reference import exact
from xentbench.reference.options import canonical
from xentbench.suites.cli import main
from xentbench.suites.hunt import hunted
from xentbench.suites.judge.verdicts import FAILURES
from xentbench.suites.store.rows import load

PLUGINS = flawed_options.ENTRY_POINTS


@pytest.fixture(scope="module")
def hunted_options(tmp_path_factory) -> Path:
    site = tmp_path_factory.mktemp("site")
    run_dir = tmp_path_factory.mktemp("hunt-options") / "run"
    with pytest.MonkeyPatch.context() as monkeypatch:
        register_plugins(site, monkeypatch, PLUGINS, "xentbench-hunt-options")
        argv = ["hunt", "--backend", *PLUGINS, "--from-scratch", "--dtype", "float32"]
        status = main([*argv, "--quantity", "value", "--budget-s", "1", "--out", str(run_dir)])
    assert status == 0
    return run_dir


def _option_rows(run_dir: Path):
    rows = load([run_dir], "accuracy")
    return rows[rows["options"].fillna("") != ""]


@pytest.mark.parametrize(
    ("mistake", "configuration"),
    [
        ("mean-over-all-rows", "ignored"),
        ("smoothing-over-c-minus-1", "smoothing"),
        ("weighted-mean-over-n", "class weights"),
    ],
)
def test_hunt_flags_each_flawed_option_implementation(hunted_options, mistake, configuration):
    rows = _option_rows(hunted_options)
    mine = rows[rows["implementation"] == f"options_flawed:{mistake}"]
    failing = mine[mine["verdict"].isin(FAILURES)]
    assert not failing.empty, mine[["verdict", "message"]]
    assert failing["message"].str.contains(configuration).any(), failing["message"].tolist()


def test_hunt_does_not_flag_the_careful_option_implementation(hunted_options):
    rows = _option_rows(hunted_options)
    careful = rows[rows["backend"] == "options_careful"]
    assert len(careful) >= 5  # one row per configuration it takes
    assert not careful["verdict"].isin(FAILURES).any(), careful[["verdict", "message"]]


def test_a_hunted_option_batch_is_saved_with_its_options(hunted_options):
    rows = _option_rows(hunted_options)
    mine = rows[rows["implementation"] == "options_flawed:mean-over-all-rows"]
    row = mine[mine["verdict"] == "inaccurate"].iloc[0]
    name = row["case_id"].rsplit("/", 1)[1]
    folder = hunted_options / "hunt"
    logits = np.load(folder / f"{name}-logits.npy")
    labels = np.load(folder / f"{name}-labels.npy")
    options = hunted.load_hunted_options(hunted_options, name)
    assert canonical(options) == row["options"]
    truth = exact("sparse_softmax_cross_entropy", logits, labels, "value", **options)
    saved = np.load(folder / f"{name}-exact.npz", allow_pickle=False)
    np.testing.assert_array_equal(saved["hi"], truth.hi)
    assert float(row["expected"]) == float(truth.hi)
