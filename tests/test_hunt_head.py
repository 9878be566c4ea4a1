"""The hunt's LLM-head dimensions (softcap, temperature with z-loss, the three together, and
vocabulary-parallel shards with smoothing; ``suites.hunt.options.CONFIGS``): a from-scratch
hunt flags flawed head and sharded plugins and leaves the careful ones alone."""

from __future__ import annotations

from pathlib import Path

import pytest
from flawed import head as flawed_head
from flawed import sharded as flawed_sharded
from plugin_helpers import register_plugins

from xentbench.suites.cli import main
from xentbench.suites.judge.verdicts import FAILURES
from xentbench.suites.store.rows import load

PLUGINS = {**flawed_head.ENTRY_POINTS, **flawed_sharded.ENTRY_POINTS}


@pytest.fixture(scope="module")
def hunted_head(tmp_path_factory) -> Path:
    site = tmp_path_factory.mktemp("site")
    run_dir = tmp_path_factory.mktemp("hunt-head") / "run"
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv("XENTBENCH_CACHE", str(tmp_path_factory.mktemp("cache")))
        register_plugins(site, monkeypatch, PLUGINS, "xentbench-hunt-head")
        argv = ["hunt", "--backend", *PLUGINS, "--from-scratch", "--dtype", "float32"]
        argv += ["--quantity", "value", "grad", "--budget-s", "1", "--out", str(run_dir)]
        status = main(argv)
    assert status == 0
    return run_dir


def _option_rows(run_dir: Path):
    rows = load([run_dir], "accuracy")
    return rows[rows["options"].fillna("") != ""]


@pytest.mark.parametrize(
    ("implementation", "configuration"),
    [
        ("sharded_flawed:sum-reduced-twice", "shards 3"),
        ("sharded_flawed:smoothing-over-local-v", "shards 3"),
        ("head_flawed:z-loss-grad-without-2", "z-loss"),
        ("head_flawed:backward-without-1-over-T", "temperature"),
        ("head_flawed:backward-without-sech2", "softcap 30"),
    ],
)
def test_the_hunt_flags_flawed_head_plugins(hunted_head, implementation, configuration):
    rows = _option_rows(hunted_head)
    mine = rows[rows["implementation"] == implementation]
    failing = mine[mine["verdict"].isin(FAILURES)]
    assert not failing.empty, mine[["verdict", "message"]]
    assert failing["message"].str.contains(configuration).any(), failing["message"].tolist()


def test_the_hunt_leaves_the_careful_head_plugins_alone(hunted_head):
    rows = _option_rows(hunted_head)
    careful = rows[rows["backend"].isin(["head_careful", "sharded_careful"])]
    assert set(careful["backend"]) == {"head_careful", "sharded_careful"}
    assert not careful["verdict"].isin(FAILURES).any(), careful[["verdict", "message"]]
