"""Contention detection: the rule, the retries, and a real busy process beside a real timing.

The rule and the retry logic are tested with scripted usage counters. The end-to-end tests
start a CPU-bound process of their own and pin it and the timing to the same core
(``os.sched_setaffinity``), so the timing is contended whatever else the machine is doing.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from contextlib import contextmanager

import numpy as np
import pytest
from test_timing import fake_clock

from suites import cli, store
from suites.timing import contention, harness
from suites.timing.contention import Usage, contention_reason

pinnable = pytest.mark.skipif(
    not hasattr(os, "sched_setaffinity"), reason="needs os.sched_setaffinity to share one core"
)


# --- the rule ----------------------------------------------------------------------------


def test_a_process_that_got_its_core_is_not_contended():
    assert contention_reason(Usage(1.0, 0.97, 2)) == ""
    assert contention_reason(Usage(0.2, 0.39, 0)) == ""  # two threads, nothing preempted


def test_less_than_half_a_core_is_contended():
    assert contention_reason(Usage(1.0, 0.3, 0)) == "got 30% of a core"


def test_many_involuntary_switches_are_contended_even_with_full_cpu():
    # An OpenMP team that lost one core: the other thread spins (full CPU), but is preempted.
    assert "150 involuntary context switches/s" in contention_reason(Usage(0.2, 1.5, 30))


def test_a_few_switches_in_a_short_window_are_a_kernel_thread_not_contention():
    assert contention_reason(Usage(0.02, 0.02, contention.MIN_SWITCHES - 1)) == ""


def test_an_accelerator_wait_is_not_contention():
    # The calling thread sleeps in the device synchronisation: CPU time says nothing.
    assert contention_reason(Usage(1.0, 0.05, 0), device="cuda") == ""
    assert contention_reason(Usage(1.0, 0.05, 100), device="cuda") != ""


# --- the retries ---------------------------------------------------------------------------


class ScriptedUsage:
    """``snapshot`` stand-in: each measured window (two snapshots) uses the next usage."""

    def __init__(self, windows: list[Usage]):
        self.windows = list(windows)
        self.calls = 0

    def __call__(self) -> Usage:
        self.calls += 1
        if self.calls % 2:  # the "before" snapshot of a window
            return contention.NO_USAGE
        return self.windows.pop(0) if len(self.windows) > 1 else self.windows[0]


BUSY = Usage(0.1, 0.04, 20)
IDLE = Usage(0.1, 0.1, 0)


def scripted_measure(monkeypatch, windows: list[Usage], **options) -> harness.Measurement:
    clock = fake_clock(monkeypatch, lambda i: 0.001)
    clock.sleep = lambda seconds: None
    monkeypatch.setattr(harness.contention, "snapshot", ScriptedUsage(windows))
    return harness.measure(clock.run, min_repeat_s=0.001, repeats=5, **options)


def test_a_contended_sampling_is_retried_and_the_clean_one_kept(monkeypatch):
    m = scripted_measure(monkeypatch, [BUSY, IDLE])
    assert m.retries == 1 and not m.contended
    assert m.usage == IDLE and m.repeats == 5 and "contended" not in m.note


def test_still_contended_after_the_retries_is_kept_and_flagged(monkeypatch):
    m = scripted_measure(monkeypatch, [BUSY], max_retries=2)
    assert m.retries == 2 and m.contended
    assert "contended (got 40% of a core, 200 involuntary context switches/s)" in m.summary()


def test_no_retries_when_asked_for_none(monkeypatch):
    m = scripted_measure(monkeypatch, [BUSY], max_retries=0)
    assert m.retries == 0 and m.contended


# --- a real busy process -------------------------------------------------------------------


@contextmanager
def busy_core_shared_with_this_process():
    """A CPU-bound child process and this process pinned to one and the same core."""
    core = min(os.sched_getaffinity(0))
    saved = os.sched_getaffinity(0)
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        os.sched_setaffinity(busy.pid, {core})
        os.sched_setaffinity(0, {core})
        time.sleep(0.2)  # the child is spinning by now
        yield
    finally:
        os.sched_setaffinity(0, saved)
        busy.kill()
        busy.wait()


@pytest.mark.timing
@pinnable
def test_a_timing_beside_a_busy_process_on_its_core_is_flagged():
    values = np.linspace(-4, 4, 1 << 16)
    with busy_core_shared_with_this_process():
        m = harness.measure(lambda: np.exp(values), max_retries=1)
    assert m.contended, m.usage
    assert m.retries == 1 and "contended" in m.note
    assert m.usage.involuntary_switches > 0


@pytest.mark.slow
@pytest.mark.timing
@pinnable
def test_run_flags_contended_timings_and_warns(tmp_path, capsys):
    """Through the CLI: the worker inherits the pinned core it shares with the busy process.

    Slow: the run measures the memory bandwidth and starts a worker on that shared core.
    """
    run_dir = tmp_path / "run"
    argv = ["run", "--suite", "timing", "--backend", "numpy", "--impl", "numpy:stable.softmax"]
    argv += ["--mode", "eager", "--shapes", "64x1000", "--out", str(run_dir)]
    with busy_core_shared_with_this_process():
        assert cli.main(argv) == 0
    rows = store.load([run_dir], "timing")
    assert rows["verdict"].tolist() == ["ok"]
    row = rows.iloc[0]
    assert bool(row["contended"]) and row["retries"] == 2 and "contended" in row["message"]
    assert len(row["times_s"]) == row["repeats"] >= harness.MIN_REPEATS
    assert "1 of 1 timings were measured while other processes took the CPU" in (
        capsys.readouterr().err.replace("\n", " ")
    )
