"""Findings of stored runs, as the ``xentbench findings`` output (markdown or JSON) and as the
report's opening section."""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from xentbench.suites.findings.careful import (
    TRIAGE,
    careful_cell,
    careful_sentence,
    row_careful_ratio,
    triage,
)
from xentbench.suites.findings.causes import Cause, assign_causes
from xentbench.suites.findings.group import Finding, exploded, group_findings, run_seeds
from xentbench.suites.findings.known import CLASSES, UNMATCHED, cause_of, classify
from xentbench.suites.judge.verdicts import FAILURES
from xentbench.suites.store.rows import load
from xentbench.suites.store.schema import KEYS

# Classes listed finding by finding; the others are summarised per catalogue entry.
LISTED = (UNMATCHED, "upstream", "documented")


@dataclass
class FindingsOfRuns:
    """The classified findings of some runs and what they were grouped from."""

    findings: list[Finding]
    run_ids: list[str]
    failing: int  # failing evaluations (inaccurate, wrong, error)
    invariant_breaks: int  # passing evaluations that break an invariant
    causes: list[Cause] = field(default_factory=list)  # causes shared by several findings

    def counts(self) -> dict[str, int]:
        found = Counter(f.klass for f in self.findings)
        return {klass: found.get(klass, 0) for klass in CLASSES}

    def triage_counts(self) -> dict[str, int]:
        """Findings per triage state (``suites.findings.careful.triage``)."""
        found = Counter(triage(f) for f in self.findings)
        return {state: found.get(state, 0) for state in TRIAGE}

    def headline(self) -> str:
        per_class = ", ".join(f"{n} {klass}" for klass, n in self.counts().items())
        runs = ", ".join(f"`{r}`" for r in self.run_ids)
        triaged = self.triage_counts()
        return (
            f"**{len(self.findings)} findings** ({per_class}) behind {self.failing:,} failing "
            f"evaluations and {self.invariant_breaks:,} invariant breaks on passing ones "
            f"(run {runs}). `defect?` findings have no known explanation: look at them first. "
            f"Triage: {triaged['catalogued']} catalogued, {triaged['confirmed']} `defect?` "
            "confirmed (the careful kernel passes on the inputs where the implementation "
            f"fails), {triaged['unexplained']} `defect?` unexplained (no careful comparison, "
            "or the careful kernel fails too)."
        )


def findings_of_rows(
    rows: pd.DataFrame, seeds: dict[str, tuple[int, str]], careful: bool = True
) -> FindingsOfRuns:
    """Grouped and classified findings of accuracy rows (as ``suites.store.rows.load`` returns),
    with the careful kernel's ratio on each failing evaluation's input (``careful=False``
    leaves it out: ``compare`` needs only the ids) and the causes they share."""
    if rows.empty:
        return FindingsOfRuns([], [], 0, 0)
    measure = row_careful_ratio if careful else None
    findings = classify(group_findings(rows, seeds, cause_of, measure))
    passing = rows[rows["verdict"] == "pass"]
    breaking = exploded(passing).drop_duplicates(subset=["run_id", *KEYS["accuracy"]])
    return FindingsOfRuns(
        findings,
        sorted({str(run) for run in rows["run_id"].dropna()}),
        int(rows["verdict"].isin(FAILURES).sum()),
        len(breaking),
        assign_causes(findings),
    )


def findings_of_runs(run_dirs: list[Path], careful: bool = True) -> FindingsOfRuns:
    return findings_of_rows(load(run_dirs, "accuracy"), run_seeds(run_dirs), careful)


def _number(value: float) -> str:
    if math.isnan(value):
        return "—"
    return "∞" if math.isinf(value) else f"{value:.3g}"


def _cases(finding: Finding) -> str:
    first = finding.cases[0].split("/", 1)[1]
    more = f" +{len(finding.cases) - 1}" if len(finding.cases) > 1 else ""
    return f"{first}{more}"


def _evidence(finding: Finding) -> str:
    url = finding.evidence_url
    return f"[{finding.entry}]({url})" if url else finding.entry or "—"


def finding_rows(findings: list[Finding]) -> pd.DataFrame:
    """One table row per finding (the listed classes)."""
    return pd.DataFrame(
        [
            {
                "id": f"`{f.id}`",
                "class": f.klass,
                "implementation": f"`{f.implementation}`",
                "quantity": f.quantity,
                "failure mode": f.failure_mode,
                "dtypes": ", ".join(f.dtypes),
                "cases": _cases(f),
                "evaluations": str(f.evaluations),
                "worst error/allowance": _number(f.worst_ratio),
                "worst ULPs": _number(f.worst_ulp_error),
                "vs careful kernel": careful_cell(f),
                "evidence": _evidence(f),
            }
            for f in findings
        ],
        columns=[
            "id",
            "class",
            "implementation",
            "quantity",
            "failure mode",
            "dtypes",
            "cases",
            "evaluations",
            "worst error/allowance",
            "worst ULPs",
            "vs careful kernel",
            "evidence",
        ],
    )


def entry_rows(findings: list[Finding]) -> pd.DataFrame:
    """One row per catalogue entry for the summarised classes (convention, baseline)."""
    rows = []
    for entry in sorted({f.entry for f in findings}):
        members = [f for f in findings if f.entry == entry]
        implementations = sorted({f.implementation for f in members})
        rows.append(
            {
                "class": members[0].klass,
                "catalogue entry": _evidence(members[0]),
                "findings": str(len(members)),
                "evaluations": str(sum(f.evaluations for f in members)),
                "implementations": ", ".join(f"`{i}`" for i in implementations[:6])
                + (f" +{len(implementations) - 6}" if len(implementations) > 6 else ""),
                "failure modes": ", ".join(sorted({f.failure_mode for f in members})),
            }
        )
    return pd.DataFrame(rows)


def cause_rows(causes: list[Cause]) -> pd.DataFrame:
    """One row per cause shared by several findings, its members listed."""
    return pd.DataFrame(
        [
            {
                "cause": f"`{c.id}`",
                "what": c.description,
                "findings": str(len(c.members)),
                "members": ", ".join(
                    f"`{f.id}` `{f.implementation}` {f.quantity}" for f in c.members
                ),
            }
            for c in causes
        ],
        columns=["cause", "what", "findings", "members"],
    )


CAUSES_INTRO = (
    "Causes shared by several findings (same failure mode, op and worst case, or subnormals "
    "flushed in one backend): fix or report each once."
)
CAREFUL_INTRO = (
    "`vs careful kernel`: the implementation's worst error against that of a careful kernel "
    "(the budget's own algorithm, `careful:<op>`) on the same input, with the careful "
    "kernel's error / allowance in brackets."
)


def _markdown_table(frame: pd.DataFrame) -> str:
    """A pipe table without padding (cells are already formatted strings)."""
    lines = ["| " + " | ".join(frame.columns) + " |", "|" + " --- |" * len(frame.columns)]
    lines += ["| " + " | ".join(map(str, row)) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)


def render_markdown(result: FindingsOfRuns) -> str:
    """The headline, the defect?/upstream/documented findings one by one, the rest per entry."""
    listed = [f for f in result.findings if f.klass in LISTED]
    summarised = [f for f in result.findings if f.klass not in LISTED]
    lines = [result.headline(), ""]
    if result.causes:
        lines += [
            "### Causes",
            "",
            CAUSES_INTRO,
            "",
            _markdown_table(cause_rows(result.causes)),
            "",
        ]
    if listed:
        lines += [CAREFUL_INTRO, "", _markdown_table(finding_rows(listed)), ""]
    if summarised:
        lines += [
            "Convention and baseline findings, per catalogue entry (`--format json` lists each):",
            "",
            _markdown_table(entry_rows(summarised)),
            "",
        ]
    return "\n".join(lines)


def render_json(result: FindingsOfRuns) -> str:
    document: dict[str, Any] = {
        "runs": result.run_ids,
        "failing_evaluations": result.failing,
        "invariant_breaks": result.invariant_breaks,
        "counts": result.counts(),
        "triage": result.triage_counts(),
        "causes": [c.as_record() for c in result.causes],
        "findings": [
            {**f.as_record(), "careful": careful_sentence(f), "triage": triage(f)}
            for f in result.findings
        ],
    }
    return json.dumps(document, indent=2, ensure_ascii=False)


FINDING_CHANGE_COLUMNS = [
    "id",
    "class",
    "implementation",
    "quantity",
    "failure_mode",
    "evaluations",
]


def finding_changes(base: FindingsOfRuns, new: FindingsOfRuns) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(findings new in ``new``, findings of ``base`` gone from ``new``), matched by id."""

    def frame(findings: list[Finding]) -> pd.DataFrame:
        return pd.DataFrame(
            [
                [f.id, f.klass, f.implementation, f.quantity, f.failure_mode, f.evaluations]
                for f in findings
            ],
            columns=FINDING_CHANGE_COLUMNS,
        )

    base_ids = {f.id for f in base.findings}
    new_ids = {f.id for f in new.findings}
    appeared = [f for f in new.findings if f.id not in base_ids]
    vanished = [f for f in base.findings if f.id not in new_ids]
    return frame(appeared), frame(vanished)
