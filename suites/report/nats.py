"""The report's log-probability error in nats: per implementation and dtype, the worst
|got - t| of the values that are log-probabilities, log-normalisers or losses
(``suites.judge.measure.NATS_OPS``), and apart the sampled token's log-probability."""

from __future__ import annotations

import pandas as pd

from xentbench.adapters.base import DTYPES, OPS
from xentbench.suites.report import plots
from xentbench.suites.report.format import number, rank, run_columns
from xentbench.suites.report.render import Section, Table

SPARSE = "sparse_softmax_cross_entropy"
# Options under which the sparse cross-entropy's value is still -log p[label] per row.
_PER_ROW_OPTIONS = ("ignore_index", "class_axis", "reduction=none")

INTRO = (
    "The largest absolute error in nats (`nats_error`, |got − exact| over the elements) of "
    "every value that is a log-probability, a logsumexp or a loss, per implementation and "
    "dtype: the figure to hold against a tolerance when a trainer's and a generator's "
    "log-probabilities are compared. `inf` = a non-finite result where the truth is finite "
    "(or the reverse); empty = not evaluated."
)
SAMPLED = (
    "The sampled token's log-probability: the per-row sparse cross-entropy "
    "(`-log p[label]`, no reduction, smoothing or weights), worst error in nats."
)


def is_sampled_token_row(row: pd.Series) -> bool:
    """A sparse cross-entropy value that is -log p[label] per row (reference.options)."""
    if row["op"] != SPARSE or row["quantity"] != "value":
        return False
    options = [part for part in str(row.get("options") or "").split(",") if part]
    return all(part.startswith(_PER_ROW_OPTIONS) for part in options)


def worst_nats_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Implementation (and op) × dtype: the worst ``nats_error`` of ``rows``, formatted."""
    keys = [*run_columns(rows), "op", "implementation"]
    worst = rows.groupby([*keys, "dtype"], dropna=False)["nats_error"].max().unstack("dtype")
    dtypes = plots.ordered(pd.Series(worst.columns), DTYPES)
    table = worst[dtypes].map(lambda v: "" if pd.isna(v) else number(v, ".3g")).reset_index()
    table = table.assign(_op=rank(table["op"], OPS)).sort_values(["_op", "implementation"])
    table.columns.name = None
    return table.drop(columns="_op")


def nats_sections(accuracy: pd.DataFrame) -> list[Section]:
    """The nats tables (baselines excluded by the caller); a line for runs without the column
    (results schema before 6)."""
    title = "Log-probability error in nats"
    if accuracy.empty:
        return []
    measured = accuracy[accuracy["nats_error"].notna()] if "nats_error" in accuracy else None
    if measured is None or measured.empty:
        note = "These runs carry no `nats_error` (written before results schema 6)."
        return [Section(title, [INTRO, note], level=3)]
    blocks: list = [INTRO, Table(worst_nats_table(measured))]
    sampled = measured[measured.apply(is_sampled_token_row, axis=1)]
    if not sampled.empty:
        blocks += [SAMPLED, Table(worst_nats_table(sampled).drop(columns="op"))]
    return [Section(title, blocks, level=3)]
