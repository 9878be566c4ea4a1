"""The report's linear cross-entropy section: loss, dX, dW and db verdicts per implementation.

The accuracy matrix folds quantities into one cell per case family; for the language-model head
the three gradients fail separately (a true-class gradient rounded in bfloat16 spoils dX and dW
while the loss passes), so this table gives each quantity its own column, one table per dtype.
"""

from __future__ import annotations

import pandas as pd

from adapters.base import DTYPES
from suites.report import plots
from suites.report.format import run_columns, varying
from suites.report.render import Section, Table

LINEAR_OP = "linear_cross_entropy"
COLUMNS = {"value": "loss", "grad_hidden": "dX", "grad_weight": "dW", "grad_bias": "db"}
INTRO = (
    "Per implementation and dtype, each quantity over every linear case: loss (value), "
    "dX = dL/dhidden, dW = dL/dweight, db = dL/dbias; `pass 0.50` = all pass, largest error "
    "0.50 ULP; `inaccurate 2/8` = 2 of 8 cases beyond budget. Time and peak memory: "
    "`tests/bench/linear_ce_benchmark.py` (one fresh process per measurement)."
)


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


def linear_sections(accuracy: pd.DataFrame) -> list[Section]:
    """One table per dtype, or nothing when no linear_cross_entropy row was evaluated."""
    rows = accuracy[accuracy["op"] == LINEAR_OP]
    if rows.empty:
        return []
    sections = [Section("Linear cross-entropy (loss, dX, dW, db)", [INTRO], level=3)]
    for dtype in plots.ordered(rows["dtype"], DTYPES):
        table = linear_matrix(rows[rows["dtype"] == dtype])
        sections.append(Section(f"Linear cross-entropy, {dtype}", [Table(table)], level=4))
    return sections
