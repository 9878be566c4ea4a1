"""Run directories under stress, with real processes: one writer at a time, Ctrl-C, kill -9 of
the runner or a worker at random points, resume after each, parameters that must not mix."""

from __future__ import annotations

import json
import os
import random
import signal
import time
from pathlib import Path

import pandas as pd
import pytest
from reliability_helpers import (
    CASES,
    SELECTION,
    TASKS,
    install_slowpoke,
    results,
    start,
    stored_count,
    xentbench,
)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    return install_slowpoke(tmp_path_factory.mktemp("slowpoke") / "site")


@pytest.fixture(scope="module")
def uninterrupted(site, tmp_path_factory) -> pd.DataFrame:
    """The rows of one run that nothing disturbed: what every disturbed run must end with."""
    run_dir = tmp_path_factory.mktemp("whole") / "run"
    done = xentbench(site, "run", *SELECTION, *CASES, "--out", str(run_dir))
    assert done.returncode == 0, done.stderr
    rows = results(run_dir)
    assert len(rows) == TASKS and not (rows["verdict"] == "error").any()
    return rows


def _wait_for(condition, limit_s: float = 120.0) -> None:
    deadline = time.monotonic() + limit_s
    while not condition():
        assert time.monotonic() < deadline, "the run never got there"
        time.sleep(0.1)


def _holder(run_dir: Path) -> dict:
    try:
        return json.loads((run_dir / "run.lock").read_text() or "{}")
    except (OSError, ValueError):
        return {}


@pytest.mark.slow
def test_a_second_run_into_a_locked_directory_exits_2_naming_the_holder(site, tmp_path):
    run_dir = tmp_path / "run"
    first = start(site, "run", *SELECTION, *CASES, "--out", str(run_dir), SLOWPOKE_SLEEP="0.5")
    try:
        _wait_for(lambda: _holder(run_dir).get("pid") == first.pid)
        second = xentbench(site, "run", *SELECTION, *CASES, "--out", str(run_dir))
        assert second.returncode == 2
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1 and f"pid {first.pid}" in lines[0] and "xentbench run" in lines[0]
    finally:
        first.send_signal(signal.SIGINT)
        first.wait(timeout=60)


@pytest.mark.slow
def test_ctrl_c_stops_at_once_keeps_finished_rows_and_writes_no_error_rows(
    site, tmp_path, uninterrupted
):
    run_dir = tmp_path / "run"
    args = ("run", *SELECTION, *CASES, "--out", str(run_dir), "--jobs", "1")
    # Each of the TASKS sleeps at least a second: the run would take half a minute or more. The
    # first part file is waited for by name, not by loading the store: on a loaded machine the
    # loads took so long that the run had finished (exit 0) before the SIGINT was sent.
    running = start(site, *args, SLOWPOKE_SLEEP="1.0")
    _wait_for(lambda: any((run_dir / "parts").glob("accuracy-slowpoke/part-*.parquet")))
    assert running.poll() is None, "the run ended before it could be interrupted"
    before = stored_count(run_dir)
    running.send_signal(signal.SIGINT)
    _, stderr = running.communicate(timeout=15)  # it stops well before its work is done
    assert running.returncode == 130
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1].startswith("xentbench run: interrupted")
    kept = results(run_dir)
    assert before <= len(kept) < TASKS
    assert not (kept["verdict"] == "error").any()  # no false error row for the task in flight
    resumed = xentbench(site, *args)
    assert resumed.returncode == 0, resumed.stderr
    pd.testing.assert_frame_equal(results(run_dir), uninterrupted)


def _children(pid: int) -> list[int]:
    """The worker processes of runner ``pid`` (spawned by its threads, so every task counts)."""
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(child) for child in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def _disturbed_run(site: Path, run_dir: Path, rng: random.Random, target: str) -> None:
    """One run killed with SIGKILL at a random point: the runner, or one of its workers (the
    runner then records the task in flight as a harness error and carries on)."""
    args = ("run", *SELECTION, *CASES, "--out", str(run_dir), "--jobs", "1")
    running = start(site, *args, SLOWPOKE_SLEEP="0.05")
    time.sleep(rng.uniform(0.5, 8.0))
    if target == "worker":
        _wait_for(lambda: _children(running.pid) or running.poll() is not None)
        for worker in _children(running.pid)[:1]:
            os.kill(worker, signal.SIGKILL)
    else:
        running.kill()
    running.communicate(timeout=300)


def _converges(site: Path, tmp_path: Path, seed: int, targets: list[str], expected) -> None:
    rng = random.Random(seed)
    run_dir = tmp_path / f"run-{seed}"
    for target in targets:
        _disturbed_run(site, run_dir, rng, target)
    final = xentbench(site, "run", *SELECTION, *CASES, "--out", str(run_dir))
    assert final.returncode == 0, final.stderr
    pd.testing.assert_frame_equal(results(run_dir), expected)  # key by key, value by value


@pytest.mark.slow
def test_kill_9_of_a_worker_then_of_the_runner_then_resume_loses_nothing(
    site, tmp_path, uninterrupted
):
    _converges(site, tmp_path, seed=1, targets=["worker", "runner"], expected=uninterrupted)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(2, 8))
def test_kill_9_at_random_points_over_many_seeds(site, tmp_path, uninterrupted, seed):
    rng = random.Random(seed)
    targets = [rng.choice(["worker", "runner"]) for _ in range(3)]
    _converges(site, tmp_path, seed=seed, targets=targets, expected=uninterrupted)


@pytest.mark.slow
def test_a_killed_workers_task_is_marked_as_a_harness_error_and_retried(site, tmp_path):
    from xentbench.suites.store.rows import load

    run_dir = tmp_path / "run"
    args = ("run", *SELECTION, "--cases", "softmax/benign/*", "--out", str(run_dir))
    running = start(site, *args, SLOWPOKE_SLEEP="600")  # the first task never finishes
    _wait_for(lambda: _children(running.pid) and (tmp_path / "run" / "run.json").exists())
    time.sleep(1.0)
    for worker in _children(running.pid):
        os.kill(worker, signal.SIGKILL)
    running.kill()  # its replacement would sleep too: stop the run here
    running.communicate(timeout=60)
    rows = load([run_dir], "accuracy")
    marked = rows[rows["harness_error"].notna()]
    assert len(marked) <= 1 and (marked["verdict"] == "error").all()
    assert xentbench(site, *args).returncode == 0
    rows = load([run_dir], "accuracy")
    assert rows["harness_error"].isna().all() and (rows["verdict"] == "pass").all()
    assert len(rows) == 3


@pytest.mark.slow
def test_rows_of_another_seed_or_backend_version_are_not_mixed(site, tmp_path):
    run_dir = tmp_path / "run"
    args = ("run", *SELECTION, "--cases", "softmax/benign/*", "--out", str(run_dir))
    assert xentbench(site, *args).returncode == 0
    other_seed = xentbench(site, *args, "--seed", "1")
    assert other_seed.returncode == 2
    line = other_seed.stderr.strip()
    assert "\n" not in line and "seed" in line and "0" in line and "1" in line and "--new" in line
    other_version = xentbench(site, *args, SLOWPOKE_VERSION="2.0")
    assert other_version.returncode == 2
    assert "1.0" in other_version.stderr and "2.0" in other_version.stderr
    anew = xentbench(site, *args, "--seed", "1", "--new")
    assert anew.returncode == 0, anew.stderr
    assert json.loads((run_dir / "run.json").read_text())["seed"] == 1
    assert len(list(run_dir.glob("previous-*/accuracy-slowpoke.parquet"))) == 1


class _StopAt:
    """A worker's pipe that delivers the parent's SIGTERM (``Stopped``) at the Nth task start."""

    def __init__(self, starts: int):
        self.starts = starts
        self.messages: list = []

    def send(self, message) -> None:
        self.messages.append(message)
        if message[0] == "start" and sum(m[0] == "start" for m in self.messages) == self.starts:
            from xentbench.suites.run.worker import Stopped

            raise Stopped


def test_a_stopped_worker_stores_every_row_it_finished_and_none_for_the_task_in_flight(tmp_path):
    from xentbench.suites.catalog.selection import Selection
    from xentbench.suites.run.worker import WorkerJob, work
    from xentbench.suites.store.rows import load

    selection = Selection(
        ops=("softmax",),
        dtypes=("float64",),
        implementations=("numpy:stable.softmax",),
        cases=("softmax/extreme/*",),
    )
    pipe = _StopAt(starts=5)
    work(WorkerJob("numpy", "accuracy", selection, str(tmp_path), "run", "host"), pipe)
    finished = [payload for kind, payload in pipe.messages if kind == "done"]
    rows = load([tmp_path], "accuracy")
    assert len(finished) == 4 and len(rows) == 4  # rows were pending, not yet flushed
    assert rows["verdict"].tolist() == finished
