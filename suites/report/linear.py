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

from xentbench.adapters.base import DTYPES, LINEAR_OP
from xentbench.suites.report import plots
from xentbench.suites.report.format import format_seconds, matrix_cell, run_columns, varying
from xentbench.suites.report.render import Section, Table

COLUMNS = {"value": "loss", "grad_hidden": "dX", "grad_weight": "dW", "grad_bias": "db"}
INTRO = (
    "Per implementation and dtype, each quantity over every linear case: loss (value), "
    "dX = dL/dhidden, dW = dL/dweight, db = dL/dbias; `pass 0.50` = all pass, largest error "
    "0.50 ULP; `inaccurate 2/8` = 2 of 8 cases beyond budget. Time (median per call) and "
    "peak memory (one call, beyond its inputs) come from the run's timing rows of the op, "
    'forward / forward+backward, "not timed" where there are none, and at language-model '
    "shapes from `tests/bench/linear_ce_benchmark.py --json RUN/linear-benchmark.json` (one "
    "fresh process per measurement) when the run directory holds its output; there the "
    "first call's peak (compilation, and the pool a JAX or TensorFlow allocator keeps, which "
    "hides later calls' memory) is given too."
)
PASS_ORDER = ("forward", "forward+backward")
NOT_TIMED = "not timed"
NOT_RUN = "not in this run"  # timed by the benchmark, not judged by the run (an optional plugin)


def _mib(value) -> str:
    return "—" if value is None or pd.isna(value) else f"{value / 2**20:.0f} MiB"


FIRST_CALL = "first_call_peak_bytes"


def _has_first_call_peaks(rows: pd.DataFrame) -> bool:
    return FIRST_CALL in rows.columns and rows[FIRST_CALL].notna().any()


def _shape_cells(of_shape: pd.DataFrame) -> tuple[str, str, str]:
    """Time, peak and first-call peak of one shape: forward / forward+backward, fastest row."""
    first = of_shape.sort_values("median_s").groupby("pass").first()
    passes = [p for p in PASS_ORDER if p in first.index]

    def peaks(column: str) -> str:
        if column not in first.columns:
            return "—"
        return " / ".join(_mib(first.loc[p, column]) for p in passes)

    time = " / ".join(format_seconds(first.loc[p, "median_s"]) for p in passes)
    return time, peaks("peak_bytes"), peaks(FIRST_CALL)


def cost_cells(timing: pd.DataFrame | None, dtype: str) -> pd.DataFrame:
    """Per implementation and mode: "time" and "peak memory" cells (forward /
    forward+backward, one entry per shape), and "first-call peak" where any row has one
    (the linear benchmark's: the growth of a pooling allocator), from ok timing rows of the
    op in ``dtype``; empty when there are none."""
    empty = pd.DataFrame(columns=["implementation", "mode", "time", "peak memory"])
    if timing is None or timing.empty or "op" not in timing.columns:
        return empty
    rows = timing[(timing["op"] == LINEAR_OP) & (timing["dtype"] == dtype)]
    rows = rows[rows["verdict"] == "ok"] if "verdict" in rows.columns else rows
    if rows.empty:
        return empty
    rows = rows.assign(mode=rows["mode"].fillna("eager") if "mode" in rows else "eager")
    records = []
    for (name, mode), mine in rows.groupby(["implementation", "mode"]):
        cells = {shape: _shape_cells(of) for shape, of in mine.groupby("shape", sort=False)}
        record = {
            "implementation": name,
            "mode": mode,
            "time": "; ".join(f"{c[0]} ({shape})" for shape, c in cells.items()),
            "peak memory": "; ".join(c[1] for c in cells.values()),
        }
        if _has_first_call_peaks(rows):
            record["first-call peak"] = "; ".join(c[2] for c in cells.values())
        records.append(record)
    return pd.DataFrame(records)


BENCHMARK_FILE = "linear-benchmark.json"


def benchmark_rows(run_dirs: list[Path]) -> pd.DataFrame:
    """Rows of ``tests/bench/linear_ce_benchmark.py --json RUN/linear-benchmark.json`` in a
    run directory, as timing rows of the op (time and peak memory at language-model shapes;
    the first call's peak is missing, NaN, in files written before it was measured)."""
    records = []
    for run_dir in run_dirs:
        path = Path(run_dir) / BENCHMARK_FILE
        if not path.is_file():
            continue
        for row in json.loads(path.read_text()):
            if "median_ms" not in row:
                continue
            records.append(
                {
                    "op": LINEAR_OP,
                    "implementation": row["implementation"],
                    "mode": row.get("mode", "eager"),
                    "dtype": row["dtype"],
                    "pass": row["pass"],
                    "shape": "x".join(str(n) for n in row["shape"]),
                    "median_s": row["median_ms"] / 1e3,
                    "peak_bytes": _bytes(row.get("peak_mib")),
                    FIRST_CALL: _bytes(row.get("first_call_peak_mib")),
                    "verdict": "ok",
                }
            )
    return pd.DataFrame(records)


def _bytes(mib: float | None) -> float | None:
    return None if mib is None else mib * 2**20


def with_costs(
    table: pd.DataFrame, timing: pd.DataFrame | None, dtype: str, mode: str = "eager"
) -> pd.DataFrame:
    """The verdict table with its time and peak-memory columns ("not timed" where absent),
    matched by implementation and mode (``mode``: the table's one mode when it has no column).
    Implementations only the benchmark timed (a plugin outside the run) get rows too, their
    verdict cells saying so, so every timed implementation is on the page."""
    costs = cost_cells(timing, dtype)
    if "mode" in table.columns:
        merged = table.merge(costs, on=["implementation", "mode"], how="outer")
    else:
        mine = costs[costs["mode"] == mode].drop(columns="mode")
        merged = table.merge(mine, on="implementation", how="outer")
    cost_columns = ("time", "peak memory", "first-call peak")
    for column in merged.columns:
        if column in cost_columns:
            merged[column] = merged[column].fillna(NOT_TIMED)
        elif column in COLUMNS.values():
            merged[column] = merged[column].fillna(NOT_RUN)
    return merged.fillna("")


def linear_matrix(accuracy: pd.DataFrame) -> pd.DataFrame:
    """Implementation × quantity for the linear op: the accuracy matrix's cells, per quantity."""
    rows = accuracy[accuracy["op"] == LINEAR_OP]
    keys = [*run_columns(rows), "implementation", *varying(rows, ("device", "mode"))]
    columns = ["verdict", "max_ulp_error", "worst_ratio"]
    cells = rows.groupby([*keys, "quantity"], dropna=False)[columns].apply(matrix_cell)
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
    modes = rows["mode"].dropna().unique() if "mode" in rows.columns else []
    mode = modes[0] if len(modes) == 1 else "eager"  # several: the table has a mode column
    for dtype in plots.ordered(rows["dtype"], DTYPES):
        table = with_costs(linear_matrix(rows[rows["dtype"] == dtype]), timing, dtype, mode)
        sections.append(Section(f"Linear cross-entropy, {dtype}", [Table(table)], level=4))
    return sections
