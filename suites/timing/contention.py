"""What the process got while it was being timed: CPU time, wall time, involuntary switches.

A timing is only the op's cost if the op had the cores it asked for. On a shared machine another
runnable process takes a core away: the scheduler then preempts our threads (each preemption is
an *involuntary* context switch, ``ru_nivcsw``; on an idle core nothing else is runnable, so
there are next to none), and the process gets less CPU time than wall time (a CPU-bound op keeps
at least one thread computing all the time). Either sign marks the measurement ``contended``.

CPU time is compared with one core, not with wall time x threads: an op may use fewer threads
than the framework's pool (small inputs run inline in the calling thread), so "threads" cores
would flag every small op on an idle machine. The thread count is recorded for the reader.
On an accelerator the calling thread may sleep in the device synchronisation, so only the
switch rate counts there.
"""

from __future__ import annotations

import os
import resource
import sys
import time
from dataclasses import dataclass

# A CPU-bound measurement below half a core on average was waiting for a CPU most of the time.
MIN_CPU_SHARE = 0.5
# Preemptions per second of wall time: an idle core gives ~0 (a few kernel threads' wake-ups);
# sharing a core with one busy process gives 100-300 (one per scheduler slice of ~3-6 ms).
MAX_SWITCH_RATE = 25.0
MIN_SWITCHES = 3  # below this many, a short window's rate is a kernel thread, not a competitor


@dataclass(frozen=True)
class Usage:
    """Wall time, process CPU time (all threads) and involuntary context switches."""

    wall_s: float
    cpu_s: float
    involuntary_switches: int

    def __sub__(self, start: Usage) -> Usage:
        return Usage(
            self.wall_s - start.wall_s,
            self.cpu_s - start.cpu_s,
            self.involuntary_switches - start.involuntary_switches,
        )

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.wall_s + other.wall_s,
            self.cpu_s + other.cpu_s,
            self.involuntary_switches + other.involuntary_switches,
        )

    @property
    def cpu_share(self) -> float:
        """CPU time over wall time: 1 = one core busy throughout, 2 = two cores, ..."""
        return self.cpu_s / self.wall_s if self.wall_s > 0 else float("nan")


NO_USAGE = Usage(0.0, 0.0, 0)


def snapshot() -> Usage:
    """The process's usage counters now (differences of two snapshots are what count)."""
    return Usage(
        time.perf_counter(), time.process_time(), resource.getrusage(resource.RUSAGE_SELF).ru_nivcsw
    )


def contention_reason(used: Usage, device: str = "cpu") -> str:
    """Why ``used`` looks contended ("" if it does not): a low CPU share or many preemptions."""
    if used.wall_s <= 0:
        return ""
    reasons = []
    if device == "cpu" and used.cpu_share < MIN_CPU_SHARE:
        reasons.append(f"got {used.cpu_share:.0%} of a core")
    rate = used.involuntary_switches / used.wall_s
    if used.involuntary_switches >= MIN_SWITCHES and rate > MAX_SWITCH_RATE:
        reasons.append(f"{rate:.0f} involuntary context switches/s")
    return ", ".join(reasons)


def framework_threads() -> int:
    """The intra-op threads of the framework loaded in this process (else the usable cores)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    torch = sys.modules.get("torch")
    if torch is not None and hasattr(torch, "get_num_threads"):
        return int(torch.get_num_threads())
    tf = sys.modules.get("tensorflow")
    if tf is not None:
        try:
            return int(tf.config.threading.get_intra_op_parallelism_threads()) or cores or 1
        except Exception:  # an old or partial TensorFlow: fall back to the core count
            pass
    return int(cores or 1)
