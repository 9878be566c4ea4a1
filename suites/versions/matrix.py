"""The version matrix: one selection of the accuracy suite over several releases of a backend,
one worker per release's environment, each into a run directory of its own under the matrix
directory (so a second call resumes every one), merged into one findings table with a column
per release: the finding's worst verdict there, ``pass``, ``absent`` (failing another way),
``not installable``, or ``-`` (not evaluated there).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from xentbench.suites.findings.group import Finding, run_seeds
from xentbench.suites.findings.tables import findings_of_rows
from xentbench.suites.judge.verdicts import SEVERITY
from xentbench.suites.store.rows import load
from xentbench.suites.store.safe_paths import atomic_write_text
from xentbench.suites.versions.envs import Env

NOT_INSTALLABLE = "not installable"


@dataclass(frozen=True)
class Column:
    """One release of the matrix: its version, environment, and run directory."""

    version: str
    env: Env
    run_dir: Path


def cell(rows: pd.DataFrame, finding: Finding | None, implementation: str, quantity: str, cases):
    """A finding's cell in one release: its worst verdict there (``invariant`` for a broken
    invariant on passing rows) with the number of its evaluations when the release shows it;
    else ``pass`` when its implementation and quantity
    pass on its cases there, ``absent`` when they fail there another way, ``-`` when none
    was evaluated."""
    mine = rows[
        (rows["implementation"] == implementation)
        & (rows["quantity"] == quantity)
        & rows["case_id"].isin(finding.cases if finding else cases)
    ]
    verdicts = [v for v in mine["verdict"] if v in SEVERITY]
    if not verdicts:
        return "-"
    worst = max(verdicts, key=SEVERITY.__getitem__)
    if finding is not None:  # a finding on passing rows is an invariant they break
        return f"{worst if worst != 'pass' else 'invariant'} ({finding.evaluations})"
    return "pass" if worst == "pass" else "absent"


def matrix_table(columns: list[Column]) -> pd.DataFrame:
    """Every finding of any release as a row, a column per release."""
    loaded = {c.version: load([c.run_dir], "accuracy") if c.env.ready else None for c in columns}
    per_release: dict[str, dict[str, Finding]] = {}
    findings: dict[str, Finding] = {}
    for column in columns:
        rows = loaded[column.version]
        found = []
        if rows is not None and not rows.empty:
            found = findings_of_rows(rows, run_seeds([column.run_dir]), careful=False).findings
        per_release[column.version] = {finding.id: finding for finding in found}
        for finding in found:
            findings.setdefault(finding.id, finding)
    records = []
    for finding in findings.values():
        cases = sorted(
            {c for f in per_release.values() if finding.id in f for c in f[finding.id].cases}
        )
        record = {
            "finding": finding.id,
            "implementation": finding.implementation,
            "quantity": finding.quantity,
            "failure mode": finding.failure_mode,
        }
        for column in columns:
            rows = loaded[column.version]
            if rows is None:
                record[column.version] = NOT_INSTALLABLE
            elif rows.empty:
                record[column.version] = "-"
            else:
                here = per_release[column.version].get(finding.id)
                record[column.version] = cell(
                    rows, here, finding.implementation, finding.quantity, cases
                )
        records.append(record)
    frame = pd.DataFrame.from_records(records)
    if frame.empty:
        return frame
    return frame.sort_values(["implementation", "quantity", "failure mode"], ignore_index=True)


def write_matrix(out: Path, package: str, columns: list[Column], selection_text: str) -> Path:
    """``matrix.md`` and ``matrix.json`` in ``out``: the table, and each release's state."""
    table = matrix_table(columns)
    lines = [
        f"# Version matrix: {package}",
        "",
        f"Selection: {selection_text}. One run directory per release below this one; "
        "a cell is the finding's worst verdict in that release (`invariant` for an invariant "
        "broken on passing rows) with its number of evaluations; `pass` (its implementation "
        "and quantity pass on its cases there), "
        "`absent` (they fail there another way), `not installable`, or `-` (not evaluated).",
        "",
    ]
    for column in columns:
        state = f"`{column.run_dir.name}/`" if column.env.ready else column.env.failure
        lines.append(f"- {package} {column.version}: {state}")
    lines.append("")
    if table.empty:
        lines.append("No findings in any release.")
    else:
        lines.append(table.to_markdown(index=False))
    atomic_write_text(out, out / "matrix.md", "\n".join(lines) + "\n")
    state = {
        "package": package,
        "selection": selection_text,
        "releases": {
            c.version: {"run_dir": c.run_dir.name, "failure": c.env.failure} for c in columns
        },
        "findings": table.to_dict("records"),
    }
    atomic_write_text(out, out / "matrix.json", json.dumps(state, indent=1) + "\n")
    return out / "matrix.md"
