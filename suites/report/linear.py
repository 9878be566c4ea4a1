"""The report's linear cross-entropy section: loss, dX, dW and db verdicts per implementation.

The accuracy matrix folds quantities into one cell per case family; for the language-model head
the three gradients fail separately (a true-class gradient rounded in bfloat16 spoils dX and dW
while the loss passes), so this table gives each quantity its own column, one table per dtype,
with each implementation's time and peak memory beside them, from the run's timing rows of the
op when there are any ("not timed" otherwise; peak memory needs ``--memory`` on a CPU).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from adapters.base import DTYPES, LINEAR_OP
from suites.report import plots
from suites.report.format import format_seconds, run_columns, varying
from suites.report.render import Section, Table

COLUMNS = {"value": "loss", "grad_hidden": "dX", "grad_weight": "dW", "grad_bias": "db"}
INTRO = (
    "Per implementation and dtype, each quantity over every linear case: loss (value), "
    "dX = dL/dhidden, dW = dL/dweight, db = dL/dbias; `pass 0.50` = all pass, largest error "
    "0.50 ULP; `inaccurate 2/8` = 2 of 8 cases beyond budget. Time (median per call) and "
    "peak memory (one call, beyond its inputs) come from the run's timing rows of the op, "
    'forward / forward+backward, "not timed" where there are none, and at language-model '
    "shapes from `tests/bench/linear_ce_benchmark.py --json RUN/linear-benchmark.json` (one "
    "fresh process per measurement) when the run directory holds its output."
)
PASS_ORDER = ("forward", "forward+backward")
NOT_TIMED = "not timed"


def _mib(value) -> str:
    return "—" if value is None or pd.isna(value) else f"{value / 2**20:.0f} MiB"


def cost_cells(timing: pd.DataFrame | None, dtype: str) -> pd.DataFrame:
    """Per implementation: "time" and "peak memory" cells (forward / forward+backward, one
    entry per shape), from ok timing rows of the op in ``dtype``; empty when there are none."""
    empty = pd.DataFrame(columns=["implementation", "time", "peak memory"])
    if timing is None or timing.empty or "op" not in timing.columns:
        return empty
    rows = timing[(timing["op"] == LINEAR_OP) & (timing["dtype"] == dtype)]
    rows = rows[rows["verdict"] == "ok"] if "verdict" in rows.columns else rows
    if rows.empty:
        return empty
    records = []
    for name, mine in rows.groupby("implementation"):
        times, peaks = [], []
        for shape, of_shape in mine.groupby("shape", sort=False):
            first = of_shape.sort_values("median_s").groupby("pass").first()
            passes = [p for p in PASS_ORDER if p in first.index]
            times.append(" / ".join(format_seconds(first.loc[p, "median_s"]) for p in passes))
            times[-1] += f" ({shape})"
            peak = first["peak_bytes"] if "peak_bytes" in first.columns else None
            peaks.append(" / ".join(_mib(peak.loc[p]) for p in passes) if peak is not None else "—")
        cells = {"time": "; ".join(times), "peak memory": "; ".join(peaks)}
        records.append({"implementation": name, **cells})
    return pd.DataFrame(records)


BENCHMARK_FILE = "linear-benchmark.json"


def benchmark_rows(run_dirs: list[Path]) -> pd.DataFrame:
    """Rows of ``tests/bench/linear_ce_benchmark.py --json RUN/linear-benchmark.json`` in a
    run directory, as timing rows of the op (time and peak memory at language-model shapes)."""
    records = []
    for run_dir in run_dirs:
        path = Path(run_dir) / BENCHMARK_FILE
        if not path.is_file():
            continue
        for row in json.loads(path.read_text()):
            if "median_ms" not in row:
                continue
            peak_mib = row.get("peak_mib")
            records.append(
                {
                    "op": LINEAR_OP,
                    "implementation": row["implementation"],
                    "dtype": row["dtype"],
                    "pass": row["pass"],
                    "shape": "x".join(str(n) for n in row["shape"]),
                    "median_s": row["median_ms"] / 1e3,
                    "peak_bytes": None if peak_mib is None else peak_mib * 2**20,
                    "verdict": "ok",
                }
            )
    return pd.DataFrame(records)


def with_costs(table: pd.DataFrame, timing: pd.DataFrame | None, dtype: str) -> pd.DataFrame:
    """The verdict table with its time and peak-memory columns ("not timed" where absent)."""
    merged = table.merge(cost_cells(timing, dtype), on="implementation", how="left")
    merged["time"] = merged["time"].fillna(NOT_TIMED)
    merged["peak memory"] = merged["peak memory"].fillna(NOT_TIMED)
    return merged


def linear_matrix(accuracy: pd.DataFrame) -> pd.DataFrame:
    """Implementation × quantity for the linear op: the accuracy matrix's cells, per quantity."""
    from suites.report.accuracy import _matrix_cell  # the one cell format

    rows = accuracy[accuracy["op"] == LINEAR_OP]
    keys = [*run_columns(rows), "implementation", *varying(rows, ("device", "mode"))]
    columns = ["verdict", "max_ulp_error", "worst_ratio"]
    cells = rows.groupby([*keys, "quantity"], dropna=False)[columns].apply(_matrix_cell)
    table = cells.unstack("quantity").fillna("")
    table = table[[q for q in COLUMNS if q in table.columns]].rename(columns=COLUMNS)
    table.columns.name = None
    return table.reset_index().sort_values("implementation")


def linear_sections(accuracy: pd.DataFrame, timing: pd.DataFrame | None = None) -> list[Section]:
    """One table per dtype, or nothing when no linear_cross_entropy row was evaluated."""
    rows = accuracy[accuracy["op"] == LINEAR_OP]
    if rows.empty:
        return []
    sections = [Section("Linear cross-entropy (loss, dX, dW, db)", [INTRO], level=3)]
    for dtype in plots.ordered(rows["dtype"], DTYPES):
        table = with_costs(linear_matrix(rows[rows["dtype"] == dtype]), timing, dtype)
        sections.append(Section(f"Linear cross-entropy, {dtype}", [Table(table)], level=4))
    return sections
