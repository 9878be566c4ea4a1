"""The timing harness: warm-up, adaptive repetition, median with spread.

Modelled on ``torch.utils.benchmark``: ``measure`` takes a callable and returns a frozen
``Measurement``. The callable is a ``PreparedCall.run``, which by the adapter contract returns
only after the device has finished, so the timed region is exactly ``n`` calls of ``run()``
and nothing else (no input conversion, no ``to_numpy``).

Protocol: the first call is timed on its own (it includes any compilation or lazy
initialisation); a few warm-up calls follow unless that first call was slow;
``calls_per_repeat`` is found by doubling (as ``timeit.Timer.autorange`` does) until one
repeat of that many calls lasts at least ``min_repeat_s``; then ``repeats`` independent
repeats give per-call times, summarised by median, interquartile range and minimum. The total
after the first call is bounded by ``max_total_s``: a slow op gets fewer repeats (never fewer
than ``MIN_REPEATS``) and the ``Measurement`` says so in ``note``.

Contention: the CPU time of other processes on this process's cores, this process's own CPU
time and its involuntary context switches are read around the repeats
(``suites.timing.contention``). A contended sampling is thrown away and taken again (its
calls per repeat found again), at most ``max_retries`` times after a short pause; if it is
still contended it is kept, with ``contended`` set and the reason in ``note``, so a reader
never mistakes it for the op's cost.
"""

from __future__ import annotations

import functools
import gc
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from xentbench.suites.timing import contention

# Defaults sized for a whole grid on a small CPU machine: an op under ~25 ms per call costs
# 0.05-0.2 s in all, warm-up included; a slower op costs its first call plus three repeats.
# A 5 ms repeat is far above perf_counter's resolution (torch.utils.benchmark uses 0.2 ms).
DEFAULT_MIN_REPEAT_S = 0.005
DEFAULT_REPEATS = 7
DEFAULT_MAX_TOTAL_S = 0.2
WARMUP_CALLS = 2
MIN_REPEATS = 3
# The shortest sampling window: contention is read from /proc/stat's 10 ms ticks, uncertain by
# ~(cores + 1) ticks, which must stay well below a competitor's share (half a core) of the
# window (suites.timing.contention). Fast ops take more repeats to fill it.
MIN_WINDOW_S = 0.2
HIGH_VARIANCE_RATIO = 0.1
DEFAULT_MAX_RETRIES = 2
RETRY_PAUSE_S = 0.05  # lets a competitor's burst pass (doubled before each further retry)
# The calibration kernel: a fixed single-threaded NumPy op, timed beside every measurement so
# that ``compare`` can divide out a machine that is uniformly slower (suites.report.compare).
CALIBRATION_ELEMENTS = 1 << 15


@dataclass(frozen=True)
class Measurement:
    """Per-call times of one timed callable, summarised robustly."""

    median_s: float
    iqr_s: float
    min_s: float
    repeats: int
    calls_per_repeat: int
    times_s: tuple[float, ...]
    first_call_s: float
    note: str = ""
    usage: contention.Usage = contention.NO_USAGE  # what the process got during the kept repeats
    contended: bool = False
    retries: int = 0

    @property
    def compile_s(self) -> float:
        """First call minus the steady state: compilation/initialisation cost (never negative)."""
        return max(0.0, self.first_call_s - self.median_s)

    @property
    def high_variance(self) -> bool:
        """IQR above 10% of the median: the machine was noisy, so read the median with care."""
        return bool(spread_note(self.median_s, self.iqr_s))

    def summary(self) -> str:
        """One line for logs and the ``message`` column: spread warnings and budget notes."""
        return "; ".join(filter(None, [self.note, spread_note(self.median_s, self.iqr_s)]))


def spread_note(median_s: float, iqr_s: float) -> str:
    """A warning when the IQR exceeds ``HIGH_VARIANCE_RATIO`` of the median, else ""."""
    if median_s > 0 and iqr_s / median_s > HIGH_VARIANCE_RATIO:
        return f"high variance: IQR is {iqr_s / median_s:.0%} of the median"
    return ""


def _time_calls(run: Callable[[], Any], calls: int) -> float:
    """Wall time of ``calls`` back-to-back calls, garbage collection paused (as timeit does)."""
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        start = time.perf_counter()
        for _ in itertools.repeat(None, calls):
            run()
        return time.perf_counter() - start
    finally:
        if gc_was_enabled:
            gc.enable()


def _calibrate(run: Callable[[], Any], min_repeat_s: float) -> tuple[int, float]:
    """Double the call count until one repeat lasts ``min_repeat_s``: (count, its duration)."""
    calls = 1
    while True:
        elapsed = _time_calls(run, calls)
        if elapsed >= min_repeat_s:
            return calls, elapsed
        calls *= 2


def _summarise(per_call: list[float], calls: int, first_call_s: float, **extra) -> Measurement:
    q25, median, q75 = np.percentile(per_call, [25, 50, 75])
    return Measurement(
        median_s=float(median),
        iqr_s=float(q75 - q25),
        min_s=min(per_call),
        repeats=len(per_call),
        calls_per_repeat=calls,
        times_s=tuple(per_call),
        first_call_s=first_call_s,
        **extra,
    )


def _sample(run: Callable[[], Any], calls: int, count: int) -> list[float]:
    """``count`` repeats of ``calls`` calls each: per-call times."""
    return [_time_calls(run, calls) / calls for _ in range(count)]


def _fill_window(
    run: Callable[[], Any],
    calls: int,
    per_call: list[float],
    window_end: float,
    min_repeat_s: float,
) -> int:
    """More repeats until ``perf_counter`` reaches ``window_end``; the calls per repeat now.

    The repeat count was sized from one repeat, which a preemption makes look long, so the
    window is checked on the clock; a repeat found shorter than ``min_repeat_s`` (the sizing
    was fooled) doubles the calls of the next, as ``_calibrate`` would have."""
    while time.perf_counter() < window_end:
        elapsed = _time_calls(run, calls)
        per_call.append(elapsed / calls)
        if elapsed < min_repeat_s:
            calls *= 2
    return calls


def _retry_contended(
    run: Callable[[], Any],
    calls: int,
    sampled: tuple[list[float], contention.Usage],
    device: str,
    max_retries: int,
    min_repeat_s: float,
    min_window_s: float = 0.0,
) -> tuple[list[float], int, contention.Usage, str, int]:
    """Sample again while contended, at most ``max_retries`` times: (times, calls per repeat,
    usage, reason, n). The call count is found again too: the contended one was sized by a
    slowed-down op, so a clean retry would time repeats shorter than ``min_repeat_s``."""
    per_call, used = sampled
    reason = contention.contention_reason(used, device)
    retries = 0
    while reason and retries < max_retries:
        time.sleep(RETRY_PAUSE_S * 2**retries)
        retries += 1
        before, window_start = contention.snapshot(), time.perf_counter()
        calls, repeat_s = _calibrate(run, min_repeat_s)
        per_call = [repeat_s / calls, *_sample(run, calls, len(per_call) - 1)]
        calls = _fill_window(run, calls, per_call, window_start + min_window_s, min_repeat_s)
        used = contention.snapshot() - before
        reason = contention.contention_reason(used, device)
    return per_call, calls, used, reason, retries


def measure(
    run: Callable[[], Any],
    *,
    min_repeat_s: float = DEFAULT_MIN_REPEAT_S,
    repeats: int = DEFAULT_REPEATS,
    max_total_s: float = DEFAULT_MAX_TOTAL_S,
    max_retries: int = DEFAULT_MAX_RETRIES,
    device: str = "cpu",
    min_window_s: float = MIN_WINDOW_S,
) -> Measurement:
    """Time ``run`` (which must include its own device synchronisation) per call.

    ``max_total_s`` bounds everything after the first call, whose duration (compilation)
    is outside the harness's control; at least ``MIN_REPEATS`` repeats are always taken.
    A contended sampling is retried up to ``max_retries`` times (each retry costs one more
    sampling, so only contended measurements take longer).
    """
    if repeats < MIN_REPEATS:
        raise ValueError(f"repeats must be at least {MIN_REPEATS}, got {repeats}")
    start = time.perf_counter()
    run()
    first_call_s = time.perf_counter() - start
    budget_start = time.perf_counter()
    # Warm-up calls only for ops fast enough to afford them: for a slow op the first call has
    # done the warming, and the median of the repeats absorbs any one disturbed repeat.
    for _ in range(WARMUP_CALLS if first_call_s < max_total_s / 4 else 0):
        run()
    before, window_start = contention.snapshot(), time.perf_counter()
    calls, repeat_s = _calibrate(run, min_repeat_s)
    remaining = max_total_s - (time.perf_counter() - budget_start)
    affordable = 1 + int(max(remaining, 0.0) // repeat_s)
    total_repeats = max(MIN_REPEATS, min(repeats, affordable))
    # The last calibration repeat ran after warm-up with the final call count: a valid sample.
    per_call = [repeat_s / calls, *_sample(run, calls, total_repeats - 1)]
    # More repeats than asked where they fill less than the contention window (MIN_WINDOW_S).
    calls = _fill_window(run, calls, per_call, window_start + min_window_s, min_repeat_s)
    taken = len(per_call)
    used = contention.snapshot() - before
    per_call, calls, used, reason, retries = _retry_contended(
        run, calls, (per_call, used), device, max_retries, min_repeat_s, min_window_s
    )
    notes = []
    if taken < repeats:
        notes.append(
            f"repeats cut from {repeats} to {taken}: one repeat takes "
            f"{repeat_s:.3g} s against a {max_total_s:g} s budget"
        )
    if reason:
        notes.append(f"contended ({reason}) after {retries} retries")
    return _summarise(
        per_call,
        calls,
        first_call_s,
        note="; ".join(notes),
        usage=used,
        contended=bool(reason),
        retries=retries,
    )


def calibration_s() -> float:
    """Median per-call time of the calibration kernel (``exp`` of a fixed float64 array).

    A few milliseconds in all; not retried: it is a measure of the machine as it is now.
    """
    values = np.linspace(-4.0, 4.0, CALIBRATION_ELEMENTS)
    out = np.empty_like(values)
    return measure(
        lambda: np.exp(values, out=out),
        min_repeat_s=0.0005,
        repeats=MIN_REPEATS,
        max_total_s=0.005,
        max_retries=0,
        min_window_s=0.0,  # not a contention check: the window would cost 0.2 s per timing
    ).median_s


def _empty() -> None:
    return None


@functools.cache
def harness_overhead_s() -> float:
    """Median per-call time of an empty callable: the floor below which timings mean nothing."""
    return measure(_empty).median_s
