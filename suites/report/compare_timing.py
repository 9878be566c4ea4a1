"""Timing changes between two runs: a slowdown or speed-up beyond the noise.

Decided (timing rows ok in both runs) from the raw samples (every repeat's per-call
time) when both runs kept them: a slowdown when a two-sided Mann-Whitney U test
(``scipy.stats.mannwhitneyu``, as asv, Go's benchstat and Google Benchmark's compare.py use)
finds the two sets of samples different at ``significance`` *and* the effect, the ratio of
the medians, exceeds ``1 + time_threshold``; a speed-up is the same rule the other way. The
test alone would flag differences too small to matter (hundreds of samples make any shift
significant), the threshold alone would flag noise. With ``normalise``, the new samples are
first divided by the ratio of the calibration kernel's median times (a fixed NumPy op timed
in the same worker beside each measurement), so a uniformly slower machine does not read as
a regression. Runs from before raw samples (schema version 2) fall back to the old rule: the
ratio beyond the threshold *and* the intervals [median - IQR, median + IQR] apart.
Changes where either run was flagged contended say so in ``flags``.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

from suites.report.changes import change_rows
from suites.report.format import format_seconds

MIN_SAMPLES = 3  # fewer samples per run: the U test cannot reach any useful significance


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


def _time_test(row, normalise: bool) -> tuple[float, float]:
    """(effect, p-value) of one key: the median ratio and the two-sided U test's p-value.

    Without raw samples in either run, the effect is the ratio of the stored medians and the
    p-value NaN (the caller applies the interval rule instead).
    """
    base, new = _samples(row["times_s_base"]), _samples(row["times_s_new"])
    if base is None or new is None:
        return row["median_s_new"] / row["median_s_base"], math.nan
    if normalise:
        new = new / _calibration_ratio(row)
    p_value = stats.mannwhitneyu(new, base, alternative="two-sided").pvalue
    return float(np.median(new) / np.median(base)), float(p_value)


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


def time_changes(
    both: pd.DataFrame, threshold: float, significance: float, normalise: bool
) -> pd.DataFrame:
    ok = both[(both["verdict_base"] == "ok") & (both["verdict_new"] == "ok")]
    for column in ("times_s", "calibration_s", "contended"):  # runs from before schema 3
        for side in ("base", "new"):
            if f"{column}_{side}" not in ok:
                ok = ok.assign(**{f"{column}_{side}": None})
    tested = [_time_test(row, normalise) for _, row in ok.iterrows()]
    effect = pd.Series([t[0] for t in tested], index=ok.index, dtype=float)
    p_value = pd.Series([t[1] for t in tested], index=ok.index, dtype=float)
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
