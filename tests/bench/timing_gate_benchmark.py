"""Can a timing comparison gate a change? The acceptance figures of the timing suite.

Three measurements, to run on a quiet machine (nothing else running; the figures mean nothing
while other processes load the cores):

(a) **false alarms**: two back-to-back default timing runs of identical software, compared at
    the default thresholds: the share of compared timings reported as regressions (target:
    at most 1%); and where their noise sits per backend (``a_noise_log``: a shift common to
    a worker process, to one round of it, and the noise of one sampling);
(b) **detection**: a copy of the second run doctored to be 1.5x slower on every sample (and
    every summary derived from the samples), compared with the first: the share reported as
    regressions (target: at least 95%); also reported: the first run against its own doctored
    copy (``b_self_detected``), the test's power without run-to-run noise;
(c) **contention**: a timing run beside a CPU-bound process pinned to one core: how many
    measurements are flagged ``contended`` (target: the affected ones, i.e. most of them,
    rather than none); and, the other way round, how many of runs (a)'s timings on the quiet
    machine were flagged (``a_contended``: false alarms of the detector, target: about none).

Run from the repository root, e.g. ``python tests/bench/timing_gate_benchmark.py --out
/tmp/gate`` (about three default timing runs' time). ``--base`` and ``--new`` reuse existing
runs for (a) and (b); ``--backend`` narrows every run; ``--skip-busy`` leaves out (c).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

# This checkout's code, not an installed copy: the script runs as a file, not as a module.
REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))

from xentbench.suites.report.compare import compare_runs  # noqa: E402
from xentbench.suites.store.rows import RowWriter, load  # noqa: E402
from xentbench.suites.store.run_json import update_run_info  # noqa: E402
from xentbench.suites.store.schema import KEYS  # noqa: E402

DOCTOR_FACTOR = 1.5
_SCALED = ("median_s", "iqr_s", "min_s", "overhead_s")  # seconds: scaled with the samples


def xentbench(*args: str) -> float:
    """Run the CLI from this checkout; its wall time in seconds (raises on failure)."""
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "xentbench.suites.cli", *args], check=True, cwd=REPO_ROOT)
    return time.monotonic() - started


def timing_run(out: Path, backends: list[str], extra: list[str]) -> float:
    if out.exists():
        shutil.rmtree(out)
    backend_args = ["--backend", *backends] if backends else []
    return xentbench("run", "--suite", "timing", "--out", str(out), *backend_args, *extra)


def doctor(run_dir: Path, out: Path, factor: float) -> Path:
    """A copy of ``run_dir`` whose every timing sample (and summary) is ``factor`` x slower."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    shutil.copy(run_dir / "run.json", out / "run.json")
    rows = load([run_dir], "timing")
    for backend, frame in rows.groupby("backend"):
        writer = RowWriter(out, "timing", backend)
        for row in frame.to_dict("records"):
            for column in _SCALED:
                if row.get(column) is not None:
                    row[column] = row[column] * factor
            for column in ("gbps", "roofline_fraction"):
                if row.get(column) is not None:
                    row[column] = row[column] / factor
            for samples in ("times_s", "round_medians_s"):
                if row.get(samples) is not None:
                    row[samples] = [t * factor for t in row[samples]]
            writer.write(row)
        writer.close()
    update_run_info(out, {"run_id": f"{run_dir.name}-x{factor:g}"})
    return out


def share_of_regressions(base: Path, new: Path) -> tuple[int, int]:
    """(time regressions, timings ok in both runs) at the default thresholds."""
    comparison = compare_runs(base, new)
    regressions = comparison.regressions
    slower = int((regressions["kind"] == "time").sum()) if len(regressions) else 0
    both = load([base], "timing").merge(
        load([new], "timing"), on=list(KEYS["timing"]), suffixes=("_b", "_n")
    )
    compared = int(((both["verdict_b"] == "ok") & (both["verdict_n"] == "ok")).sum())
    return slower, compared


def noise_sources(base: Path, new: Path) -> dict:
    """Where the run-to-run noise sits, in natural-log units of time, per backend.

    ``between_runs``: the mean log ratio new/base of the timings' medians of round medians (a
    shift common to one worker process); ``within_run``: the largest mean shift of one round
    from its timings' medians, over the rounds of either run (a shift common to one round of a
    process); ``per_round``: the standard deviation of a round median about its timing's median
    once those shifts are removed (the noise of one sampling)."""
    import numpy as np
    from timing_gate_rules import paired_rounds  # this script's directory is on sys.path

    both = paired_rounds(base, new)
    if both.empty:
        return {"note": "no timing with round medians in both runs (schema < 5)"}
    out: dict = {}
    for backend, index in both.groupby("backend_b").indices.items():
        shift = [np.median(both["log_n"][i]) - np.median(both["log_b"][i]) for i in index]
        residual, round_shift = [], 0.0
        for side in ("log_b", "log_n"):
            rows = [both[side][i] - np.median(both[side][i]) for i in index]
            if len({len(r) for r in rows}) != 1:
                continue
            deviations = np.stack(rows)
            means = deviations.mean(axis=0)
            round_shift = max(round_shift, float(np.abs(means).max()))
            residual.append((deviations - means).ravel())
        out[backend] = {
            "between_runs": round(float(np.mean(shift)), 3),
            "within_run": round(round_shift, 3),
            "per_round": round(float(np.concatenate(residual).std()), 3) if residual else None,
        }
    return out


def contended_count(run_dir: Path) -> str:
    """'flagged of timed' for one run: timings flagged contended among those measured."""
    ok = load([run_dir], "timing").query("verdict == 'ok'")
    return f"{int(ok['contended'].eq(True).sum())} of {len(ok)}"


def busy_core_run(out: Path, backends: list[str], extra: list[str]) -> dict:
    """A timing run beside a spinning process pinned to one core: flagged / timed."""
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        if hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(spinner.pid, {min(os.sched_getaffinity(0))})
        seconds = timing_run(out, backends, extra)
    finally:
        spinner.kill()
        spinner.wait()
    rows = load([out], "timing")
    ok = rows[rows["verdict"] == "ok"]
    return {
        "flagged": int(ok["contended"].eq(True).sum()),
        "timed": len(ok),
        "retried": int((ok["retries"] > 0).sum()),
        "seconds": round(seconds, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/xentbench-timing-gate"))
    parser.add_argument("--backend", nargs="+", default=[], help="default: every backend")
    parser.add_argument("--base", type=Path, help="an existing run for (a) and (b)")
    parser.add_argument("--new", type=Path, help="an existing second run for (a)")
    parser.add_argument("--skip-busy", action="store_true", help="leave out (c)")
    parser.add_argument(
        "--busy-backend", nargs="+", default=["torch"], help="backends for (c) (default torch)"
    )
    parser.add_argument("run_args", nargs="*", help="more `xentbench run` arguments, after --")
    args = parser.parse_args()
    load_before = os.getloadavg()
    results: dict = {"load_average_before": [round(v, 2) for v in load_before]}
    base = args.base or args.out / "a"
    new = args.new or args.out / "b"
    if args.base is None:
        results["seconds_run_a"] = round(timing_run(base, args.backend, args.run_args), 1)
    if args.new is None:
        results["seconds_run_b"] = round(timing_run(new, args.backend, args.run_args), 1)
    false_alarms, compared = share_of_regressions(base, new)
    results["a_false_regressions"] = f"{false_alarms} of {compared}"
    results["a_share"] = false_alarms / compared if compared else None
    results["a_contended"] = {run.name: contended_count(run) for run in (base, new)}
    results["a_noise_log"] = noise_sources(base, new)
    doctored = doctor(new, args.out / "b-doctored", DOCTOR_FACTOR)
    detected, compared = share_of_regressions(base, doctored)
    results["b_detected_regressions"] = f"{detected} of {compared}"
    results["b_share"] = detected / compared if compared else None
    # The same with the first run as its own base: the test's power without run-to-run noise.
    detected, compared = share_of_regressions(base, doctor(base, args.out / "a-doctored", 1.5))
    results["b_self_detected"] = f"{detected} of {compared}"
    if not args.skip_busy:
        results["c_busy_core"] = busy_core_run(args.out / "busy", args.busy_backend, args.run_args)
    results["load_average_after"] = [round(v, 2) for v in os.getloadavg()]
    results["targets"] = {"a_share": "<= 0.01", "b_share": ">= 0.95", "c": "flagged > 0"}
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
