"""``run.json``: what a run is based on (machine, versions, commands, reference, budget rule)."""

from __future__ import annotations

import datetime as dt
import os
import platform
import shlex
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from xentbench.suites.store.run_json import read_run_info, update_run_info
from xentbench.suites.store.schema import SCHEMA_VERSION

REPO_ROOT = Path(__file__).resolve().parents[2]


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def default_run_dir() -> Path:
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("reports") / "runs" / f"{stamp}-{socket.gethostname()}"


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} ({os.cpu_count()} logical CPUs)"
    except OSError:
        pass
    return f"{platform.processor() or platform.machine()} ({os.cpu_count()} logical CPUs)"


# A commit git could not tell (git absent, or slower than its timeout): never a mismatch.
UNKNOWN = "unknown"


def _gpu() -> str:
    try:
        listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "none detected"
    return listed.stdout.strip() or "none detected"


def _git_commit() -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=30
        )
        # --no-optional-locks: a status killed by the timeout must not leave the user's
        # repository with a stale index.lock (a plain status refreshes the index under it).
        dirty = subprocess.run(
            ["git", "--no-optional-locks", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return UNKNOWN
    commit = head.stdout.strip() or UNKNOWN
    return commit + ("+dirty" if dirty.stdout.strip() else "")


def pinned(seed: int) -> dict[str, Any]:
    """What this run's rows depend on beyond their key: a directory's rows must agree on it
    (``suites.cli.params.check_same_run``)."""
    return {"seed": seed, "git_commit": _git_commit(), "python": sys.version.split()[0]}


def start(
    run_dir: Path, seed: int, *, timing: bool, profile: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Record the machine and the command in ``run.json`` (creating the run) and return it;
    a timing run also its load, thread settings and ``profile`` (``timing_profile``)."""
    from xentbench.suites.judge.budget import BUDGET_RULE, worked_examples_text
    from xentbench.suites.judge.linear_budget import LINEAR_BUDGET_RULE

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    existing = read_run_info(run_dir)
    info: dict[str, Any] = {
        "run_id": existing.get("run_id", run_dir.name),
        "host": socket.gethostname(),
        "started": existing.get("started", _now()),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu": _cpu(),
        "gpu": _gpu(),
        "git_commit": _git_commit(),
        "seed": seed,
        "schema_version": SCHEMA_VERSION,
        "commands": [shlex.join(["xentbench", *sys.argv[1:]])],
        "reference": {
            "method": "double-double with rigorous error bounds, Arb ball arithmetic "
            "(python-flint) where the bound cannot decide the rounding",
            "precision": "correctly rounded float64 plus residual",
        },
        "ulp_budget_rule": f"{BUDGET_RULE} {LINEAR_BUDGET_RULE}",
        "budget_worked_examples": worked_examples_text(),
    }
    if timing:
        # Timings on a shared CPU are only meaningful when it is idle (OpenMP threads of a
        # framework wait on each other): record the load so a reader can judge.
        info["load_average_at_start"] = [round(v, 2) for v in os.getloadavg()]
        info["thread_settings"] = {
            name: os.environ[name]
            for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "XLA_FLAGS")
            if name in os.environ
        }
    if timing and profile:  # the name is pinned (``suites.cli.params``), the rest described
        info["profile"] = profile["name"]
        info["timing_profile"] = profile
    if timing and "memory_bandwidth_gbps" not in existing:
        from xentbench.suites.timing.bandwidth import memory_bandwidth_gbps
        from xentbench.suites.timing.harness import harness_overhead_s

        info["memory_bandwidth_gbps"] = memory_bandwidth_gbps()
        info["harness_overhead_s"] = harness_overhead_s()
    return update_run_info(run_dir, info)


def finish(run_dir: Path, outcomes) -> dict[str, Any]:
    """Record the end of the run: versions, unavailable backends, crashes (of this run's jobs
    only, where one ``run --against`` served two)."""
    outcomes = [o for o in outcomes if Path(o.run_dir) == Path(run_dir)]
    backends = {o.backend: o.version for o in outcomes if o.version}
    unavailable = {o.backend: o.unavailable for o in outcomes if o.unavailable}
    crashes = [f"{o.suite} {o.backend}: {crash}" for o in outcomes for crash in o.crashes]
    crashes += [f"{o.suite} {o.backend}: harness: {e}" for o in outcomes for e in o.harness_errors]
    return update_run_info(
        run_dir,
        {
            "finished": _now(),
            "backends": backends,
            "unavailable": unavailable,
            "crashes": crashes,
            "time_breakdown": time_breakdown(outcomes),
        },
    )


def time_breakdown(outcomes) -> dict[str, dict[str, float]]:
    """Seconds per phase (``suites.store.run_json.TIME_PHASES``) of each suite and backend,
    summed over its jobs (a timing run's rounds, restarts after a crash)."""
    breakdown: dict[str, dict[str, float]] = {}
    for outcome in outcomes:
        entry = breakdown.setdefault(f"{outcome.suite} {outcome.backend}", {})
        for phase, seconds in outcome.phases.items():
            entry[phase] = round(entry.get(phase, 0.0) + seconds, 3)
    return {name: dict(sorted(entry.items())) for name, entry in breakdown.items() if entry}
