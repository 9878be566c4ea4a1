"""Does the default timing profile rank the implementations as the full profile does? Two
timing runs on one machine, one per profile, compared pair by pair.

For each (op, dtype, mode, pass, options, shape) and each pair of implementations timed there
in both runs, the full profile "tells them apart" when a Welch t-test on the logarithms of
their round medians (five rounds, each in a fresh process) gives p < ``--significance``; the
default profile agrees on such a pair when its medians order the two the same way. It prints
the agreement (pairs the full profile tells apart that the default ranks the same way), the
same for the fastest implementation of each group, the disagreements, and each run's time and
time breakdown (run.json's ``time_breakdown``).

Run from the repository root on a quiet machine, e.g.
    python tests/bench/profile_agreement.py --out /tmp/profiles --backend torch numpy \
        -- --python torch=.nox/backend-torch/bin/python
(one default-profile timing run, then a full-profile one on the default profile's shapes;
``--all-shapes`` times the full profile's whole grid). ``--score DEFAULT FULL`` scores two
existing run directories instead of timing new ones.
"""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))

from xentbench.suites import cli  # noqa: E402
from xentbench.suites.store.rows import load  # noqa: E402
from xentbench.suites.store.run_json import read_run_info, time_breakdown  # noqa: E402
from xentbench.suites.timing.profiles import PROFILES  # noqa: E402

GROUP = ["op", "dtype", "mode", "pass", "options", "shape"]


def timed(run_dir: Path) -> pd.DataFrame:
    """The measured timing rows of a run, one per implementation and group."""
    rows = load([run_dir], "timing")
    rows = rows[rows["verdict"].eq("ok") & (rows["median_s"] > 0)].copy()
    rows["options"] = rows["options"].fillna("")
    return rows[[*GROUP, "implementation", "median_s", "round_medians_s", "contended"]]


def apart(full_i: list[float], full_j: list[float], significance: float) -> bool:
    """Whether the full profile's rounds tell two implementations apart (Welch's t on logs)."""
    if min(len(full_i), len(full_j)) < 2:
        return False
    p = stats.ttest_ind(np.log(full_i), np.log(full_j), equal_var=False).pvalue
    return bool(np.isfinite(p) and p < significance)


def score(default_dir: Path, full_dir: Path, significance: float) -> dict:
    """Pairwise and fastest-per-group agreement of the default run with the full run."""
    default, full = timed(default_dir), timed(full_dir)
    joined = default.merge(full, on=[*GROUP, "implementation"], suffixes=("_default", "_full"))
    pairs = told = agreeing = 0
    disagreements = []
    fastest = {"groups": 0, "told_apart": 0, "same": 0}
    for group, rows in joined.groupby(GROUP, dropna=False):
        rows = rows.reset_index(drop=True)
        for i, j in itertools.combinations(range(len(rows)), 2):
            a, b = rows.iloc[i], rows.iloc[j]
            pairs += 1
            if not apart(
                list(a["round_medians_s_full"]), list(b["round_medians_s_full"]), significance
            ):
                continue
            told += 1
            full_order = a["median_s_full"] < b["median_s_full"]
            if (a["median_s_default"] < b["median_s_default"]) == full_order:
                agreeing += 1
            else:
                disagreements.append(_disagreement(group, a, b))
        if len(rows) < 2:
            continue
        fastest["groups"] += 1
        by_full = rows.sort_values("median_s_full").reset_index(drop=True)
        best, second = by_full.iloc[0], by_full.iloc[1]
        if apart(
            list(best["round_medians_s_full"]), list(second["round_medians_s_full"]), significance
        ):
            fastest["told_apart"] += 1
            fastest["same"] += int(
                rows.loc[rows["median_s_default"].idxmin(), "implementation"]
                == best["implementation"]
            )
    return {
        "keys_in_both": len(joined),
        "pairs": pairs,
        "pairs_told_apart_by_full": told,
        "pairs_default_agrees": agreeing,
        "agreement": f"{agreeing} of {told}" + (f" ({agreeing / told:.1%})" if told else ""),
        "fastest_per_group": fastest,
        "contended": {
            "default": int(default["contended"].eq(True).sum()),
            "full": int(full["contended"].eq(True).sum()),
        },
        "disagreements": sorted(disagreements, key=lambda d: -d["full_ratio"])[:20],
    }


def _disagreement(group: tuple, a: pd.Series, b: pd.Series) -> dict:
    return {
        **dict(zip(GROUP, group, strict=True)),
        "pair": [a["implementation"], b["implementation"]],
        "full_ratio": round(
            float(
                max(a["median_s_full"], b["median_s_full"])
                / min(a["median_s_full"], b["median_s_full"])
            ),
            3,
        ),
        "default_ratio": round(float(a["median_s_default"] / b["median_s_default"]), 3),
    }


def run_profile(out: Path, profile: str, run_args: list[str]) -> float:
    """One timing run with ``profile`` into ``out`` (started anew); its seconds."""
    if out.exists():
        shutil.rmtree(out)
    started = time.monotonic()
    code = cli.main(
        ["run", "--suite", "timing", "--profile", profile, "--out", str(out), *run_args]
    )
    if code:
        sys.exit(code)
    return round(time.monotonic() - started, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/xentbench-profiles"))
    parser.add_argument("--backend", nargs="+", default=[], help="default: every backend")
    parser.add_argument(
        "--all-shapes", action="store_true", help="time the full profile's whole grid"
    )
    parser.add_argument("--significance", type=float, default=0.01)
    parser.add_argument(
        "--score", nargs=2, type=Path, metavar=("DEFAULT", "FULL"), help="score two existing runs"
    )
    parser.add_argument("run_args", nargs="*", help="more `xentbench run` arguments, after --")
    args = parser.parse_args()
    results: dict = {}
    if args.score:
        default_dir, full_dir = args.score
    else:
        default_dir, full_dir = args.out / "default", args.out / "full"
        run_args = [*(["--backend", *args.backend] if args.backend else []), *args.run_args]
        results["seconds_default"] = run_profile(default_dir, "default", run_args)
        shapes = (
            []
            if args.all_shapes
            else ["--shapes", *(f"{b}x{c}" for b, c in PROFILES["default"].shapes)]
        )
        results["seconds_full"] = run_profile(full_dir, "full", [*run_args, *shapes])
    for name, run_dir in (("default", default_dir), ("full", full_dir)):
        info = read_run_info(run_dir)
        results[f"profile_{name}"] = info.get("timing_profile", {}).get("description", "unknown")
        results[f"time_breakdown_{name}"] = time_breakdown(info)
    results.update(score(default_dir, full_dir, args.significance))
    print(json.dumps(results, indent=2))
    if not args.score:
        (args.out / "agreement.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
