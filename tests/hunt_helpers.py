"""A from-scratch hunt of plugins registered by entry point, and the option rows it kept: the
set-up the hunt's option tests share."""

from __future__ import annotations

from pathlib import Path

import pytest
from plugin_helpers import register_plugins

from xentbench.suites.cli import main
from xentbench.suites.judge.verdicts import FAILURES
from xentbench.suites.store.rows import load


def hunt_plugins(tmp_path_factory, plugins: dict[str, str], name: str, quantities) -> Path:
    """The run directory of ``xentbench hunt --from-scratch --budget-s 1`` in float32 over the
    backends ``plugins`` registers (a distribution ``name``), each quantity of ``quantities``."""
    site = tmp_path_factory.mktemp("site")
    run_dir = tmp_path_factory.mktemp(name) / "run"
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv("XENTBENCH_CACHE", str(tmp_path_factory.mktemp("cache")))
        register_plugins(site, monkeypatch, plugins, f"xentbench-{name}")
        argv = ["hunt", "--backend", *plugins, "--from-scratch", "--dtype", "float32"]
        argv += ["--quantity", *quantities, "--budget-s", "1", "--out", str(run_dir)]
        status = main(argv)
    assert status == 0
    return run_dir


def option_rows(run_dir: Path):
    """The rows the hunt kept for option configurations."""
    rows = load([run_dir], "accuracy")
    return rows[rows["options"].fillna("") != ""]


def assert_flagged(run_dir: Path, implementation: str, configuration: str) -> None:
    """``implementation`` failed on a batch of the configuration whose name holds
    ``configuration``."""
    rows = option_rows(run_dir)
    mine = rows[rows["implementation"] == implementation]
    failing = mine[mine["verdict"].isin(FAILURES)]
    assert not failing.empty, mine[["verdict", "message"]]
    assert failing["message"].str.contains(configuration).any(), failing["message"].tolist()


def assert_passed(run_dir: Path, backends: set[str]) -> None:
    """Every option row of ``backends`` (all present) passes."""
    rows = option_rows(run_dir)
    careful = rows[rows["backend"].isin(backends)]
    assert set(careful["backend"]) == backends
    assert not careful["verdict"].isin(FAILURES).any(), careful[["verdict", "message"]]
