"""Run-versus-run comparison: verdict, ULP and timing regressions and improvements."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from xentbench.suites.report.compare import compare_runs
from xentbench.suites.store.rows import RowWriter
from xentbench.suites.store.run_json import update_run_info

KEY = {"backend": "torch", "backend_version": "2.5.0", "dtype": "float32", "device": "cpu"}


def accuracy_row(case_id: str, verdict: str = "pass", max_ulp_error: float = 0.5, **values):
    row = {
        **KEY,
        "implementation": "torch:F.softmax",
        "op": "softmax",
        "mode": "eager",
        "quantity": "value",
        "case_id": case_id,
        "family": case_id.split("/")[1],
        "verdict": verdict,
        "message": "",
        "max_ulp_error": max_ulp_error,
        "budget_ulps": 4.0,
    }
    return {**row, **values}


def timing_row(shape: str, median_s: float, iqr_s: float, verdict: str = "ok", **values):
    row = {
        **KEY,
        "implementation": "torch:F.softmax",
        "op": "softmax",
        "mode": "eager",
        "pass": "forward",
        "shape": shape,
        "verdict": verdict,
        "message": "",
        "median_s": median_s,
        "iqr_s": iqr_s,
    }
    return {**row, **values}


def write_run(run_dir: Path, accuracy=(), timing=(), host: str = "host-a") -> Path:
    for suite, rows in (("accuracy", accuracy), ("timing", timing)):
        if rows:
            writer = RowWriter(run_dir, suite, "torch")
            for row in rows:
                writer.write({"run_id": run_dir.name, "host": host, **row})
            writer.close()
    update_run_info(run_dir, {"run_id": run_dir.name, "host": host})
    return run_dir


def compare(tmp_path: Path, base: dict, new: dict, **thresholds):
    base_dir = write_run(tmp_path / "base", **base)
    new_dir = write_run(tmp_path / "new", **new)
    return compare_runs(base_dir, new_dir, **thresholds)


def _keys(frame) -> set[tuple[str, str]]:
    return set(zip(frame["case"], frame["kind"], strict=True))


def test_verdict_that_gets_more_severe_is_a_regression(tmp_path):
    result = compare(
        tmp_path,
        {"accuracy": [accuracy_row("softmax/extreme/big")]},
        {"accuracy": [accuracy_row("softmax/extreme/big", "wrong", math.nan)]},
    )
    assert _keys(result.regressions) == {("softmax/extreme/big", "verdict")}
    assert result.regressions.loc[0, ["base", "new"]].tolist() == ["pass", "wrong"]
    assert result.improvements.empty


def test_verdict_that_gets_less_severe_is_an_improvement(tmp_path):
    result = compare(
        tmp_path,
        {"accuracy": [accuracy_row("softmax/special/nan", "error", math.nan)]},
        {"accuracy": [accuracy_row("softmax/special/nan", "inaccurate", 9.0)]},
    )
    assert result.regressions.empty
    assert _keys(result.improvements) == {("softmax/special/nan", "verdict")}


def test_ulp_growth_beyond_ratio_and_floor_is_a_regression_but_noise_is_not(tmp_path):
    result = compare(
        tmp_path,
        {
            "accuracy": [
                accuracy_row("softmax/benign/a", max_ulp_error=0.5),
                accuracy_row("softmax/benign/b", max_ulp_error=0.3),
            ]
        },
        {
            "accuracy": [
                accuracy_row("softmax/benign/a", max_ulp_error=3.0),
                accuracy_row("softmax/benign/b", max_ulp_error=0.9),
            ]
        },
        ulp_threshold=2.0,
    )
    # a: 6x and +2.5 ULP; b: 3x but only +0.6 ULP, under the 1-ULP floor.
    assert _keys(result.regressions) == {("softmax/benign/a", "ulp")}
    assert result.regressions.loc[0, "ratio"] == pytest.approx(6.0)


def test_slowdown_beyond_threshold_and_spread_is_a_regression(tmp_path):
    result = compare(
        tmp_path,
        {"timing": [timing_row("64x1000", 1.0e-3, 1e-5)]},
        {"timing": [timing_row("64x1000", 1.5e-3, 1e-5)]},
        time_threshold=0.1,
    )
    assert _keys(result.regressions) == {("64x1000", "time")}
    assert result.regressions.loc[0, "ratio"] == pytest.approx(1.5)


def test_slowdown_within_the_measured_spread_is_ignored(tmp_path):
    # 15% slower, over the 10% threshold, but [0.8, 1.2] ms and [0.95, 1.35] ms overlap.
    result = compare(
        tmp_path,
        {"timing": [timing_row("64x1000", 1.0e-3, 0.2e-3)]},
        {"timing": [timing_row("64x1000", 1.15e-3, 0.2e-3)]},
        time_threshold=0.1,
    )
    assert result.regressions.empty
    assert result.improvements.empty


def test_slowdown_under_the_threshold_is_ignored_even_when_intervals_are_apart(tmp_path):
    result = compare(
        tmp_path,
        {"timing": [timing_row("64x1000", 1.0e-3, 1e-6)]},
        {"timing": [timing_row("64x1000", 1.05e-3, 1e-6)]},
        time_threshold=0.1,
    )
    assert result.regressions.empty


def test_speedup_beyond_threshold_and_spread_is_an_improvement(tmp_path):
    result = compare(
        tmp_path,
        {"timing": [timing_row("64x1000", 2.0e-3, 1e-5)]},
        {"timing": [timing_row("64x1000", 1.0e-3, 1e-5)]},
    )
    assert result.regressions.empty
    assert _keys(result.improvements) == {("64x1000", "time")}


def test_timing_that_starts_raising_is_a_regression(tmp_path):
    result = compare(
        tmp_path,
        {"timing": [timing_row("64x1000", 1.0e-3, 1e-5)]},
        {"timing": [timing_row("64x1000", math.nan, math.nan, verdict="error")]},
    )
    assert _keys(result.regressions) == {("64x1000", "verdict")}


def test_keys_in_one_run_only_are_added_or_removed_not_regressions(tmp_path):
    result = compare(
        tmp_path,
        {"accuracy": [accuracy_row("softmax/benign/old")]},
        {"accuracy": [accuracy_row("softmax/benign/new", "wrong", math.nan)]},
    )
    assert result.regressions.empty
    assert result.added["case"].tolist() == ["softmax/benign/new"]
    assert result.removed["case"].tolist() == ["softmax/benign/old"]


def test_move_to_unsupported_is_a_coverage_change_not_a_regression(tmp_path):
    result = compare(
        tmp_path,
        {"accuracy": [accuracy_row("softmax/benign/a")]},
        {"accuracy": [accuracy_row("softmax/benign/a", "unsupported", math.nan)]},
    )
    assert result.regressions.empty and result.improvements.empty
    assert _keys(result.changes) == {("softmax/benign/a", "verdict")}


def test_render_as_table_and_as_json(tmp_path):
    result = compare(
        tmp_path,
        {"accuracy": [accuracy_row("softmax/extreme/big")]},
        {"accuracy": [accuracy_row("softmax/extreme/big", "wrong", math.nan)]},
    )
    table = result.render("table")
    assert "## Regressions: 1" in table and "softmax/extreme/big" in table
    data = json.loads(result.render("json"))
    assert [row["case"] for row in data["regressions"]] == ["softmax/extreme/big"]
    assert data["improvements"] == []
    with pytest.raises(ValueError, match="unknown format"):
        result.render("yaml")


def test_missing_run_directory_is_reported(tmp_path):
    write_run(tmp_path / "base", accuracy=[accuracy_row("softmax/benign/a")])
    with pytest.raises(FileNotFoundError, match="no such run directory"):
        compare_runs(tmp_path / "base", tmp_path / "absent")


# --- timing decided from raw samples (schema 3) -------------------------------------------

RNG = np.random.default_rng(20261129)


def sampled_row(shape: str, samples, calibration=(1e-5, 1e-5), **values):
    """A timing row with raw samples and the median and IQR of those samples."""
    q1, median, q3 = np.percentile(samples, [25, 50, 75])
    return timing_row(
        shape,
        float(median),
        float(q3 - q1),
        times_s=[float(t) for t in samples],
        calibration_s=list(calibration),
        **values,
    )


def noisy(median_s: float, n: int = 14, spread: float = 0.05):
    """Samples around ``median_s`` with a few percent of multiplicative noise."""
    return median_s * (1 + spread * RNG.standard_normal(n))


def test_samples_slower_beyond_threshold_and_significance_are_a_regression(tmp_path):
    base = noisy(1e-3)
    result = compare(
        tmp_path,
        {"timing": [sampled_row("64x1000", base)]},
        {"timing": [sampled_row("64x1000", base * 1.5)]},
    )
    assert _keys(result.regressions) == {("64x1000", "time")}
    found = result.regressions.iloc[0]
    assert found["ratio"] == pytest.approx(1.5)
    assert found["p_value"] < 1e-4 and found["flags"] == ""


def test_overlapping_samples_are_not_a_change_even_when_medians_differ(tmp_path):
    # Medians 20% apart, but every sample of one run lies within the other's range: U cannot
    # tell them apart, so the difference is noise (the old median-only rule would count it).
    base = [1.0e-3, 1.4e-3, 0.9e-3, 1.5e-3, 1.0e-3, 1.45e-3, 0.95e-3]
    new = [1.2e-3, 0.9e-3, 1.5e-3, 1.2e-3, 0.95e-3, 1.45e-3, 1.25e-3]
    result = compare(
        tmp_path,
        {"timing": [sampled_row("64x1000", base)]},
        {"timing": [sampled_row("64x1000", new)]},
    )
    assert result.regressions.empty and result.improvements.empty


def test_significant_but_smaller_than_the_threshold_is_not_a_change(tmp_path):
    base = noisy(1e-3, n=200, spread=0.01)
    result = compare(
        tmp_path,
        {"timing": [sampled_row("64x1000", base)]},
        {"timing": [sampled_row("64x1000", base * 1.05)]},
        time_threshold=0.1,
    )
    assert result.regressions.empty


def test_faster_samples_are_an_improvement(tmp_path):
    base = noisy(2e-3)
    result = compare(
        tmp_path,
        {"timing": [sampled_row("64x1000", base)]},
        {"timing": [sampled_row("64x1000", base / 2)]},
    )
    assert result.regressions.empty
    assert _keys(result.improvements) == {("64x1000", "time")}
    assert result.improvements.iloc[0]["ratio"] == pytest.approx(0.5)


def test_normalising_by_the_calibration_kernel_removes_a_uniformly_slower_machine(tmp_path):
    base = noisy(1e-3)
    runs = (
        {"timing": [sampled_row("64x1000", base, calibration=(1e-5, 1e-5))]},
        {"timing": [sampled_row("64x1000", base * 1.5, calibration=(1.5e-5, 1.5e-5))]},
    )
    assert len(compare(tmp_path / "raw", *runs).regressions) == 1
    normalised = compare(tmp_path / "normalised", *runs, normalise=True)
    assert normalised.regressions.empty and normalised.improvements.empty


def test_contended_measurements_are_flagged_in_the_findings(tmp_path):
    base = noisy(1e-3)
    result = compare(
        tmp_path,
        {"timing": [sampled_row("64x1000", base)]},
        {"timing": [sampled_row("64x1000", base * 3, contended=True)]},
    )
    assert result.regressions.iloc[0]["flags"] == "contended (new)"
    assert "contended (new)" in result.render("table")


def test_a_run_without_samples_is_compared_by_the_interval_rule(tmp_path):
    """Base from before schema 3 (no samples): the medians' intervals decide, no p-value."""
    result = compare(
        tmp_path,
        {"timing": [timing_row("64x1000", 1.0e-3, 1e-5)]},
        {"timing": [sampled_row("64x1000", noisy(1.5e-3, spread=0.001))]},
    )
    assert _keys(result.regressions) == {("64x1000", "time")}
    assert math.isnan(result.regressions.iloc[0]["p_value"])


def test_bad_significance_is_refused(tmp_path):
    with pytest.raises(ValueError, match="significance"):
        compare(tmp_path, {"timing": []}, {"timing": []}, significance=1.5)


# --- timing decided from round medians (schema 5, --repeat-runs) --------------------------


def rounds_row(shape: str, round_medians, per_round: int = 9, **values):
    """A timing row of several rounds, each a tight sampling around its own median."""
    rounds = [noisy(median, n=per_round, spread=0.005) for median in round_medians]
    samples = np.concatenate(rounds)
    medians = [float(np.median(r)) for r in rounds]
    return sampled_row(shape, samples, round_medians_s=medians, rounds=len(rounds), **values)


def test_drift_between_rounds_is_noise_even_where_pooled_samples_differ(tmp_path):
    # Each round is tight, so the pooled samples of the two runs differ "significantly" (the U
    # test takes 27 correlated samples for independent ones), but the rounds drift by ~10%
    # within each run: three rounds 20% slower are not evidence enough (Welch p ~ 0.04).
    base = rounds_row("64x1000", [1.0e-3, 1.08e-3, 0.93e-3])
    new = rounds_row("64x1000", [1.2e-3, 1.1e-3, 1.32e-3])
    pooled = compare(
        tmp_path / "pooled",
        {"timing": [{**base, "round_medians_s": None}]},
        {"timing": [{**new, "round_medians_s": None}]},
    )
    assert _keys(pooled.regressions) == {("64x1000", "time")}  # what the samples alone say
    result = compare(tmp_path / "rounds", {"timing": [base]}, {"timing": [new]})
    assert result.regressions.empty and result.improvements.empty


def test_a_slowdown_in_every_round_is_a_regression_with_the_rounds_p_value(tmp_path):
    base_rounds = [1.0e-3, 1.06e-3, 0.97e-3]
    result = compare(
        tmp_path,
        {"timing": [rounds_row("64x1000", base_rounds)]},
        {"timing": [rounds_row("64x1000", [1.5 * t for t in base_rounds])]},
    )
    assert _keys(result.regressions) == {("64x1000", "time")}
    found = result.regressions.iloc[0]
    assert found["ratio"] == pytest.approx(1.5, rel=0.02)
    assert found["p_value"] < 0.01  # Welch's t on the log round medians
    assert "Welch" in result.render("table")


def test_rounds_in_only_one_run_fall_back_to_the_samples(tmp_path):
    base = rounds_row("64x1000", [1.0e-3, 1.3e-3, 0.9e-3])
    new = sampled_row("64x1000", noisy(2e-3, n=27, spread=0.005))
    result = compare(tmp_path, {"timing": [base]}, {"timing": [new]})
    assert _keys(result.regressions) == {("64x1000", "time")}
    assert result.regressions.iloc[0]["p_value"] < 1e-6  # the U test on 27 + 27 samples


def test_timing_by_backend_shows_a_shift_every_timing_shares_beside_the_background(tmp_path):
    """A backend-wide ratio with the background load differing between the runs: the table
    that tells a machine shift from a code change."""
    shapes = ("1x1000", "64x1000", "8x256000")

    def rows(median_s: float, others: float, waited: float) -> list[dict]:
        rounds = [median_s * factor for factor in (1.0, 1.02, 0.98)]
        return [
            sampled_row(
                shape,
                noisy(median_s),
                round_medians_s=rounds,
                others_cpu_s=others,
                waited_s=waited,
                wall_s=0.5,
            )
            for shape in shapes
        ]

    result = compare(
        tmp_path, {"timing": rows(1e-3, 0.02, 0.05)}, {"timing": rows(1.2e-3, 0.045, 0.1)}
    )
    table = result.timing_by_backend
    assert table["backend"].tolist() == ["torch"] and table.loc[0, "timings"] == 3
    assert table.loc[0, "median_ratio"] == pytest.approx(1.2, abs=1e-3)
    assert table.loc[0, "middle_80pct"] == "1.20-1.20"
    background = table.loc[0, ["others_base", "others_new", "waited_base", "waited_new"]]
    assert background.tolist() == [0.04, 0.09, 0.1, 0.2]  # per wall second
    assert "## Timing by backend" in result.render("table")
    by_backend = json.loads(result.render("json"))["timing_by_backend"]
    assert by_backend[0]["others_new"] == 0.09


def test_timing_by_backend_is_empty_without_timings_ok_in_both_runs(tmp_path):
    result = compare(
        tmp_path,
        {"timing": [timing_row("64x1000", 1.0e-3, 1e-5)]},
        {"timing": [timing_row("64x1000", math.nan, math.nan, verdict="error")]},
    )
    assert result.timing_by_backend.empty
    assert "Timing by backend" not in result.render("table")


def test_timings_taken_one_run_after_the_other_carry_a_note_that_interleaved_ones_do_not(
    tmp_path,
):
    """A pair timed by ``run --against`` records each other in run.json: only then is the
    machine's background shared, and the note about it dropped."""
    timing = {"timing": [timing_row("64x1000", 1.0e-3, 1e-5)]}
    apart = compare(tmp_path / "apart", timing, timing)
    assert not apart.interleaved and "one after the other" in apart.note
    base = write_run(tmp_path / "together" / "base", **timing)
    new = write_run(tmp_path / "together" / "new", **timing)
    update_run_info(base, {"interleaved_with": "new"})
    assert not compare_runs(base, new).interleaved  # one side only: not a pair
    update_run_info(new, {"interleaved_with": "base"})
    together = compare_runs(base, new)
    assert together.interleaved and together.note == ""
    assert "Timed together" in together.render("table")
    assert json.loads(together.render("json"))["interleaved"] is True
    accuracy_only = compare(
        tmp_path / "accuracy",
        {"accuracy": [accuracy_row("c/f")]},
        {"accuracy": [accuracy_row("c/f")]},
    )
    assert accuracy_only.note == ""


def test_the_moderated_t_is_students_t_where_every_variance_of_a_group_is_alike():
    """With each key's variance equal to its group's median, shrinking changes nothing but
    the degrees of freedom: the statistic is Student's pooled two-sample t (scipy), with
    PRIOR_DF more degrees of freedom. A group too small for a prior gets no p-value."""
    from scipy import stats

    from xentbench.suites.report.compare_timing import MIN_GROUP, PRIOR_DF, moderated_p_values

    z = np.array([-1.0, -0.5, 0.0, 0.5, 1.0])
    logs = [(0.1 * z, shift + 0.1 * z[::-1]) for shift in np.linspace(0, 0.2, MIN_GROUP)]
    p_values = moderated_p_values([*logs, logs[-1]], ["g"] * MIN_GROUP + ["alone"])
    for (base, new), p_value in zip(logs, p_values, strict=False):
        t = stats.ttest_ind(new, base, equal_var=True).statistic
        assert p_value == pytest.approx(2 * stats.t.sf(abs(t), 8 + PRIOR_DF), rel=1e-12)
    assert np.isnan(p_values[-1])


def test_a_variance_small_by_luck_is_not_a_change_and_a_large_one_hides_less(tmp_path):
    """Seven rounds a side in a group of timings (one backend, one shape) whose rounds spread
    by ~20%: one whose rounds happen to agree within 1% is 12% slower (Welch's t alone calls
    it a regression), one that spreads by ~25% is 1.5x slower (Welch's p 0.016 misses it)."""
    z = np.array([-1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5])

    def pair(name: str, spread: float, ratio: float) -> tuple[dict, dict]:
        def row(logs):
            return rounds_row("64x1000", list(1e-3 * np.exp(logs)), implementation=name)

        return row(spread * z), row(np.log(ratio) + spread * z[::-1])

    pairs = [pair(f"torch:typical{i}", 0.2, 1.0) for i in range(5)]
    pairs += [pair("torch:lucky", 0.01, 1.12), pair("torch:noisy", 0.25, 1.5)]
    result = compare(tmp_path, {"timing": [b for b, _ in pairs]}, {"timing": [n for _, n in pairs]})
    assert set(result.regressions["implementation"]) == {"torch:noisy"}
    assert "moderated" in result.render("table")
