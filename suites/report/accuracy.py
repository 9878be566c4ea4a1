"""The report's accuracy sections: verdict counts, the matrix per dtype, every failure."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from xentbench.adapters.base import DTYPES, OPS
from xentbench.suites.catalog.cases import FAMILIES
from xentbench.suites.judge.budget import BUDGET_RULE, worked_examples_text
from xentbench.suites.judge.verdicts import ACCURACY_TIERS, FAILURES, SEVERITY, VERDICTS
from xentbench.suites.report import plots
from xentbench.suites.report.format import (
    error_cells,
    format_ulps,
    images,
    matrix_cell,
    number,
    rank,
    run_columns,
    short,
    varying,
)
from xentbench.suites.report.linear import linear_sections
from xentbench.suites.report.nats import nats_sections
from xentbench.suites.report.render import Section, Table

# Non-pass rows shown per implementation; accuracy.csv always keeps every row.
MAX_FAILURES_SHOWN = 15


def is_baseline(accuracy: pd.DataFrame) -> pd.Series:
    """Rows of baseline implementations (``Implementation.baseline``; older runs: none)."""
    if "baseline" not in accuracy:
        return pd.Series(False, index=accuracy.index)
    return accuracy["baseline"].map(lambda v: v is True or v == 1 or v == "True")


def budget_section() -> Section:
    """The error budget's rule (the one text in ``suites.judge.budget``) and its worked
    examples, computed by the same code that judges."""
    examples = "Worked examples (`suites.judge.budget.worked_example`, one row of C equal logits):"
    return Section("Error budget", [BUDGET_RULE, examples, worked_examples_text()], level=3)


def tier_table(accuracy: pd.DataFrame) -> pd.DataFrame:
    """Evaluations per implementation by accuracy tier, to rank implementations that pass."""
    measured = accuracy[accuracy["tier"].isin(ACCURACY_TIERS)] if "tier" in accuracy else None
    if measured is None or measured.empty:
        return pd.DataFrame()
    keys = [*run_columns(accuracy), "implementation", "dtype"]
    table = pd.crosstab([measured[k] for k in keys], measured["tier"])
    table = table.reindex(columns=list(ACCURACY_TIERS), fill_value=0)
    table.columns.name = None
    return table.reset_index()


def baseline_sections(accuracy: pd.DataFrame) -> list[Section]:
    """Baselines (implementations that demonstrate a lesson), counted apart from the others."""
    baselines = accuracy[is_baseline(accuracy)]
    if baselines.empty:
        return []
    keys = [*run_columns(accuracy), "implementation"]
    counts = pd.crosstab([baselines[k] for k in keys], baselines["verdict"])
    counts = counts.reindex(columns=list(VERDICTS), fill_value=0)
    counts.columns.name = None
    intro = (
        "Implementations their adapter declares baselines: they exist to show a lesson (the "
        "naive formulas overflow, probabilities fed where logits belong lose the tail) and are "
        "not counted in the summary or the failures above."
    )
    return [Section("Baselines", [intro, Table(counts.reset_index())])]


def verdict_counts(accuracy: pd.DataFrame) -> pd.DataFrame:
    """Evaluations per backend (and run) by verdict; ``evaluated`` excludes unsupported."""
    keys = [*run_columns(accuracy), "backend", "backend_version"]
    counts = pd.crosstab([accuracy[k] for k in keys], accuracy["verdict"])
    counts = counts.reindex(columns=list(VERDICTS), fill_value=0)
    counts.insert(0, "evaluated", counts[list(SEVERITY)].sum(axis=1))
    counts.columns.name = None
    return counts.reset_index().rename(columns={"backend_version": "version"})


def accuracy_matrix(accuracy: pd.DataFrame) -> pd.DataFrame:
    """Implementation × case family: worst verdict, failing/evaluated, largest ULP error."""
    keys = [*run_columns(accuracy), "op", "implementation", *varying(accuracy, ("device", "mode"))]
    columns = ["verdict", "max_ulp_error", "worst_ratio"]
    cells = accuracy.groupby([*keys, "family"], dropna=False)[columns].apply(matrix_cell)
    table = cells.unstack("family").fillna("")
    families = [f for f in FAMILIES if f in table.columns]
    table = table[families + sorted(set(table.columns) - set(families))].reset_index()
    table = table.assign(_op=rank(table["op"], OPS)).sort_values(["_op", "implementation"])
    table.columns.name = None
    return table.drop(columns="_op")


def accuracy_sections(
    accuracy: pd.DataFrame, plot_paths: list[Path], timing: pd.DataFrame | None = None
) -> list[Section]:
    if accuracy.empty:
        return [Section("Accuracy", ["No accuracy results in these runs."])]
    intro = (
        "One table per dtype. Each cell covers every case of the family (values and "
        "gradients): `pass 0.50` = all pass, largest error 0.50 ULP; `inaccurate 2/12, 7.5× "
        "allowance` = 2 of 12 fail, the worst element's error is 7.5 times its allowance; "
        "`wrong 3/12` = worst verdict wrong, 3 of 12 evaluations fail; empty = not evaluated."
    )
    sections = [Section("Accuracy", [intro]), budget_section()]
    tiers = tier_table(accuracy[~is_baseline(accuracy)])
    if not tiers.empty:
        tier_intro = (
            "Accuracy tiers (baselines excluded): correctly rounded = every element within 0.5 "
            "ULP, faithful = within 1 ULP, then within or over the budget, or wrong."
        )
        sections.append(Section("Accuracy tiers", [tier_intro, Table(tiers)], level=3))
    sections += nats_sections(accuracy[~is_baseline(accuracy)])
    for dtype in plots.ordered(accuracy["dtype"], DTYPES):
        matrix = accuracy_matrix(accuracy[accuracy["dtype"] == dtype])
        sections.append(Section(f"Accuracy matrix, {dtype}", [Table(matrix)], level=3))
    sections += linear_sections(accuracy, timing)  # timing: the linear op's time and memory
    if plot_paths:
        sections.append(
            Section("Error ratio per implementation and case", images(plot_paths), level=3)
        )
    return sections


def failure_sections(accuracy: pd.DataFrame) -> list[Section]:
    """Every non-pass result (unsupported excluded), grouped by implementation, worst first."""
    failing = accuracy[accuracy["verdict"].isin(FAILURES)]
    if failing.empty:
        return [] if accuracy.empty else [Section("Failures", ["Every evaluation passes."])]
    failing = failing.assign(_severity=failing["verdict"].map(SEVERITY))
    failing = failing.sort_values(["_severity", "worst_ratio"], ascending=False)
    intro = (
        f"{len(failing)} non-pass results, worst first; at most {MAX_FAILURES_SHOWN} per "
        "implementation are shown here, `accuracy.csv` holds all of them."
    )
    sections = [Section("Failures", [intro])]
    keys = [*run_columns(accuracy), "implementation"]
    extra = varying(accuracy, ("device", "mode"))
    groups = sorted(failing.groupby(keys, sort=False), key=lambda item: -len(item[1]))
    for key, rows in groups:
        title = " ".join(key if isinstance(key, tuple) else [key])
        title += f" ({_counted(rows['verdict'])})"
        blocks: list[Any] = [Table(_failure_table(rows.head(MAX_FAILURES_SHOWN), extra))]
        if len(rows) > MAX_FAILURES_SHOWN:
            blocks.append(f"… and {len(rows) - MAX_FAILURES_SHOWN} more in `accuracy.csv`.")
        sections.append(Section(title, blocks, level=3))
    return sections


def _failure_table(rows: pd.DataFrame, extra: list[str]) -> pd.DataFrame:
    where = rows["worst_index"].map(lambda i: f" at [{i}]" if i else "")
    detail = (
        rows["message"]
        .where(rows["message"] != "", "invariants failed: " + rows["invariant_failures"])
        .where((rows["message"] != "") | (rows["invariant_failures"] != ""), "")
    )
    errors = pd.DataFrame([error_cells(row) for _, row in rows.iterrows()], index=rows.index)
    options = {}
    if "options" in rows and rows["options"].fillna("").ne("").any():  # runs with option cases
        options = {"options": rows["options"].fillna("").map(short)}
    table = {
        "case": rows["case_id"],
        "dtype": rows["dtype"],
        **{column: rows[column] for column in extra},
        "quantity": rows["quantity"],
        **options,
        "verdict": rows["verdict"],
        "input": (rows["worst_input"] + where).map(short),
        "expected": rows["expected"].map(lambda v: number(v, ".9g")),
        "got": rows["got"].map(lambda v: number(v, ".9g")),
        **{column: errors[column] for column in errors.columns},
        "detail": detail.map(short),
    }
    return pd.DataFrame(table)


def invariant_sections(accuracy: pd.DataFrame) -> list[Section]:
    """Which implementations break which invariant, on how many evaluations, e.g. where.

    Listed apart from the failures: an invariant can break on a result whose verdict passes
    (shift invariance is judged on a second, shifted call).
    """
    if accuracy.empty:
        return []
    shifted = int(accuracy["shift"].notna().sum())
    intro = (
        "Invariants checked beside the verdicts (docs/reading-a-report.md). Shift invariance "
        f"was checked on {shifted} evaluations, those with a shift the dtype adds exactly; "
        "for it, the verdicts of the shifted calls and their worst error in ULPs."
    )
    broken = accuracy[accuracy["invariant_failures"] != ""]
    if broken.empty:
        return [Section("Invariants", [intro, "No evaluation breaks an invariant."])]
    broken = broken.assign(invariant=broken["invariant_failures"].str.split(",")).explode(
        "invariant"
    )
    keys = [*run_columns(accuracy), "implementation", "invariant", "dtype"]
    table = (
        broken.groupby(keys, sort=False)
        .agg(
            evaluations=("case_id", "size"),
            example=("case_id", "first"),
            quantity=("quantity", "first"),
            shifted_calls=("shift_verdict", _counted),
            worst_shifted_ulps=("shift_max_ulp_error", "max"),
        )
        .reset_index()
        .sort_values(["invariant", "evaluations"], ascending=[True, False])
    )
    shift_rows = table["invariant"] == "shift_invariance"
    table["worst_shifted_ulps"] = table["worst_shifted_ulps"].map(format_ulps).where(shift_rows, "")
    table["shifted_calls"] = table["shifted_calls"].where(shift_rows, "")
    return [Section("Invariants", [intro, Table(table)])]


def _counted(verdicts: pd.Series) -> str:
    """Verdict counts as text, e.g. "3 wrong, 1 inaccurate"."""
    counts = verdicts[verdicts != ""].value_counts()
    return ", ".join(f"{n} {v}" for v, n in counts.items())
