"""What the process got while it was being timed, and whether other processes took its cores.

A timing is only the op's cost if the op had the cores it asked for. The direct sign that it
did not is CPU time spent by *other* processes on the cores this process may run on, during
the measurement window: the busy time of those cores (``/proc/stat``, per CPU:
user + nice + system + irq + softirq + steal; steal is a hypervisor giving the core to another
guest) minus this process's own CPU time (all its threads, ``time.process_time``). On an idle
machine that difference is near 0 (daemons and kernel threads: a few hundredths of a core); a
competitor sharing one of our cores gets its fair share of it (the scheduler splits a core
evenly, so ~0.5 of a core). ``MAX_OTHERS_SHARE`` sits between the two.

A second sign, on CPU devices: the process got less than half a core of CPU time over wall
time (a CPU-bound op keeps at least one thread computing all the time). CPU time is compared
with one core, not with wall time x threads: an op may use fewer threads than the framework's
pool (small inputs run inline), so "threads" cores would flag every small op on an idle machine.

The tick counts of ``/proc/stat`` (10 ms) blur short windows, so the harness samples at least
``suites.timing.harness.MIN_WINDOW_S`` (0.2 s), where the slack for the ticks is smaller than a
competitor's share. Our threads' run-queue wait (``/proc/self/task/*/schedstat``, ns) is
recorded (``waited_s``) but does not flag: on this VM an idle machine shows waits of half the
window for JAX's thread pool (waking a halted virtual CPU takes time), so a wait is not proof
that another process had the core.

Involuntary context switches (``ru_nivcsw``) are recorded but do not flag on their own: an
OpenMP or Eigen thread pool preempts its own threads (more runnable threads than cores, spin
then yield), so a multi-threaded op on an idle machine shows hundreds per second (293 of 620
idle timings were once flagged that way). Where ``/proc/stat`` is missing (not Linux, or a
sandbox without procfs) only the CPU share is available, and ``others_s`` is None.
"""

from __future__ import annotations

import os
import resource
import sys
import time
from dataclasses import dataclass
from pathlib import Path

# Other processes' CPU time on our cores, as a share of one core over the window. Idle
# background is < 0.05; a competitor on one of our cores takes ~0.5 (an even split of the
# core). A quarter of a core flags that competitor with margin for the tick granularity below,
# and even a competitor that runs only half the time (0.25 of a core would slow a two-thread
# op by a quarter of its wall time when its OpenMP team waits for the lost core).
MAX_OTHERS_SHARE = 0.25
# A CPU-bound measurement below half a core on average was waiting for a CPU most of the time.
MIN_CPU_SHARE = 0.5
# /proc/stat counts in clock ticks (USER_HZ, usually 100/s), per CPU: a difference of two
# readings of n CPUs is uncertain by up to n ticks, and our process_time adds at most one more,
# so others' time must exceed the threshold by that slack before it counts.
_PROC_STAT = Path("/proc/stat")
_BUSY_FIELDS = (0, 1, 2, 5, 6, 7)  # user nice system [idle iowait] irq softirq steal
_TICK_S = 1.0 / os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 0.01


@dataclass(frozen=True)
class Usage:
    """Wall time, process CPU time (all threads), involuntary context switches, and the busy
    time of the cores this process may use (None where ``/proc/stat`` cannot be read)."""

    wall_s: float
    cpu_s: float
    involuntary_switches: int
    cores_busy_s: float | None = None
    cores: int = 0  # how many CPUs ``cores_busy_s`` sums (the affinity set)
    waited_s: float | None = None  # run-queue delay of our threads (None: no schedstat)

    def __sub__(self, start: Usage) -> Usage:
        busy = _combine(self.cores_busy_s, start.cores_busy_s, -1)
        waited = _combine(self.waited_s, start.waited_s, -1)
        return Usage(
            self.wall_s - start.wall_s,
            self.cpu_s - start.cpu_s,
            self.involuntary_switches - start.involuntary_switches,
            busy,
            max(self.cores, start.cores),
            None if waited is None else max(0.0, waited),  # a thread that exited drops out
        )

    def __add__(self, other: Usage) -> Usage:
        if other == NO_USAGE:
            return self
        if self == NO_USAGE:
            return other
        return Usage(
            self.wall_s + other.wall_s,
            self.cpu_s + other.cpu_s,
            self.involuntary_switches + other.involuntary_switches,
            _combine(self.cores_busy_s, other.cores_busy_s, 1),
            max(self.cores, other.cores),
            _combine(self.waited_s, other.waited_s, 1),
        )

    @property
    def cpu_share(self) -> float:
        """CPU time over wall time: 1 = one core busy throughout, 2 = two cores, ..."""
        return self.cpu_s / self.wall_s if self.wall_s > 0 else float("nan")

    @property
    def others_s(self) -> float | None:
        """CPU seconds other processes used on our cores in the window (None: not measurable)."""
        if self.cores_busy_s is None:
            return None
        return max(0.0, self.cores_busy_s - self.cpu_s)


def _combine(a: float | None, b: float | None, sign: int) -> float | None:
    return None if a is None or b is None else a + sign * b


NO_USAGE = Usage(0.0, 0.0, 0)


def busy_seconds(proc_stat: str, cpus: set[int] | None) -> float | None:
    """Busy seconds of ``cpus`` since boot from ``/proc/stat`` text (all CPUs when None).

    Busy = user + nice + system + irq + softirq + steal ticks; guest time is already inside
    user. None when the text has no line for some wanted CPU (an unexpected format).
    """
    ticks, seen = 0, set()
    for line in proc_stat.splitlines():
        name, _, rest = line.partition(" ")
        if not name.startswith("cpu") or name == "cpu":
            continue
        try:
            cpu = int(name[3:])
            fields = [int(value) for value in rest.split()]
        except ValueError:
            return None
        if (cpus is None or cpu in cpus) and len(fields) > max(_BUSY_FIELDS):
            ticks += sum(fields[index] for index in _BUSY_FIELDS)
            seen.add(cpu)
    if not seen or (cpus is not None and seen != cpus):
        return None
    return ticks * _TICK_S


def _affinity() -> set[int] | None:
    return os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None


def _cores_busy() -> tuple[float | None, int]:
    """(busy seconds of the cores this process may use, their count); (None, 0) off Linux."""
    cpus = _affinity()
    try:
        text = _PROC_STAT.read_text()
    except OSError:
        return None, 0
    busy = busy_seconds(text, cpus)
    if busy is None:
        return None, 0
    return busy, len(cpus) if cpus else text.count("\ncpu")


def run_queue_wait(schedstats: list[str]) -> float | None:
    """Seconds the threads waited for a CPU, from their ``schedstat`` texts ("<on-CPU ns>
    <waiting ns> <timeslices>"); None when none could be read."""
    waited = [int(text.split()[1]) for text in schedstats if len(text.split()) >= 2]
    return sum(waited) / 1e9 if waited else None


def _waited() -> float | None:
    texts = []
    for path in Path("/proc/self/task").glob("*/schedstat"):
        try:
            texts.append(path.read_text())
        except OSError:  # the thread exited meanwhile
            continue
    return run_queue_wait(texts)


def snapshot() -> Usage:
    """The usage counters now (differences of two snapshots are what count)."""
    busy, cores = _cores_busy()
    return Usage(
        time.perf_counter(),
        time.process_time(),
        resource.getrusage(resource.RUSAGE_SELF).ru_nivcsw,
        busy,
        cores,
        _waited(),
    )


def contention_reason(used: Usage, device: str = "cpu") -> str:
    """Why ``used`` looks contended ("" if it does not): other processes on our cores, or (CPU
    devices) less than half a core for this one. Switch rates alone never flag (module doc)."""
    if used.wall_s <= 0:
        return ""
    reasons = []
    others = used.others_s
    slack_s = (used.cores + 1) * _TICK_S
    if others is not None and others > MAX_OTHERS_SHARE * used.wall_s + slack_s:
        reasons.append(f"other processes used {others / used.wall_s:.2f} of a core")
    if device == "cpu" and used.cpu_share < MIN_CPU_SHARE:
        reasons.append(f"got {used.cpu_share:.0%} of a core")
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
