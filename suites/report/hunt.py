"""The report's hunt section: what ``xentbench hunt`` found next to what the catalog shows.

Per implementation, the worst input the hunt found (largest error / allowance; a wrong kind of
number counts as infinite) beside the worst catalog case; then every hunted failure the
catalog does not contain (the catalog's worst verdict for that implementation, dtype, mode and
quantity is less severe, or was not run), with the one line that promotes it into the catalog.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from xentbench.suites.judge.verdicts import FAILURES, SEVERITY
from xentbench.suites.report.format import number, short
from xentbench.suites.report.render import Section, Table

TARGET = ["implementation", "dtype", "device", "mode", "quantity"]
MAX_NEW_SHOWN = 40


def _ranked(rows: pd.DataFrame) -> pd.DataFrame:
    """Evaluated rows, worst first: by verdict severity, then ratio (NaN lowest)."""
    rows = rows[rows["verdict"].isin(list(SEVERITY))]
    return rows.assign(
        _severity=rows["verdict"].map(SEVERITY),
        _ratio=rows["worst_ratio"].fillna(-math.inf),
    ).sort_values(["_severity", "_ratio"], ascending=False)


def _worst(rows: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    return _ranked(rows).drop_duplicates(subset=keys, keep="first").set_index(keys)


def _ratio(verdict: str, ratio: float) -> str:
    return f"{verdict} ({number(ratio)})" if verdict else "not run"


def comparison_table(hunted: pd.DataFrame, catalog: pd.DataFrame) -> pd.DataFrame:
    """Per implementation: the hunt's worst (where) and the catalog's worst (which case)."""
    hunt_worst = _worst(hunted, ["implementation"])
    catalog_worst = _worst(catalog, ["implementation"]) if not catalog.empty else None
    table = []
    for impl, row in hunt_worst.iterrows():
        entry = {
            "implementation": impl,
            "hunt worst": _ratio(row["verdict"], row["worst_ratio"]),
            "hunt at": f"{row['dtype']} {row['quantity']}: {_input(row)}",
            "catalog worst": "not run",
            "catalog at": "",
        }
        if catalog_worst is not None and impl in catalog_worst.index:
            other = catalog_worst.loc[impl]
            entry["catalog worst"] = _ratio(other["verdict"], other["worst_ratio"])
            entry["catalog at"] = f"{other['dtype']} {other['quantity']}: {other['case_id']}"
        table.append(entry)
    return pd.DataFrame(table)


def new_failures(hunted: pd.DataFrame, catalog: pd.DataFrame) -> pd.DataFrame:
    """Hunted failures more severe than anything the catalog shows for the same target."""
    failing = _ranked(hunted[hunted["verdict"].isin(FAILURES)])
    if failing.empty:
        return failing
    known = _worst(catalog, TARGET)["verdict"] if not catalog.empty else pd.Series(dtype=object)
    catalog_verdict = [
        known.get(tuple(row[k] for k in TARGET), "") for _, row in failing.iterrows()
    ]
    failing = failing.assign(catalog=catalog_verdict)
    beyond = failing["verdict"].map(SEVERITY) > failing["catalog"].map(SEVERITY).fillna(-1)
    return failing[beyond]


def promotion_line(row: Any) -> str:
    """The catalog table row (``suites.catalog.cases.HUNTED``) that promotes a hunted input."""
    name = row["case_id"].rsplit("/", 1)[-1]
    files = f'"logits": "{name}-logits.npy"'
    labels = ""
    if row["op"] in (
        "softmax_cross_entropy",
        "sparse_softmax_cross_entropy",
        "sigmoid_cross_entropy",
    ):
        files += f', "labels": "{name}-labels.npy"'
        labels = ', labels="saved"'
    return (
        f'S("{name}", "saved", "hunted: {row["implementation"]} {row["verdict"]}", '
        f'{{{files}}}{labels}, ops=("{row["op"]}",), dtypes=("{row["dtype"]}",), '
        f"batch=1, classes={int(row['n_classes'])})"
    )


def hunt_sections(accuracy: pd.DataFrame) -> list[Section]:
    """The Hunt section, or nothing when no row came from a hunt."""
    if accuracy.empty or "source" not in accuracy.columns:
        return []
    hunted = accuracy[accuracy["source"] == "hunt"]
    hunted = hunted[~hunted["case_id"].str.endswith("/target")]
    crashed = accuracy[(accuracy["source"] == "hunt") & accuracy["case_id"].str.endswith("/target")]
    if hunted.empty and crashed.empty:
        return []
    catalog = accuracy[accuracy["source"] != "hunt"]
    intro = (
        "`xentbench hunt` searched each implementation's inputs for the largest error / "
        "allowance (`inf` = a wrong kind of number), from structured seeds by mutation, each "
        "kept input judged again against the exact reference. Hunted inputs are saved in the "
        "run directory under `hunt/<hash>-logits.npy` (and `-labels.npy`, `-exact.npz`)."
    )
    blocks: list[Any] = [intro, Table(comparison_table(hunted, catalog))]
    fresh = new_failures(hunted, catalog)
    if fresh.empty:
        blocks.append("Every hunted failure is also shown by the catalog.")
    else:
        blocks.append(
            f"{len(fresh)} hunted failures the catalog does not contain (its worst verdict for "
            "the same implementation, dtype, mode and quantity is less severe, or it was not "
            "run). To promote one, copy its `.npy` files into `suites/catalog/saved/` and add "
            "its line to `HUNTED` in `suites/catalog/cases.py`."
        )
        blocks.append(Table(_fresh_table(fresh.head(MAX_NEW_SHOWN))))
    if not crashed.empty:
        blocks.append(
            f"{len(crashed)} hunts crashed or timed out: "
            + ", ".join(
                f"`{r.implementation}` {r.dtype} {r.quantity} ({short(r.message, 60)})"
                for r in crashed.itertuples(index=False)
            )
        )
    return [Section("Hunt", blocks)]


def _fresh_table(rows: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "implementation": rows["implementation"],
            "dtype": rows["dtype"],
            "quantity": rows["quantity"],
            "verdict": rows["verdict"],
            "ratio": rows["worst_ratio"].map(number),
            "catalog": rows["catalog"].replace("", "not run"),
            "input": [_input(row) for _, row in rows.iterrows()],
            "case": rows["case_id"],
            "promote": [promotion_line(row) for _, row in rows.iterrows()],
        }
    )


def _input(row: Any) -> str:
    """The input behind the worst element, or the message where none was measured."""
    return short(row["worst_input"] or row["message"].split(";")[0], 70)
