"""Contention detection: the rule, the retries, and a real busy process beside a real timing.

The rule and the retry logic are tested with scripted usage counters. The end-to-end tests
start a CPU-bound process of their own and pin it and the timing to the same core
(``os.sched_setaffinity``), so the timing is contended whatever else the machine is doing.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import time
from contextlib import contextmanager

import numpy as np
import pytest
from test_timing import fake_clock

from xentbench.suites import cli
from xentbench.suites.store.rows import load
from xentbench.suites.timing import contention, harness
from xentbench.suites.timing.contention import Usage, contention_reason, run_queue_wait

pinnable = pytest.mark.skipif(
    not hasattr(os, "sched_setaffinity"), reason="needs os.sched_setaffinity to share one core"
)


# --- the rule ----------------------------------------------------------------------------

TICK = contention._TICK_S


def test_a_process_that_got_its_core_is_not_contended():
    assert contention_reason(Usage(1.0, 0.97, 2, 1.0, 2)) == ""
    assert contention_reason(Usage(0.2, 0.39, 0, 0.4, 2)) == ""  # two threads, nothing else


def test_our_own_thread_pool_preempting_itself_is_not_contended():
    # An OpenMP team on an idle machine: hundreds of involuntary switches per second, two
    # full cores, and the cores' busy time is ours alone (the 293-of-620 false alarms).
    assert contention_reason(Usage(0.2, 0.4, 120, 0.4 + TICK, 2)) == ""


def test_other_processes_on_our_cores_are_contended():
    # A competitor's fair share of one of our two cores: half a core over the window.
    assert contention_reason(Usage(1.0, 1.5, 300, 2.0, 2)) == "other processes used 0.50 of a core"


def test_other_processes_within_the_tick_granularity_are_not_counted():
    # A 40 ms window: two cores' counters and our own are uncertain by three 10 ms ticks.
    slack = 3 * TICK
    wall = 0.04
    just_under = contention.MAX_OTHERS_SHARE * wall + slack - 1e-9
    assert contention_reason(Usage(wall, wall, 0, wall + just_under, 2)) == ""
    assert contention_reason(Usage(wall, wall, 0, wall + just_under + 2e-9, 2)) != ""


def test_less_than_half_a_core_is_contended_even_where_others_cannot_be_measured():
    assert contention_reason(Usage(1.0, 0.3, 0)) == "got 30% of a core"  # no /proc/stat
    assert contention_reason(Usage(1.0, 0.98, 500)) == ""  # switches alone never flag


def test_an_accelerator_wait_is_not_contention_but_others_on_our_cores_are():
    # The calling thread sleeps in the device synchronisation: its CPU share says nothing.
    assert contention_reason(Usage(1.0, 0.05, 0, 0.06, 2), device="cuda") == ""
    assert contention_reason(Usage(1.0, 0.05, 0, 1.05, 2), device="cuda") != ""


def test_waiting_for_a_cpu_is_recorded_but_does_not_flag_alone():
    # JAX on an idle 2-core VM: its threads waited half the window (waking a halted virtual
    # CPU), nobody else ran.
    idle_jax = Usage(0.05, 0.06, 40, 0.06, 2, waited_s=0.03)
    assert contention_reason(idle_jax) == ""
    assert (Usage(1.0, 1.0, 0, 1.0, 2, 0.5) - Usage(0.5, 0.5, 0, 0.5, 2, 0.2)).waited_s == 0.3


def test_a_fast_op_is_sampled_for_at_least_the_minimum_window():
    m = harness.measure(lambda: None, max_retries=0)
    assert m.usage.wall_s >= harness.MIN_WINDOW_S


def test_the_window_is_filled_on_the_clock_when_the_sizing_repeat_was_preempted():
    """The repeat count is sized from one repeat; a preempted one (here: slept in) looks long,
    so too few repeats would follow: sampling goes on until the window has passed."""
    calls = itertools.count()

    def run() -> None:
        if next(calls) == 1 + harness.WARMUP_CALLS:  # the first call of the sizing repeat
            time.sleep(0.75 * harness.MIN_WINDOW_S)

    m = harness.measure(run, max_retries=0)
    assert m.usage.wall_s >= harness.MIN_WINDOW_S
    assert m.repeats > harness.MIN_REPEATS  # the count alone would have stopped at 3


def test_run_queue_wait_sums_the_threads_schedstat():
    assert run_queue_wait(["236105 50430 2\n", "1000 2000000000 7\n"]) == 2.00005043
    assert run_queue_wait([]) is None


def test_usage_windows_subtract_and_pool():
    start, end = Usage(10.0, 5.0, 7, 100.0, 2), Usage(10.5, 5.4, 9, 100.9, 2)
    window = end - start
    assert window.others_s == pytest.approx(0.5) and window.cores == 2
    pooled = contention.NO_USAGE + window + window
    assert pooled.wall_s == pytest.approx(1.0) and pooled.others_s == pytest.approx(1.0)
    assert (window + Usage(0.1, 0.1, 0)).others_s is None  # one window unmeasured: unknown


# --- /proc/stat -----------------------------------------------------------------------------

PROC_STAT = """cpu  1660191 7 175199 376919 2920 3 682 2537 11 0
cpu0 758115 2 83008 265130 1196 1 62 1271 5 0
cpu1 902076 5 92191 111789 1724 2 620 1266 6 0
intr 123 4 5
ctxt 99
btime 1700000000
"""


def test_busy_seconds_sum_user_nice_system_irq_softirq_steal_of_the_wanted_cpus():
    cpu0 = 758115 + 2 + 83008 + 1 + 62 + 1271  # idle, iowait and guest left out
    cpu1 = 902076 + 5 + 92191 + 2 + 620 + 1266
    assert contention.busy_seconds(PROC_STAT, {0}) == pytest.approx(cpu0 * TICK)
    assert contention.busy_seconds(PROC_STAT, {0, 1}) == pytest.approx((cpu0 + cpu1) * TICK)
    assert contention.busy_seconds(PROC_STAT, None) == pytest.approx((cpu0 + cpu1) * TICK)


def test_unreadable_proc_stat_gives_no_busy_time():
    assert contention.busy_seconds(PROC_STAT, {0, 5}) is None  # a CPU it does not list
    assert contention.busy_seconds("cpu  1 2 3\ncpuX 1 2 3 4 5 6 7 8\n", None) is None
    assert contention.busy_seconds("", None) is None


def test_a_snapshot_reads_this_machine_when_it_can():
    now = contention.snapshot()
    if os.path.exists("/proc/stat") and hasattr(os, "sched_getaffinity"):
        assert now.cores == len(os.sched_getaffinity(0)) and now.cores_busy_s > 0
    else:
        assert now.cores_busy_s is None


# --- the retries ---------------------------------------------------------------------------


class ScriptedUsage:
    """``snapshot`` stand-in: each measured window (two snapshots) uses the next usage."""

    def __init__(self, windows: list[Usage]):
        self.windows = list(windows)
        self.calls = 0

    def __call__(self) -> Usage:
        self.calls += 1
        if self.calls % 2:  # the "before" snapshot of a window: counters at zero
            return Usage(0.0, 0.0, 0, 0.0, 2)
        return self.windows.pop(0) if len(self.windows) > 1 else self.windows[0]


BUSY = Usage(0.1, 0.04, 20, 0.2, 2)
IDLE = Usage(0.1, 0.1, 0, 0.1, 2)


def scripted_measure(monkeypatch, windows: list[Usage], **options) -> harness.Measurement:
    clock = fake_clock(monkeypatch, lambda i: 0.001)
    clock.sleep = lambda seconds: None
    monkeypatch.setattr(harness.contention, "snapshot", ScriptedUsage(windows))
    return harness.measure(clock.run, min_repeat_s=0.001, repeats=5, min_window_s=0, **options)


def test_a_contended_sampling_is_retried_and_the_clean_one_kept(monkeypatch):
    m = scripted_measure(monkeypatch, [BUSY, IDLE])
    assert m.retries == 1 and not m.contended
    assert m.usage == IDLE and m.repeats == 5 and "contended" not in m.note


def test_still_contended_after_the_retries_is_kept_and_flagged(monkeypatch):
    m = scripted_measure(monkeypatch, [BUSY], max_retries=2)
    assert m.retries == 2 and m.contended
    assert "contended (other processes used 1.60 of a core, got 40% of a core)" in m.summary()


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
    if m.usage.others_s is not None:  # Linux: the competitor's time on the shared core
        assert "other processes used" in m.note, m.note


@pytest.mark.slow
@pytest.mark.timing
@pinnable
def test_run_flags_contended_timings_and_warns(tmp_path, capsys):
    """Through the CLI: the worker inherits the pinned core it shares with the busy process.

    Slow: the run measures the memory bandwidth and starts a worker on that shared core.
    """
    run_dir = tmp_path / "run"
    argv = ["run", "--suite", "timing", "--backend", "numpy", "--impl", "numpy:stable.softmax"]
    argv += ["--mode", "eager", "--shapes", "64x1000", "--repeat-runs", "1", "--out", str(run_dir)]
    with busy_core_shared_with_this_process():
        assert cli.main(argv) == 0
    rows = load([run_dir], "timing")
    assert rows["verdict"].tolist() == ["ok"]
    row = rows.iloc[0]
    assert bool(row["contended"]) and row["retries"] == 2 and "contended" in row["message"]
    assert len(row["times_s"]) == row["repeats"] >= harness.MIN_REPEATS
    assert "1 of 1 timings were measured while other processes took the CPU" in (
        capsys.readouterr().err.replace("\n", " ")
    )
