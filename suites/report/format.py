"""Formatting and table helpers shared by the report's sections (``suites.report.build``)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from xentbench.suites.judge.verdicts import FAILURES, SEVERITY
from xentbench.suites.report.render import Image

# Non-pass rows shown per implementation; accuracy.csv always keeps every row.
MAX_CELL = 80


def format_ulps(value: float) -> str:
    if value is None or math.isnan(value):
        return "—"
    if math.isinf(value):
        return "inf"
    return f"{value:.2f}" if value < 100 else f"{value:.3g}"


def format_seconds(value: float) -> str:
    """A duration with three significant digits and a readable unit (ns, µs, ms, s)."""
    if value is None or math.isnan(value):
        return "—"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if abs(value) >= scale:
            return f"{value / scale:.3g} {unit}"
    return f"{value / 1e-9:.3g} ns"


def number(value: float, spec: str = ".3g") -> str:
    return "—" if value is None or pd.isna(value) else format(value, spec)


def percent(fraction: float) -> str:
    if fraction is None or pd.isna(fraction):
        return "—"
    return f"{100 * fraction:.0f}%" if fraction >= 0.1 else f"{100 * fraction:.2g}%"


def short(text: Any, limit: int = MAX_CELL) -> str:
    text = " ".join(str(text).split()) if text is not None and not pd.isna(text) else ""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def clean(frame: pd.DataFrame) -> pd.DataFrame:
    """Missing strings become "" so grouping never drops rows."""
    text = [
        c
        for c in frame.columns
        if frame[c].dtype == object or pd.api.types.is_string_dtype(frame[c])
    ]
    return frame.fillna(dict.fromkeys(text, ""))


def run_columns(frame: pd.DataFrame) -> list[str]:
    """Provenance columns a table needs: run and host once rows come from several runs."""
    return ["run_id", "host"] if frame["run_id"].nunique() > 1 else []


def varying(frame: pd.DataFrame, columns: tuple[str, ...]) -> list[str]:
    return [c for c in columns if frame[c].nunique() > 1]


def rank(values: pd.Series, canonical: tuple[str, ...]) -> pd.Series:
    order = {v: i for i, v in enumerate(canonical)}
    return values.map(lambda v: order.get(v, len(order)))


def images(paths: list[Path]) -> list[Image]:
    return [Image(Path(p), Path(p).stem.replace("-", " ")) for p in paths]


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def error_cells(row: Any) -> dict[str, str]:
    """The error columns check, the report and compare all show, from one result row: the
    verdict's measure (error / allowance, max over elements) and, at that same element, the
    ULP error beside the budget in the same ULPs, and the absolute error beside the allowance;
    for a value in nats (log-probs, logsumexp, losses) the largest |got - t| over its elements.
    Rows of older runs (no worst-element or nats columns) show "—"."""
    get = row.get if hasattr(row, "get") else (lambda key, default=None: default)
    ulps, budget = get("ulp_error"), get("budget_ulps")
    absolute, allowed = get("abs_error"), get("allowance")
    return {
        "error/allowance": number(get("worst_ratio"), ".3g"),
        "ULPs (budget)": (
            f"{format_ulps(ulps)} ({format_ulps(budget)})" if _present(ulps) else "—"
        ),
        "abs error (allowance)": (
            f"{number(absolute, '.3g')} ({number(allowed, '.3g')})" if _present(absolute) else "—"
        ),
        "nats error": number(get("nats_error"), ".3g"),
    }


def matrix_cell(rows: pd.DataFrame) -> str:
    """One cell of an accuracy matrix (the family matrix, the linear op's quantities): the worst
    verdict, failing/evaluated, the largest ULP error or error/allowance."""
    evaluated = rows[rows["verdict"] != "unsupported"]
    if evaluated.empty:
        return "unsupported"
    worst = max(evaluated["verdict"], key=lambda v: SEVERITY.get(v, len(SEVERITY)))
    ulps = format_ulps(evaluated["max_ulp_error"].max())
    if worst == "pass":
        return f"pass {ulps}"
    failing = int(evaluated["verdict"].isin(FAILURES).sum())
    cell = f"{worst} {failing}/{len(evaluated)}"
    ratio = evaluated["worst_ratio"].max()
    return cell + (f", {ratio:.3g}× allowance" if worst == "inaccurate" else "")
