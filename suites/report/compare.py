"""Run against run: verdict changes, accuracy drift and timing changes beyond the noise.

Both runs are read from the results store and joined on ``KEYS[suite]``. The rules:

- **verdict**: a move to a more severe verdict (accuracy: pass < inaccurate < wrong < error;
  timing: ok < error) is a regression, a move to a less severe one an improvement. A move to or
  from ``unsupported`` changes coverage, not quality: it is listed under ``changes``.
- **ULP error** (accuracy, same verdict in both runs, both errors finite): a regression when
  the new max error exceeds the base one by more than ``ulp_threshold`` times (a ratio) *and*
  by at least ``MIN_ULP_CHANGE`` ULP; the floor keeps sub-ULP rounding noise (0.3 -> 0.7)
  out. An improvement is the same rule the other way.
- **time** (timing, ok in both runs): a slowdown or speed-up beyond the noise, decided from
  the raw samples by a U test and a threshold on the median ratio
  (``suites.report.compare_timing``).

Keys present in one run only are listed as ``added`` or ``removed``. A removed key is an
evaluation that vanished from the new run: as a CI gate, that fails like a regression
(``Comparison.failed``), since a run that stopped evaluating something proves nothing about it.
Findings (``suites.findings``) are matched by their stable id: ``new findings`` appear only in
the new run, ``vanished findings`` only in the base run (listed, not counted as regressions).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from xentbench.suites.findings.tables import (
    FINDING_CHANGE_COLUMNS,
    finding_changes,
    findings_of_runs,
)
from xentbench.suites.judge import verdicts
from xentbench.suites.report.changes import CHANGE_COLUMNS, KEY_COLUMNS, change_rows
from xentbench.suites.report.compare_timing import SHIFT_COLUMNS, rule_text, time_changes
from xentbench.suites.report.format import format_ulps
from xentbench.suites.store.rows import load
from xentbench.suites.store.run_json import read_run_info
from xentbench.suites.store.schema import KEYS, SUITES

DEFAULT_ULP_THRESHOLD = 2.0
DEFAULT_TIME_THRESHOLD = 0.10
DEFAULT_SIGNIFICANCE = 0.01
MIN_ULP_CHANGE = 1.0
SEVERITY: dict[str, dict[str, int]] = {
    "accuracy": verdicts.SEVERITY,
    "timing": {"ok": 0, "error": 1},
}
_KIND_ORDER = {"verdict": 0, "ulp": 1, "time": 2}
_UNIFY = {
    "accuracy": {"case_id": "case", "quantity": "detail"},
    "timing": {"shape": "case", "pass": "detail"},
}
_MAX_LISTED = 50
_SHIFT_TEXT = (
    "How each backend's timings moved (new over base: the median ratio and the middle 80% of "
    "them) beside the background of each run (others: other processes' CPU on our cores, "
    "waited: our threads' run-queue wait, both per wall second). Nearly every timing of a "
    "backend moving together while the background differs is the machine, not the code: "
    "time both at once (run --suite timing --against) before reading those changes."
)


@dataclass
class Comparison:
    """The differences between a base run and a new run (see the module docstring for rules)."""

    base: dict[str, str]
    new: dict[str, str]
    ulp_threshold: float
    time_threshold: float
    regressions: pd.DataFrame
    improvements: pd.DataFrame
    changes: pd.DataFrame
    added: pd.DataFrame
    removed: pd.DataFrame
    significance: float = DEFAULT_SIGNIFICANCE
    normalise: bool = False

    @property
    def failed(self) -> bool:
        """Whether the new run fails the gate: a regression, or an evaluation that vanished."""
        return bool(len(self.regressions) or len(self.removed))

    new_findings: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(columns=FINDING_CHANGE_COLUMNS)
    )
    vanished_findings: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(columns=FINDING_CHANGE_COLUMNS)
    )
    timing_by_backend: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(columns=SHIFT_COLUMNS)
    )

    @property
    def interleaved(self) -> bool:
        """Whether the two runs were timed together, their rounds taking turns (run --against)."""
        return (
            self.base.get("interleaved_with") == self.new["run_id"]
            and self.new.get("interleaved_with") == self.base["run_id"]
        )

    @property
    def note(self) -> str:
        """A caveat the reader needs: timings from different hosts also compare machines;
        timings taken one run after the other also compare the machine's background."""
        if self.base["host"] != self.new["host"]:
            return "the runs come from different hosts, so time changes include the machine."
        if not self.timing_by_backend.empty and not self.interleaved:
            return (
                "the runs were timed one after the other, so time changes include any change "
                "of the machine's background between them (see Timing by backend); to gate "
                "on time, time both at once: xentbench run --suite timing --against DIR."
            )
        return ""

    def render(self, format: str = "table") -> str:
        """The comparison as ``"table"`` (markdown, readable as plain text) or ``"json"``."""
        if format == "json":
            return json.dumps(self._as_dict(), indent=2, ensure_ascii=False)
        if format == "table":
            return self._as_markdown()
        raise ValueError(f"unknown format {format!r}; valid: table, json")

    def _sections(self) -> dict[str, pd.DataFrame]:
        return {
            "regressions": self.regressions,
            "improvements": self.improvements,
            "changes": self.changes,
            "added": self.added,
            "removed": self.removed,
            "new_findings": self.new_findings,
            "vanished_findings": self.vanished_findings,
        }

    def _as_dict(self) -> dict:
        return {
            "base": self.base,
            "new": self.new,
            "note": self.note,
            "interleaved": self.interleaved,
            "thresholds": {
                "ulp_ratio": self.ulp_threshold,
                "min_ulp_change": MIN_ULP_CHANGE,
                "time_fraction": self.time_threshold,
                "time_significance": self.significance,
                "time_normalised": self.normalise,
            },
            **{
                name: json.loads(frame.to_json(orient="records", double_precision=15))
                for name, frame in {
                    **self._sections(),
                    "timing_by_backend": self.timing_by_backend,
                }.items()
            },
        }

    def _as_markdown(self) -> str:
        counts = ", ".join(f"{len(frame)} {name}" for name, frame in self._sections().items())
        lines = [
            f"# Comparison: `{self.base['run_id']}` ({self.base['host']}) -> "
            f"`{self.new['run_id']}` ({self.new['host']})",
            "",
            f"**{counts}.**",
            "",
            *(
                ["Timed together: the runs' rounds took turns (run --against).", ""]
                if self.interleaved
                else []
            ),
            *([f"Note: {self.note}", ""] if self.note else []),
            f"Regression rules: a verdict more severe; max ULP error more than "
            f"{self.ulp_threshold:g}x and at least {MIN_ULP_CHANGE:g} ULP higher; "
            + rule_text(self.time_threshold, self.significance, self.normalise)
            + ".",
        ]
        titles = {
            "changes": "coverage changes (to or from unsupported)",
            "removed": "removed (vanished from the new run: they fail the comparison)",
            "new_findings": "new findings",
            "vanished_findings": "vanished findings",
        }
        if not self.timing_by_backend.empty:
            lines += ["", "## Timing by backend", "", _SHIFT_TEXT, ""]
            lines.append(self.timing_by_backend.to_markdown(index=False))
        for name, frame in self._sections().items():
            lines += ["", f"## {titles.get(name, name).capitalize()}: {len(frame)}", ""]
            if frame.empty:
                lines.append("None.")
                continue
            lines.append(_markdown_table(frame.head(_MAX_LISTED)))
            if len(frame) > _MAX_LISTED:
                lines += ["", f"... and {len(frame) - _MAX_LISTED} more (all are in the JSON)."]
        return "\n".join(lines) + "\n"


def _markdown_table(frame: pd.DataFrame) -> str:
    shown = frame.drop(columns=["base_value", "new_value"], errors="ignore")
    if "ratio" in shown:
        shown = shown.assign(ratio=shown["ratio"].map(lambda r: "" if pd.isna(r) else f"{r:.2f}×"))
    if "p_value" in shown:
        p_text = shown["p_value"].map(lambda p: "" if pd.isna(p) else f"{p:.2g}")
        shown = shown.assign(p_value=p_text)
    return shown.fillna("").astype(str).to_markdown(index=False, disable_numparse=True)


def compare_runs(
    base_dir: Path,
    new_dir: Path,
    *,
    ulp_threshold: float = DEFAULT_ULP_THRESHOLD,
    time_threshold: float = DEFAULT_TIME_THRESHOLD,
    significance: float = DEFAULT_SIGNIFICANCE,
    normalise: bool = False,
) -> Comparison:
    """Compare the stored results of ``new_dir`` against ``base_dir``."""
    for run_dir in (base_dir, new_dir):
        if not Path(run_dir).is_dir():
            raise FileNotFoundError(f"no such run directory: {run_dir}")
    if ulp_threshold < 1 or time_threshold < 0 or not 0 < significance < 1:
        raise ValueError(
            "ulp_threshold is a ratio >= 1, time_threshold a fraction >= 0 and significance "
            "a probability in (0, 1)"
        )
    time_rule = {"threshold": time_threshold, "significance": significance, "normalise": normalise}
    found, added, removed, shifts = [], [], [], None
    for suite in SUITES:
        merged = _join(suite, base_dir, new_dir)
        added.append(merged.loc[merged["_merge"] == "right_only", KEY_COLUMNS])
        removed.append(merged.loc[merged["_merge"] == "left_only", KEY_COLUMNS])
        both = merged[merged["_merge"] == "both"]
        found.append(_verdict_changes(suite, both))
        found.append(_ulp_changes(both, ulp_threshold) if suite == "accuracy" else None)
        if suite == "timing":
            changes, shifts = time_changes(both, **time_rule)
            found.append(changes)
    by_direction = _by_direction(_concat(found, [*CHANGE_COLUMNS, "direction"]))
    new_findings, vanished_findings = finding_changes(
        findings_of_runs([Path(base_dir)], careful=False),
        findings_of_runs([Path(new_dir)], careful=False),
    )
    return Comparison(
        base=_run_summary(base_dir),
        new=_run_summary(new_dir),
        ulp_threshold=ulp_threshold,
        time_threshold=time_threshold,
        regressions=by_direction["regression"],
        improvements=by_direction["improvement"],
        changes=by_direction["change"],
        added=_concat(added, KEY_COLUMNS),
        removed=_concat(removed, KEY_COLUMNS),
        significance=significance,
        normalise=normalise,
        new_findings=new_findings,
        vanished_findings=vanished_findings,
        timing_by_backend=shifts,
    )


def _by_direction(found: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Findings split into regression / improvement / change, verdicts first, then ULP, time."""
    found = found.assign(_kind=found["kind"].map(_KIND_ORDER))
    found = found.sort_values(["suite", "_kind", "implementation", "case", "dtype"])
    return {
        direction: found[found["direction"] == direction]
        .drop(columns=["direction", "_kind"])
        .reset_index(drop=True)
        for direction in ("regression", "improvement", "change")
    }


def _join(suite: str, base_dir: Path, new_dir: Path) -> pd.DataFrame:
    """Both runs' rows side by side (suffixes ``_base``/``_new``), in the shared key layout."""
    keys = list(KEYS[suite])
    # Object keys: pandas cannot join two empty Arrow-backed string columns.
    base, new = (
        load([run_dir], suite).astype(dict.fromkeys(keys, object))
        for run_dir in (base_dir, new_dir)
    )
    merged = base.merge(new, on=keys, how="outer", suffixes=("_base", "_new"), indicator=True)
    merged = merged.rename(columns=_UNIFY[suite]).assign(suite=suite)
    if suite == "timing" and "options" in merged:  # a plain and a training row of one shape
        options = merged["options"].fillna("").astype(str)
        labelled = merged["detail"].astype(str) + " [" + options + "]"
        merged["detail"] = merged["detail"].where(options.eq(""), labelled)
    return merged


def _concat(frames: list[pd.DataFrame | None], columns: list[str]) -> pd.DataFrame:
    frames = [frame for frame in frames if frame is not None and not frame.empty]
    if not frames:
        return pd.DataFrame(columns=columns)
    return pd.concat(frames, ignore_index=True)[columns]


def _run_summary(run_dir: Path) -> dict[str, str]:
    info = read_run_info(run_dir)
    return {
        "run_id": str(info.get("run_id", Path(run_dir).name)),
        "host": str(info.get("host", "?")),
        "path": str(run_dir),
        "interleaved_with": str(info.get("interleaved_with", "")),
    }


def _verdict_changes(suite: str, both: pd.DataFrame) -> pd.DataFrame:
    changed = both[both["verdict_base"] != both["verdict_new"]]
    old = changed["verdict_base"].map(SEVERITY[suite])
    new = changed["verdict_new"].map(SEVERITY[suite])
    direction = np.select(
        [old.isna() | new.isna(), new > old], ["change", "regression"], default="improvement"
    )
    text = (changed["verdict_base"], changed["verdict_new"])
    return change_rows(changed, "verdict", text, (math.nan, math.nan), math.nan, direction)


def _ulp_changes(both: pd.DataFrame, ulp_threshold: float) -> pd.DataFrame:
    same = both[both["verdict_base"] == both["verdict_new"]]
    base, new = same["max_ulp_error_base"], same["max_ulp_error_new"]
    finite = np.isfinite(base) & np.isfinite(new)
    worse = finite & (new > base * ulp_threshold) & (new - base >= MIN_ULP_CHANGE)
    better = finite & (base > new * ulp_threshold) & (base - new >= MIN_ULP_CHANGE)
    moved = same[worse | better]
    ratio = (new / base.where(base > 0)).loc[moved.index]
    direction = np.where(worse.loc[moved.index], "regression", "improvement")
    values = (moved["max_ulp_error_base"], moved["max_ulp_error_new"])
    text = tuple(_error_text(moved, side) for side in ("base", "new"))
    return change_rows(moved, "ulp", text, values, ratio, direction)


def _error_text(rows: pd.DataFrame, side: str) -> pd.Series:
    """Max ULP error and the verdict's measure (error / allowance, as check and the report
    show it; absent in runs before schema 3)."""
    ratio = rows.get(f"worst_ratio_{side}", pd.Series(math.nan, index=rows.index))
    text = [
        f"{format_ulps(u)} ulp" + ("" if pd.isna(r) else f", error/allowance {r:.3g}")
        for u, r in zip(rows[f"max_ulp_error_{side}"], ratio, strict=True)
    ]
    return pd.Series(text, index=rows.index, dtype=object)
