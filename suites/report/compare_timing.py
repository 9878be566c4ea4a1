"""Timing changes between two runs: a slowdown or speed-up beyond the noise.

Decided (timing rows ok in both runs) at two levels of evidence:

- **Rounds** (both runs kept at least ``MIN_ROUNDS`` round medians, ``--repeat-runs``, schema
  5): the unit is a round's median, since on a shared machine an op's time drifts between
  samplings minutes apart far more than within one (measured on the 2-core VM: ~15% log std
  between samplings, ~8% within), so samples of one sampling are not independent evidence.
  The effect is the ratio of the medians of the round medians; the test is a two-sided t-test
  on their logarithms (as pyperf compares its per-process values): moderated, each timing's
  variance shrunk towards the median of its backend and shape (``moderated_p_values``), where
  ``MIN_GROUP`` timings share them, else Welch's. Measured on two interleaved runs of 7
  rounds (``run --against``), the moderated t reported 0 of 550 timings of identical software
  and caught 532 of 550 doctored 1.5x slower; Welch's caught 517.
- **Samples** (either run has a single round): a two-sided Mann-Whitney U test
  (``scipy.stats.mannwhitneyu``, as asv, Go's benchstat and Google Benchmark's compare.py use)
  on the raw samples, effect the ratio of their medians.

A slowdown needs the test's p-value below ``significance`` *and* the effect above
``1 + time_threshold``; a speed-up is the same rule the other way. The test alone would flag
differences too small to matter, the threshold alone would flag noise. With ``normalise``, the
new times are first divided by the ratio of the calibration kernel's median times (a fixed
NumPy op timed in the same worker beside each measurement), so a uniformly slower machine does
not read as a regression. Runs from before raw samples (schema version 2) fall back to the old
rule: the ratio beyond the threshold *and* the intervals [median - IQR, median + IQR] apart.
Changes where either run was flagged contended say so in ``flags``.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

from xentbench.suites.report.changes import change_rows
from xentbench.suites.report.format import format_seconds

MIN_SAMPLES = 3  # fewer samples per run: the U test cannot reach any useful significance
MIN_ROUNDS = 2  # fewer rounds per run: no between-round spread, so the samples decide
# The moderated t (``moderated_p_values``): the prior variance's weight in degrees of freedom,
# and the fewest timings of one backend and shape that make a prior (else Welch's t).
PRIOR_DF = 4.0
MIN_GROUP = 5


def _array(value) -> np.ndarray:
    """A stored list column's value as an array (empty for a missing one: older runs)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return np.empty(0)
    return np.asarray(value, dtype=np.float64)


def _samples(value) -> np.ndarray | None:
    """A row's raw samples, or None when there are too few to test (or none: older runs)."""
    samples = _array(value)
    return samples if samples.size >= MIN_SAMPLES else None


def _calibration_ratio(row) -> float:
    """New over base median calibration-kernel time (1 when either run has none)."""
    base, new = _array(row["calibration_s_base"]), _array(row["calibration_s_new"])
    if not base.size or not new.size:
        return 1.0
    return float(np.median(new) / np.median(base))


def _round_logs(row, normalise: bool) -> tuple[np.ndarray, np.ndarray] | None:
    """Both runs' log round medians (the new ones over the calibration ratio with
    ``normalise``), or None unless both runs kept ``MIN_ROUNDS``."""
    base, new = _array(row["round_medians_s_base"]), _array(row["round_medians_s_new"])
    if min(base.size, new.size) < MIN_ROUNDS:
        return None
    scale = _calibration_ratio(row) if normalise else 1.0
    return np.log(base), np.log(new / scale)


def _rounds_test(
    log_base: np.ndarray, log_new: np.ndarray, moderated_p: float
) -> tuple[float, float]:
    """(effect, p-value) from log round medians: their medians' ratio, and the moderated t's
    p-value where there is one (not NaN), else Welch's t."""
    effect = float(np.exp(np.median(log_new) - np.median(log_base)))
    if not math.isnan(moderated_p):
        return effect, float(moderated_p)
    if log_base.var() == 0 and log_new.var() == 0:  # no spread at all: the medians decide
        return effect, 0.0 if effect != 1 else 1.0
    return effect, float(stats.ttest_ind(log_new, log_base, equal_var=False).pvalue)


def _samples_test(row, normalise: bool) -> tuple[float, float]:
    """(effect, p-value) from the raw samples: the two-sided U test.

    Without raw samples in either run, the effect is the ratio of the stored medians and the
    p-value NaN (the caller applies the interval rule instead).
    """
    base, new = _samples(row["times_s_base"]), _samples(row["times_s_new"])
    if base is None or new is None:
        return row["median_s_new"] / row["median_s_base"], math.nan
    new = new / (_calibration_ratio(row) if normalise else 1.0)
    p_value = stats.mannwhitneyu(new, base, alternative="two-sided").pvalue
    return float(np.median(new) / np.median(base)), float(p_value)


def moderated_p_values(
    logs: list[tuple[np.ndarray, np.ndarray]], groups: list[str], prior_df: float = PRIOR_DF
) -> np.ndarray:
    """Two-sided p-values of the moderated t statistic of each key's log round medians
    (base, new), NaN for keys whose group has fewer than ``MIN_GROUP`` keys.

    Seven rounds a side leave each key's variance with 12 degrees of freedom, so an unluckily
    small estimate reads noise as a change and a large one hides a change. As limma moderates
    per-gene variances (Smyth, Stat. Appl. Genet. Mol. Biol. 3(1), 2004, eq. 2-3), the pooled
    variance is shrunk towards a prior, here the median pooled variance of its group (timings
    of one backend and shape: alike in size and thread use), worth ``prior_df`` degrees of
    freedom: s~^2 = (d0 s0^2 + d s^2) / (d0 + d), t = (mean_new - mean_base) / (s~ sqrt(1/m +
    1/n)) with d0 + d degrees of freedom.
    """
    df = np.array([b.size + n.size - 2 for b, n in logs], dtype=float)
    pooled = np.array(
        [((b.size - 1) * b.var(ddof=1) + (n.size - 1) * n.var(ddof=1)) for b, n in logs]
    ) / np.maximum(df, 1.0)
    by_group = pd.Series(pooled).groupby(np.asarray(groups, dtype=object))
    prior = by_group.transform("median").to_numpy()
    moderated = (prior_df * prior + df * pooled) / (prior_df + df)
    difference = np.array([n.mean() - b.mean() for b, n in logs])
    scale = np.sqrt(moderated * np.array([1 / b.size + 1 / n.size for b, n in logs]))
    with np.errstate(divide="ignore", invalid="ignore"):
        t = difference / scale
    p_value = 2 * stats.t.sf(np.abs(t), prior_df + df)
    p_value = np.where(scale == 0, np.where(difference == 0, 1.0, 0.0), p_value)
    return np.where(by_group.transform("size").to_numpy() >= MIN_GROUP, p_value, np.nan)


def rule_text(threshold: float, significance: float, normalise: bool) -> str:
    """The timing rule in one sentence, for the comparison's readers."""
    calibrated = " after dividing by the calibration kernel's ratio" if normalise else ""
    return (
        f"time: p < {significance:g} and a median ratio above {1 + threshold:g}{calibrated}; "
        "p from a t-test on the log round medians where both runs have "
        f"{MIN_ROUNDS}+ rounds (--repeat-runs): moderated (each timing's variance shrunk "
        f"towards its backend and shape's median, worth {PRIOR_DF:g} degrees of freedom) "
        f"where {MIN_GROUP}+ timings share them, else Welch's; otherwise from a Mann-Whitney "
        "U test on the raw samples (runs without samples: median±IQR intervals apart)"
    )


def _contended_flags(ok: pd.DataFrame) -> pd.Series:
    flags = {
        side: ok[f"contended_{side}"].eq(True) if f"contended_{side}" in ok else False
        for side in ("base", "new")
    }
    text = np.select(
        [flags["base"] & flags["new"], flags["base"], flags["new"]],
        ["contended (both runs)", "contended (base)", "contended (new)"],
        default="",
    )
    return pd.Series(text, index=ok.index, dtype=object)


def _comparable(both: pd.DataFrame) -> pd.DataFrame:
    """The keys timed ok in both runs, with the columns older runs lack added as null."""
    ok = both[(both["verdict_base"] == "ok") & (both["verdict_new"] == "ok")]
    # Columns of runs from before schema 3 (samples, calibration, contention) and 5 (rounds).
    for column in ("times_s", "calibration_s", "contended", "round_medians_s"):
        for side in ("base", "new"):
            if f"{column}_{side}" not in ok:
                ok = ok.assign(**{f"{column}_{side}": None})
    return ok


def time_changes(
    both: pd.DataFrame, threshold: float, significance: float, normalise: bool
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The timing changes beyond the noise, and each backend's shift (``backend_shifts``),
    from one test of each key ok in both runs."""
    ok = _comparable(both)
    rows = [row for _, row in ok.iterrows()]
    logs = [_round_logs(row, normalise) for row in rows]
    rounds = [i for i, pair in enumerate(logs) if pair]
    moderated = np.full(len(rows), np.nan)  # NaN where the key's group is too small
    if rounds:
        groups = [f"{rows[i]['backend_base']}|{rows[i]['case']}" for i in rounds]
        moderated[rounds] = moderated_p_values([logs[i] for i in rounds], groups)
    tested = [
        _rounds_test(*pair, moderated[i]) if pair else _samples_test(row, normalise)
        for i, (pair, row) in enumerate(zip(logs, rows, strict=True))
    ]
    effect = pd.Series([t[0] for t in tested], index=ok.index, dtype=float)
    p_value = pd.Series([t[1] for t in tested], index=ok.index, dtype=float)
    changes = _beyond_noise(ok, effect, p_value, threshold, significance)
    return changes, backend_shifts(ok, effect)


def _beyond_noise(
    ok: pd.DataFrame, effect: pd.Series, p_value: pd.Series, threshold: float, significance: float
) -> pd.DataFrame:
    """The keys whose effect clears the threshold with the test's (or the intervals') say-so."""
    base_iqr, new_iqr = ok["iqr_s_base"].fillna(0.0), ok["iqr_s_new"].fillna(0.0)
    base, new = ok["median_s_base"], ok["median_s_new"]
    apart_up = new - new_iqr > base + base_iqr
    apart_down = base - base_iqr > new + new_iqr
    decided = p_value.lt(significance)
    untested = p_value.isna()
    slower = (effect > 1 + threshold) & (decided | (untested & apart_up))
    faster = (effect * (1 + threshold) < 1) & (decided | (untested & apart_down))
    moved = ok[slower | faster]
    direction = np.where(slower.loc[moved.index], "regression", "improvement")
    text = (
        _time_text(moved["median_s_base"], moved["iqr_s_base"]),
        _time_text(moved["median_s_new"], moved["iqr_s_new"]),
    )
    values = (moved["median_s_base"], moved["median_s_new"])
    return change_rows(
        moved,
        "time",
        text,
        values,
        effect.loc[moved.index],
        direction,
        p_value.loc[moved.index],
        _contended_flags(ok).loc[moved.index],
    )


def _time_text(median: pd.Series, iqr: pd.Series) -> pd.Series:
    text = [f"{format_seconds(m)} ± {format_seconds(i)}" for m, i in zip(median, iqr, strict=True)]
    return pd.Series(text, index=median.index, dtype=object)


SHIFT_COLUMNS = [
    "backend",
    "timings",
    "median_ratio",
    "middle_80pct",
    "others_base",
    "others_new",
    "waited_base",
    "waited_new",
]


def backend_shifts(ok: pd.DataFrame, ratios: pd.Series) -> pd.DataFrame:
    """Per backend: how its timings moved together, and the background beside each run.

    ``median_ratio`` and ``middle_80pct`` are the median and the 10th-90th percentiles of the
    per-timing ratios (``ratios``, new over base, indexed like ``ok``: the keys timed ok in
    both runs); ``others_*`` the median CPU that other processes took on our cores per
    wall second (a share of one core), ``waited_*`` our threads' run-queue wait per wall
    second. A ratio shared by nearly every timing of a backend, with the background differing
    between the runs, points at the machine rather than the code: on the 2-core VM, others
    going from 0.04 to 0.09 of a core moved the 2-thread frameworks' timings by 9-21% and
    single-threaded NumPy's by 3% (``reports/bench/timing-rounds-apart/gate.json``).
    """
    if ok.empty:
        return pd.DataFrame(columns=SHIFT_COLUMNS)
    rows = []
    for backend, index in ok.groupby("backend_base").groups.items():
        logs = np.log(ratios.loc[index].to_numpy(dtype=float))
        low, middle, high = np.exp(np.quantile(logs, [0.1, 0.5, 0.9]))
        rows.append(
            {
                "backend": backend,
                "timings": len(index),
                "median_ratio": round(float(middle), 3),
                "middle_80pct": f"{low:.2f}-{high:.2f}",
                **{
                    f"{name}_{side}": _per_wall_second(ok.loc[index], column, side)
                    for name, column in (("others", "others_cpu_s"), ("waited", "waited_s"))
                    for side in ("base", "new")
                },
            }
        )
    return pd.DataFrame(rows, columns=SHIFT_COLUMNS)


def _per_wall_second(rows: pd.DataFrame, column: str, side: str) -> float | None:
    """The median of ``column`` per wall second of the samplings; None where not recorded."""
    name, wall = f"{column}_{side}", f"wall_s_{side}"
    if name not in rows or wall not in rows:
        return None
    share = (rows[name].astype(float) / rows[wall].astype(float)).dropna()
    return round(float(share.median()), 3) if len(share) else None
