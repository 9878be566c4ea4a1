"""Grouping stored evaluations into findings: one per (implementation, quantity, failure mode,
cause), the cause being the catalogue entry that explains an evaluation ("" for none).

Splitting by cause keeps one explanation from hiding another: the NaN gradients of a special-value
case (a convention) and those of a zero cotangent on a masked row (an upstream bug) are two
findings, not one unexplained mixture. A finding's id names the failing behaviour, never the
catalogue (``finding_id``), so the same problem keeps its id from run to run and when an entry
comes to explain it (``compare`` reports new and vanished findings by id).
Each finding keeps the evaluation it would reproduce from: the smallest input showing the mode
(16-bit dtypes last, because a reproducer reads more easily in float32), the case and call
needed to draw it again.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from xentbench.suites.findings.modes import row_modes
from xentbench.suites.store.run_json import read_run_info

# Dtypes in the order a reproducer prefers them (plain NumPy dtypes first).
_DTYPE_PREFERENCE = {"float32": 0, "float64": 1, "float16": 2, "bfloat16": 3}


def finding_id(implementation: str, quantity: str, failure_mode: str, anchor: str = "") -> str:
    """The stable id of an implementation's quantity failing one way: a SHA-256 of the triple.
    Where the catalogue splits a triple's evaluations into several findings, the one holding
    the triple's first evaluation (``anchor_of``) keeps that id and each other one adds its own
    first evaluation (``anchor``): an id never names a catalogue entry or class."""
    text = f"{implementation}|{quantity}|{failure_mode}" + (f"|{anchor}" if anchor else "")
    return f"xf-{hashlib.sha256(text.encode()).hexdigest()[:8]}"


def anchor_of(group: pd.DataFrame) -> str:
    """A group's first evaluation, "case_id dtype mode device" in that order: what identifies
    a part of a split finding without naming what explains it."""
    columns = ["case_id", "dtype", "mode", "device"]
    return min(" ".join(str(v) for v in values) for values in group[columns].itertuples(False))


@dataclass
class Sample:
    """One stored evaluation of a finding: enough to draw its input again and call it."""

    case_id: str
    dtype: str
    device: str
    mode: str
    seed: int
    run_dir: str


@dataclass
class Finding:
    """One problem: an implementation's quantity failing one way, over many evaluations."""

    id: str
    implementation: str
    backend: str
    op: str
    quantity: str
    failure_mode: str
    evaluations: int
    dtypes: list[str]
    modes: list[str]
    devices: list[str]
    families: list[str]
    cases: list[str]
    worst_ratio: float
    worst_ulp_error: float
    worst_abs_error: float
    versions: list[str]
    sample: Sample
    klass: str = "defect?"
    evidence: dict[str, Any] = field(default_factory=dict)
    entry: str = ""  # the id of the catalogue entry that classified it
    # The careful kernel's error / allowance on the input of the finding's worst evaluation,
    # and its worst over every evaluation of the finding (NaN: not computed or not applicable;
    # suites.findings.careful).
    careful_ratio: float = math.nan
    careful_worst_ratio: float = math.nan
    worst_case: str = ""  # the case and dtype of the worst evaluation, "case_id dtype"
    cause: str = ""  # the key of the cause it shares with other findings (suites.findings.causes)

    @property
    def evidence_url(self) -> str:
        return str(self.evidence.get("url", ""))

    def as_record(self) -> dict[str, Any]:
        """The JSON record (``xentbench findings --format json``)."""
        return {
            "id": self.id,
            "implementation": self.implementation,
            "backend": self.backend,
            "op": self.op,
            "quantity": self.quantity,
            "failure_mode": self.failure_mode,
            "class": self.klass,
            "evidence_url": self.evidence_url,
            "evidence": self.evidence,
            "catalogue_entry": self.entry,
            "dtypes": self.dtypes,
            "modes": self.modes,
            "devices": self.devices,
            "families": self.families,
            "cases": self.cases,
            "evaluations": self.evaluations,
            "worst_ratio": _json_float(self.worst_ratio),
            "worst_ulp_error": _json_float(self.worst_ulp_error),
            "worst_abs_error": _json_float(self.worst_abs_error),
            "careful_ratio": _json_float(self.careful_ratio),
            "careful_worst_ratio": _json_float(self.careful_worst_ratio),
            "worst_case": self.worst_case,
            "cause": self.cause,
            "versions": self.versions,
            "sample": vars(self.sample),
        }


def _json_float(value: float) -> float | str | None:
    """JSON has no inf or NaN: inf is written "inf", NaN (not measurable) null."""
    if math.isnan(value):
        return None
    return "inf" if math.isinf(value) else value


def _ratio(row: pd.Series, mode: str) -> float:
    """error / allowance for the finding's worst-error column: the stored ``worst_ratio``, or for
    runs stored before that column, inf for a wrong kind and max ULPs over the budget there."""
    if pd.notna(row.get("worst_ratio")):
        return float(row["worst_ratio"])
    budgeted = pd.notna(row.get("budget_ulps")) and row["budget_ulps"] > 0
    if mode in ("over-budget", "flushed-subnormal") and budgeted:
        return float(row["max_ulp_error"]) / float(row["budget_ulps"])
    if mode == "shift-variant" and pd.notna(row.get("budget_ulps")) and row["budget_ulps"] > 0:
        return float(row["shift_max_ulp_error"]) / float(row["budget_ulps"])
    return math.inf if row.get("verdict") == "wrong" else math.nan


def _abs_error(row: pd.Series) -> float:
    got, expected = row.get("got"), row.get("expected")
    if pd.notna(got) and pd.notna(expected) and math.isfinite(got) and math.isfinite(expected):
        return abs(float(got) - float(expected))
    return math.nan


def _nanmax(values) -> float:
    values = [v for v in values if not math.isnan(v)]
    return max(values) if values else math.nan


def exploded(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per (evaluation, failure mode): evaluations without a mode are dropped."""
    if rows.empty:
        return rows.assign(failure_mode=pd.Series(dtype=object))
    modes = [row_modes(r) for r in rows.to_dict("records")]
    frame = rows.assign(failure_mode=modes).explode("failure_mode")
    return frame[frame["failure_mode"].notna()].reset_index(drop=True)


# Families whose calls take options or saved inputs: their reproducers carry more (an OPTIONS
# dict, a weight), so a finding's sample comes from another family if it has one.
UNRENDERED_FAMILIES = frozenset({"options", "linear", "hunted", "hunt"})


def _sample(group: pd.DataFrame, seeds: dict[str, tuple[int, str]]) -> Sample:
    order = group.assign(
        _rendered=~group["family"].isin(UNRENDERED_FAMILIES),  # a reproducer can show it
        _dtype=group["dtype"].map(_DTYPE_PREFERENCE).fillna(9),
        _size=group["n_elements"].fillna(1 << 40),
    ).sort_values(
        ["_rendered", "_size", "_dtype", "case_id", "mode", "device"],
        ascending=[False, True, True, True, True, True],
    )
    best = order.iloc[0]
    seed, run_dir = seeds.get(best["run_id"], (0, ""))
    return Sample(best["case_id"], best["dtype"], best["device"], best["mode"], seed, run_dir)


def _worst_position(ratios: list[float]) -> int:
    """The position of the largest ratio (NaN counts lowest), 0 when none is measured."""
    ranked = [-math.inf if math.isnan(r) else r for r in ratios]
    return max(range(len(ranked)), key=ranked.__getitem__) if ranked else 0


def _finding(
    key: tuple[str, str, str, str], group: pd.DataFrame, seeds, first: dict[tuple, str]
) -> Finding:
    implementation, quantity, mode, cause = key
    anchor = anchor_of(group)
    anchor = "" if anchor == first[(implementation, quantity, mode)] else anchor
    ratios = [_ratio(row, mode) for _, row in group.iterrows()]
    worst = group.iloc[_worst_position(ratios)]
    careful = [float(r) for r in group["careful_ratio"]]
    ulps = group["shift_max_ulp_error"] if mode == "shift-variant" else group["max_ulp_error"]
    return Finding(
        id=finding_id(implementation, quantity, mode, anchor),
        implementation=implementation,
        backend=str(group["backend"].iloc[0]),
        op=str(group["op"].iloc[0]),
        quantity=quantity,
        failure_mode=mode,
        evaluations=len(group),
        dtypes=sorted(set(group["dtype"]), key=lambda d: _DTYPE_PREFERENCE.get(d, 9)),
        modes=sorted(set(group["mode"])),
        devices=sorted(set(group["device"])),
        families=sorted(set(group["family"])),
        cases=sorted(set(group["case_id"])),
        worst_ratio=_nanmax(ratios),
        worst_ulp_error=_nanmax([float(u) for u in ulps if pd.notna(u)]),
        worst_abs_error=_nanmax([_abs_error(row) for _, row in group.iterrows()]),
        versions=sorted({str(v) for v in group["backend_version"] if pd.notna(v)}),
        sample=_sample(group, seeds),
        entry=cause,
        careful_ratio=careful[_worst_position(ratios)],
        careful_worst_ratio=_nanmax(careful),
        worst_case=f"{worst['case_id']} {worst['dtype']}",
    )


def run_seeds(run_dirs: list[Path]) -> dict[str, tuple[int, str]]:
    """run id -> (seed, run directory), from each run's run.json."""
    seeds = {}
    for run_dir in run_dirs:
        info = read_run_info(Path(run_dir))
        seeds[str(info.get("run_id", Path(run_dir).name))] = (
            int(info.get("seed") or 0),
            str(run_dir),
        )
    return seeds


def group_findings(
    rows: pd.DataFrame,
    seeds: dict[str, tuple[int, str]],
    cause: Callable[[dict[str, Any]], str] | None = None,
    careful: Callable[[dict[str, Any], int], float] | None = None,
) -> list[Finding]:
    """Findings of the stored accuracy rows in a stable order; ``cause`` names what explains one
    (evaluation, failure mode) row (``suites.findings.known.cause_of``), else all are "";
    ``careful`` gives the careful kernel's ratio on a row's input with its run's seed
    (``suites.findings.careful.row_careful_ratio``), else NaN. Classes and evidence are given
    by ``suites.findings.known.classify``."""
    frame = exploded(rows)
    if frame.empty:
        return []
    records = frame.to_dict("records")
    causes = [cause(r) for r in records] if cause else [""] * len(frame)
    ratios = [careful(r, seeds.get(r["run_id"], (0, ""))[0]) for r in records] if careful else []
    frame = frame.assign(cause=causes, careful_ratio=ratios or [math.nan] * len(frame))
    triple = ["implementation", "quantity", "failure_mode"]
    first = {key: anchor_of(group) for key, group in frame.groupby(triple, sort=True)}
    grouped = frame.groupby([*triple, "cause"], sort=True)
    return [_finding(key, group, seeds, first) for key, group in grouped]
