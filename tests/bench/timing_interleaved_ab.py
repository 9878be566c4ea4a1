"""Would interleaving two timing runs let them gate each other? Two runs of identical software,
their rounds taking turns, compared.

The gate benchmark (``timing_gate_benchmark.py``) times run A, then run B: a change of the
machine's background between the two (other processes' CPU on our cores) moves every timing
of the 2-thread frameworks together, and no round within a run can see it. Here both runs are
one ``xentbench run --suite timing --out A --against B``: their rounds alternate (round 1 of A
for every backend, round 1 of B, round 2 of A, ...), so a slow phase of the machine falls on
both runs alike.
It prints the false-alarm share (A against B at the default thresholds) and the detection
share (A against B doctored 1.5x slower), as the gate benchmark does, and the by-backend
table of the comparison.

Run from the repository root on a quiet machine, e.g.
    python tests/bench/timing_interleaved_ab.py --out /tmp/ab --backend torch tensorflow numpy \
        -- --python torch=.nox/backend-torch/bin/python ...
(about 2 x 7/5 of one default timing run of those backends: the pair runs 7 rounds each).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "tests" / "bench"))

from timing_gate_benchmark import DOCTOR_FACTOR, doctor, share_of_regressions  # noqa: E402

from xentbench.suites import cli  # noqa: E402
from xentbench.suites.report.compare import compare_runs  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/xentbench-interleaved"))
    parser.add_argument("--backend", nargs="+", default=[], help="default: every backend")
    parser.add_argument("run_args", nargs="*", help="more `xentbench run` arguments, after --")
    args = parser.parse_args()
    runs = [args.out / "a", args.out / "b"]
    for run_dir in runs:
        if run_dir.exists():
            shutil.rmtree(run_dir)
    backend_args = ["--backend", *args.backend] if args.backend else []
    argv = ["run", "--suite", "timing", "--out", str(runs[0]), "--against", str(runs[1])]
    started = time.monotonic()
    code = cli.main([*argv, *backend_args, *args.run_args])
    if code:
        sys.exit(code)
    results: dict = {"seconds_both_runs": round(time.monotonic() - started, 1)}
    false_alarms, compared = share_of_regressions(runs[0], runs[1])
    results["a_false_regressions"] = f"{false_alarms} of {compared}"
    doctored = doctor(runs[1], args.out / "b-doctored", DOCTOR_FACTOR)
    detected, compared = share_of_regressions(runs[0], doctored)
    results["b_detected_regressions"] = f"{detected} of {compared}"
    shifts = compare_runs(runs[0], runs[1]).timing_by_backend
    results["timing_by_backend"] = json.loads(shifts.to_json(orient="records"))
    results["targets"] = {"a": "<= 1% of compared", "b": ">= 95% of compared"}
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
