"""The report's trivial-output guard: for each catalog case, dtype and quantity the runs
evaluated, the margin (error / allowance) by which each output that computes nothing
(``suites.judge.trivial``: zeros, a constant, the uniform distribution, a subsample rescaled)
fails there; a summary per op, dtype and quantity, and every case in ``trivial.csv``.

A margin above 1 is a failure (inf for a wrong kind, such as a finite number where the truth is
NaN); at or below 1 the trivial output would pass that case, which the summary counts. The
margins are those of the cases as the catalog draws them today from each run's seed.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from xentbench.reference.options import canonical
from xentbench.suites.accuracy.suite import case_exact, case_inputs, case_options
from xentbench.suites.catalog.case import LOGITS_OPS
from xentbench.suites.findings.group import run_seeds
from xentbench.suites.judge.trivial import TRIVIAL_OUTPUTS, trivial_margins
from xentbench.suites.report.format import number
from xentbench.suites.report.render import Section, Table

CALL = ["case_id", "op", "dtype", "quantity", "options", "seed"]
# Scalar options a run may pass beneath a case's own (``verify --label-smoothing 0.1``).
_SCALARS = {"reduction": str, "ignore_index": int}
_SCALARS.update(dict.fromkeys(("label_smoothing", "softcap", "temperature", "z_loss"), float))


def trivial_frame(accuracy: pd.DataFrame, run_dirs: list[Path]) -> pd.DataFrame:
    """One row per catalog call of the runs (case, dtype, quantity, options, seed) with each
    trivial output's margin (NaN where that output is not defined for the call)."""
    if accuracy.empty:
        return pd.DataFrame(columns=[*CALL, *TRIVIAL_OUTPUTS])
    seeds = {run_id: seed for run_id, (seed, _) in run_seeds(run_dirs).items()}
    rows = accuracy[(accuracy["source"] == "catalog") & accuracy["op"].isin(LOGITS_OPS)]
    seed = rows["run_id"].map(seeds).fillna(0).astype(int)
    calls = rows.assign(seed=seed, options=rows["options"].fillna(""))
    records = [_margins(call) for call in calls[CALL].drop_duplicates().itertuples(index=False)]
    return pd.DataFrame([r for r in records if r], columns=[*CALL, *TRIVIAL_OUTPUTS])


def _margins(call) -> dict[str, Any] | None:
    """The margins of one call; None when it cannot be redone (invalid input, where no number
    passes, or options that cannot be read back)."""
    own = case_options(call.case_id, call.dtype, call.seed, call.quantity)
    fixed = given_values(call.options, own)
    if fixed is None:
        return None
    exact = case_exact(call.case_id, call.dtype, call.seed, call.quantity, fixed)
    if isinstance(exact, ValueError):
        return None
    logits, labels = case_inputs(call.case_id, call.dtype, call.seed)
    options = {**dict(fixed), **own}
    margins = trivial_margins(call.op, call.quantity, call.dtype, logits, labels, exact, options)
    return {**call._asdict(), **{name: margins.get(name, math.nan) for name in TRIVIAL_OUTPUTS}}


def given_values(stored: str, own: dict[str, Any]) -> tuple | None:
    """The (name, value) pairs a row's stored options hold beyond its case's own, read back
    from ``canonical``'s text; None when they are not scalars read back exactly."""
    if stored == canonical(own):
        return ()
    pairs = dict(part.split("=", 1) for part in stored.split(",") if "=" in part)
    fixed = []
    for name, text in pairs.items():
        if name in own:
            continue
        if name not in _SCALARS:
            return None
        try:
            fixed.append((name, _SCALARS[name](text)))
        except ValueError:
            return None
    fixed_tuple = tuple(sorted(fixed))
    return fixed_tuple if canonical({**dict(fixed_tuple), **own}) == stored else None


def write_trivial_csv(frame: pd.DataFrame, out_dir: Path) -> dict[str, Path]:
    """``trivial.csv``: every call's margins (nothing when the runs hold no catalog call)."""
    if frame.empty:
        return {}
    frame.to_csv(out_dir / "trivial.csv", index=False)
    return {"trivial.csv": out_dir / "trivial.csv"}


def trivial_sections(frame: pd.DataFrame) -> list[Section]:
    """The summary per op, dtype and quantity: for each trivial output, the smallest margin
    by which it fails a case, and how many cases it would pass."""
    if frame.empty:
        return []
    table = []
    for (op, dtype, quantity), group in frame.groupby(["op", "dtype", "quantity"], sort=True):
        row = {"op": op, "dtype": dtype, "quantity": quantity, "cases": str(len(group))}
        for name in TRIVIAL_OUTPUTS:
            row[name] = _cell(group, name)
        table.append(row)
    text = (
        "How far outputs that compute nothing are from passing: per op, dtype and quantity, the "
        "smallest margin (error / allowance, a failure above 1; ∞ a wrong kind of number) by "
        "which each trivial output fails a case, then how many of the cases it would pass "
        "(where the answer is trivial by nature: equal logits, one class). `—`: not defined for "
        "these calls (uniform and subsample need a call without options). Every case: "
        "`trivial.csv`."
    )
    return [Section("Trivial-output guard", [text, Table(pd.DataFrame(table))])]


def _cell(group: pd.DataFrame, name: str) -> str:
    margins = group[name].dropna()
    if margins.empty:
        return "—"
    failing = margins[margins > 1]
    passes = int((margins <= 1).sum())
    least = float(failing.min()) if len(failing) else math.nan
    shown = "∞" if math.isinf(least) else number(least)
    smallest = "never fails" if failing.empty else f"≥ {shown}×"
    return smallest + (f"; passes {passes}" if passes else "")
