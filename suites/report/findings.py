"""The report's opening section: the findings behind the failing evaluations
(``suites.findings``), the unexplained first; the per-evaluation sections follow for detail."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from xentbench.suites.findings.group import run_seeds
from xentbench.suites.findings.tables import (
    CAREFUL_INTRO,
    CAUSES_INTRO,
    LISTED,
    FindingsOfRuns,
    cause_rows,
    entry_rows,
    finding_rows,
    findings_of_rows,
)
from xentbench.suites.report.render import Section, Table


def report_findings(accuracy: pd.DataFrame, run_dirs: list[Path]) -> FindingsOfRuns:
    """The findings of the report's accuracy rows, the careful kernel's result on each."""
    return findings_of_rows(accuracy, run_seeds(run_dirs))


def findings_section(result: FindingsOfRuns) -> Section:
    """Causes shared by several findings, then findings per class (the defect?/upstream/documented
    ones listed beside the careful kernel's result on their input), the rest per entry."""
    blocks: list = [result.headline()]
    listed = [f for f in result.findings if f.klass in LISTED]
    summarised = [f for f in result.findings if f.klass not in LISTED]
    if result.causes:
        blocks += [CAUSES_INTRO, Table(cause_rows(result.causes))]
    if listed:
        blocks += [CAREFUL_INTRO, Table(finding_rows(listed))]
    if summarised:
        blocks += ["Convention and baseline findings, per catalogue entry:"]
        blocks.append(Table(entry_rows(summarised)))
    blocks.append(
        "`xentbench findings RUN --format json` lists every finding; "
        "`xentbench repro FINDING_ID --run RUN` writes its standalone reproducer; "
        "`xentbench findings RUN --upstream FINDING_ID --out DIR` its issue body."
    )
    return Section("Findings", blocks)
