"""Which round-level rule can gate a timing change? Candidate rules scored on two real runs.

Takes two timing runs of identical software with round medians (``--repeat-runs`` >= 2,
schema 5), e.g. the two runs of ``tests/bench/timing_gate_benchmark.py``, and prints for each
candidate rule the share of timings it reports as regressions (false alarms: the runs differ
only by noise) and the share it reports once the second run is made 1.5x slower on every
round (detection). The shipped rule is ``suites.report.compare_timing``'s (the moderated t on
the log round medians, d0 = 4, p < 0.01, ratio > 1.1); the others show what other choices
would give:

- ``welch``: Welch's t-test on the log round medians, at several p and ratio thresholds;
- ``moderated``: the t statistic with each timing's variance shrunk towards the median
  variance of its (backend, shape) group, ``d0`` prior degrees of freedom (as limma moderates
  per-gene variances: Smyth, Stat. Appl. Genet. Mol. Biol. 3(1), 2004).

``--remove-backend-shift`` first divides the second run's times by each backend's median
ratio: an oracle for any per-backend normalisation (a calibration kernel run on each
framework's threads, say), which shows what such a kernel could at best recover from two runs
timed one after the other under different backgrounds.

Run from the repository root, e.g.
    python tests/bench/timing_gate_rules.py reports/sample /work/bench/gate2/b [--rounds 3]
Nothing is timed; it reads the stored rows.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))

from xentbench.suites.report.compare_timing import moderated_p_values  # noqa: E402
from xentbench.suites.store.rows import load  # noqa: E402
from xentbench.suites.store.schema import KEYS  # noqa: E402

SLOWDOWN = np.log(1.5)


def paired_rounds(base: Path, new: Path, rounds: int | None = None) -> pd.DataFrame:
    """Timings ok in both runs, with their log round medians per run (the first ``rounds``
    of each: how a run of fewer rounds would have fared)."""
    rows = [load([run], "timing").query("verdict == 'ok'") for run in (base, new)]
    both = rows[0].merge(rows[1], on=list(KEYS["timing"]), suffixes=("_b", "_n"))
    both = both.dropna(subset=["round_medians_s_b", "round_medians_s_n"])
    both["log_b"] = [np.log(np.asarray(v)[:rounds]) for v in both["round_medians_s_b"]]
    both["log_n"] = [np.log(np.asarray(v)[:rounds]) for v in both["round_medians_s_n"]]
    return both.reset_index(drop=True)


def remove_backend_shift(both: pd.DataFrame) -> pd.DataFrame:
    """``both`` with each new log round median less its backend's median log ratio."""
    pairs = zip(both["log_b"], both["log_n"], strict=True)
    effect = pd.Series([np.median(n) - np.median(b) for b, n in pairs])
    shift = effect.groupby(both["backend_b"].to_numpy()).transform("median").to_numpy()
    return both.assign(log_n=[n - s for n, s in zip(both["log_n"], shift, strict=True)])


def welch(log_b: np.ndarray, log_n: np.ndarray, alpha: float, ratio: float) -> bool:
    effect = np.median(log_n) - np.median(log_b)
    p_value = stats.ttest_ind(log_n, log_b, equal_var=False).pvalue
    return bool(effect > np.log(ratio) and p_value < alpha)


def moderated(both: pd.DataFrame, d0: float):
    """The shipped moderated t (``compare_timing.moderated_p_values``) with ``d0`` prior
    degrees of freedom: each timing's variance borrows strength from its (backend, shape)."""
    groups = list(both["backend_b"].astype(str) + "|" + both["shape"].astype(str))
    logs = list(zip(both["log_b"], both["log_n"], strict=True))
    p_values = {
        shift: moderated_p_values([(b, n + shift) for b, n in logs], groups, prior_df=d0)
        for shift in (0.0, SLOWDOWN)
    }

    def rule(i: int, log_b: np.ndarray, log_n: np.ndarray, alpha: float, ratio: float) -> bool:
        shift = 0.0 if np.array_equal(log_n, logs[i][1]) else SLOWDOWN
        effect = np.median(log_n) - np.median(log_b)
        return bool(effect > np.log(ratio) and p_values[shift][i] < alpha)

    return rule


def score(both: pd.DataFrame, rule) -> tuple[float, float]:
    """(false-alarm share, detection share of a 1.5x slowdown) of ``rule(i, base, new)``."""
    rows = list(zip(both["log_b"], both["log_n"], strict=True))
    false = np.mean([rule(i, b, n) for i, (b, n) in enumerate(rows)])
    detected = np.mean([rule(i, b, n + SLOWDOWN) for i, (b, n) in enumerate(rows)])
    return float(false), float(detected)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base", type=Path)
    parser.add_argument("new", type=Path)
    parser.add_argument("--rounds", type=int, help="score the first ROUNDS of each run only")
    parser.add_argument(
        "--remove-backend-shift",
        action="store_true",
        help="divide the new run's times by each backend's median ratio first (an oracle)",
    )
    parser.add_argument(
        "--backend", nargs="+", help="score these backends' timings only (e.g. the small ops')"
    )
    args = parser.parse_args()
    both = paired_rounds(args.base, args.new, args.rounds)
    if args.backend:  # the moderated t pools within (backend, shape): other backends' rows
        both = both[both["backend_b"].isin(args.backend)].reset_index(drop=True)  # do not count
    if args.remove_backend_shift:
        both = remove_backend_shift(both)
    used = f"the first {args.rounds}" if args.rounds else "all"
    removed = ", each backend's median ratio removed" if args.remove_backend_shift else ""
    only = f" of {', '.join(args.backend)}" if args.backend else ""
    counted = f"{len(both)} timings{only} with round medians in both runs"
    print(f"{counted} ({used} rounds of each{removed})")
    print("| rule | p below | ratio above | false alarms | 1.5x detected |")
    print("| --- | --- | --- | --- | --- |")
    for alpha in (0.01, 0.05):
        for ratio in (1.1, 1.2):
            false, found = score(both, lambda i, b, n, a=alpha, r=ratio: welch(b, n, a, r))
            print(f"| welch | {alpha:g} | {ratio:g} | {false:.1%} | {found:.1%} |")
    for d0 in (4, 8):
        rule = moderated(both, d0)
        for alpha in (0.01, 0.02):
            for ratio in (1.1, 1.25):
                false, found = score(
                    both, lambda i, b, n, a=alpha, r=ratio, f=rule: f(i, b, n, a, r)
                )
                print(f"| moderated d0={d0} | {alpha:g} | {ratio:g} | {false:.1%} | {found:.1%} |")


if __name__ == "__main__":
    main()
