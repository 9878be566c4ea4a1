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

# Defaults sized for a whole grid on a small CPU machine: an op under ~25 ms per call costs
# 0.05-0.2 s in all, warm-up included; a slower op costs its first call plus three repeats.
# A 5 ms repeat is far above perf_counter's resolution (torch.utils.benchmark uses 0.2 ms).
DEFAULT_MIN_REPEAT_S = 0.005
DEFAULT_REPEATS = 7
DEFAULT_MAX_TOTAL_S = 0.2
WARMUP_CALLS = 2
MIN_REPEATS = 3
HIGH_VARIANCE_RATIO = 0.1


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

    @property
    def compile_s(self) -> float:
        """First call minus the steady state: compilation/initialisation cost (never negative)."""
        return max(0.0, self.first_call_s - self.median_s)

    @property
    def high_variance(self) -> bool:
        """IQR above 10% of the median: the machine was noisy, so read the median with care."""
        return self.median_s > 0 and self.iqr_s / self.median_s > HIGH_VARIANCE_RATIO

    def summary(self) -> str:
        """One line for logs and the ``message`` column: spread warnings and budget notes."""
        parts = [self.note] if self.note else []
        if self.high_variance:
            parts.append(f"high variance: IQR is {self.iqr_s / self.median_s:.0%} of the median")
        return "; ".join(parts)


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


def _summarise(per_call: list[float], calls: int, first_call_s: float, note: str) -> Measurement:
    q25, median, q75 = np.percentile(per_call, [25, 50, 75])
    return Measurement(
        median_s=float(median),
        iqr_s=float(q75 - q25),
        min_s=min(per_call),
        repeats=len(per_call),
        calls_per_repeat=calls,
        times_s=tuple(per_call),
        first_call_s=first_call_s,
        note=note,
    )


def measure(
    run: Callable[[], Any],
    *,
    min_repeat_s: float = DEFAULT_MIN_REPEAT_S,
    repeats: int = DEFAULT_REPEATS,
    max_total_s: float = DEFAULT_MAX_TOTAL_S,
) -> Measurement:
    """Time ``run`` (which must include its own device synchronisation) per call.

    ``max_total_s`` bounds everything after the first call, whose duration (compilation)
    is outside the harness's control; at least ``MIN_REPEATS`` repeats are always taken.
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
    calls, repeat_s = _calibrate(run, min_repeat_s)
    # The last calibration repeat ran after warm-up with the final call count: a valid sample.
    per_call = [repeat_s / calls]
    remaining = max_total_s - (time.perf_counter() - budget_start)
    affordable = 1 + int(max(remaining, 0.0) // repeat_s)
    total_repeats = max(MIN_REPEATS, min(repeats, affordable))
    per_call += [_time_calls(run, calls) / calls for _ in range(total_repeats - 1)]
    note = ""
    if total_repeats < repeats:
        note = (
            f"repeats cut from {repeats} to {total_repeats}: one repeat takes "
            f"{repeat_s:.3g} s against a {max_total_s:g} s budget"
        )
    return _summarise(per_call, calls, first_call_s, note)


def _empty() -> None:
    return None


@functools.cache
def harness_overhead_s() -> float:
    """Median per-call time of an empty callable: the floor below which timings mean nothing."""
    return measure(_empty).median_s
