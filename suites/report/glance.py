"""The report at a glance: one screen of plain text, printed by ``xentbench report`` and written
beside the report as ``summary.txt``.

It answers the main job's questions in the order a new reader asks them: how each backend did,
which findings to look at first (the ``defect?`` ones a careful kernel does better on), the
causes several findings share, the fastest implementation per op, and where the full report is.
It is built from the same frames and findings as the report, so the two never disagree.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pandas as pd

from xentbench.suites.findings.careful import careful_sentence, severity_key, triage
from xentbench.suites.findings.group import Finding
from xentbench.suites.findings.tables import FindingsOfRuns
from xentbench.suites.findings.upstream_top import is_own
from xentbench.suites.judge.verdicts import FAILURES
from xentbench.suites.report.accuracy import is_baseline, verdict_counts
from xentbench.suites.report.timing import fastest_table

WIDTH = 100
LOOK_FIRST = 3  # defect? findings listed
CAUSES = 2  # shared causes listed


def glance(
    infos: list[tuple[Path, dict]],
    accuracy: pd.DataFrame,
    timing: pd.DataFrame,
    findings: FindingsOfRuns | None,
    report_dir: Path,
    files: list[str],
) -> str:
    """The plain-text summary of a report written into ``report_dir`` (``files``: its files)."""
    confirmed = _look_first(findings) if findings is not None else []
    listed = _worst_distinct(confirmed)
    parts = [_title(infos, accuracy, timing)]
    if not accuracy.empty:
        parts.append(_accuracy(accuracy))
    if findings is not None and findings.findings:
        parts.append(_findings(findings, confirmed, listed))
    if not timing.empty:
        parts.append(_fastest(timing))
    parts.append(_where(report_dir, files, infos, listed[0].id if listed else ""))
    return "\n\n".join(part for part in parts if part) + "\n"


def _wrap(text: str, indent: str = "") -> str:
    """Filled to ``WIDTH``; names, paths and ids are never broken (they are copied from here)."""
    return textwrap.fill(
        text,
        WIDTH,
        initial_indent=indent,
        subsequent_indent=indent + "    ",
        break_long_words=False,
        break_on_hyphens=False,
    )


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}" + ("" if n == 1 else "s")


def _title(infos: list[tuple[Path, dict]], accuracy: pd.DataFrame, timing: pd.DataFrame) -> str:
    frames = [f for f in (accuracy, timing) if not f.empty]
    backends = sorted(set().union(*(set(f["backend"]) for f in frames)))
    devices = sorted(set().union(*(set(f["device"]) for f in frames)) - {""})
    runs = ", ".join(str(info.get("run_id", run_dir.name)) for run_dir, info in infos)
    runs = f"{'runs' if len(infos) > 1 else 'run'} {runs}"
    profiles = {_profile_name(info) for _, info in infos if info.get("timing_profile")}
    profile = f"; timing profile {', '.join(sorted(profiles))}" if profiles else ""
    return _wrap(
        f"xentbench report of {runs}: {_count(len(backends), 'backend')} "
        f"({', '.join(backends)}) on {', '.join(devices) or 'no device'}{profile}."
    )


def _profile_name(info: dict) -> str:
    profile = info["timing_profile"]
    return str(profile.get("name", "?")) if isinstance(profile, dict) else str(profile)


def _accuracy(accuracy: pd.DataFrame) -> str:
    """Failing evaluations in all, then the per-backend verdict counts (baselines apart)."""
    baselines = is_baseline(accuracy)
    judged = accuracy[~baselines]
    counts = judged["verdict"].value_counts()
    failing = sum(int(counts.get(v, 0)) for v in FAILURES)
    evaluated = failing + int(counts.get("pass", 0))
    detail = ", ".join(f"{int(counts.get(v, 0)):,} {v}" for v in reversed(FAILURES))
    head = _wrap(
        f"Accuracy: {failing:,} of {evaluated:,} evaluations fail ({detail}) against the exact "
        f"reference; {int(counts.get('unsupported', 0)):,} unsupported combinations are not "
        "counted. Per backend:"
    )
    return head + "\n" + _text_table(verdict_counts(judged).drop(columns="version"))


def _text_table(frame: pd.DataFrame, indent: str = "  ") -> str:
    """Columns of words left-aligned, of counts right-aligned (thousands separated)."""
    numbers = set(frame.select_dtypes("number").columns)
    cells = {
        column: [column, *(f"{v:,}" if column in numbers else str(v) for v in frame[column])]
        for column in frame.columns
    }
    widths = {column: max(map(len, values)) for column, values in cells.items()}
    lines = []
    for i in range(len(frame) + 1):
        row = [
            cells[c][i].rjust(widths[c]) if c in numbers else cells[c][i].ljust(widths[c])
            for c in frame.columns
        ]
        lines.append(indent + "  ".join(row).rstrip())
    return "\n".join(lines)


def _findings(result: FindingsOfRuns, confirmed: list[Finding], listed: list[Finding]) -> str:
    """The counts per class, the defect? findings to look at first (``confirmed``, of which
    ``listed`` are shown), the largest shared causes."""
    per_class = ", ".join(f"{n} {klass}" for klass, n in result.counts().items() if n)
    blocks = [
        _wrap(
            f"Findings: {len(result.findings)} ({per_class}) behind {result.failing:,} failing "
            "evaluations; `defect?` ones have no known explanation."
        )
    ]
    if confirmed:
        blocks.append(
            _wrap(
                f"Look first: {_count(len(confirmed), '`defect?` finding')} of the frameworks "
                "and plugins where a careful kernel passes on the same input; the worst, one per "
                "cause:"
            )
        )
        blocks += [_finding_lines(f) for f in listed]
    else:
        unexplained = sum(1 for f in result.findings if triage(f) == "unexplained")
        blocks.append(
            _wrap(
                "No `defect?` finding of a framework or plugin is confirmed by a careful "
                f"kernel; {unexplained} are unexplained (no careful comparison, or the careful "
                "kernel fails too)."
            )
        )
    if result.causes:
        biggest = sorted(result.causes, key=lambda c: -len(c.members))[:CAUSES]
        blocks.append(
            _wrap(
                f"Causes shared by several findings: {len(result.causes)} (fix or report each "
                "once); the largest:"
            )
        )
        blocks += [
            _wrap(f"{c.id} ({len(c.members)} findings) {c.description}", "  ") for c in biggest
        ]
    return "\n".join(blocks)


def _look_first(result: FindingsOfRuns) -> list[Finding]:
    """The confirmed defect? findings (``triage``) but those of xentbench's own formulas and
    compositions (``is_own``): what a framework or a plugin gets wrong."""
    return [f for f in result.findings if triage(f) == "confirmed" and not is_own(f.implementation)]


def _worst_distinct(findings: list[Finding]) -> list[Finding]:
    """The most severe findings (``severity_key``, as ``findings --upstream-top`` ranks them),
    at most one per shared cause, ``LOOK_FIRST`` of them."""
    chosen, causes = [], set()
    for finding in sorted(findings, key=severity_key):
        if finding.cause and finding.cause in causes:
            continue
        causes.add(finding.cause or finding.id)
        chosen.append(finding)
        if len(chosen) == LOOK_FIRST:
            break
    return chosen


def _finding_lines(finding: Finding) -> str:
    case = finding.worst_case or (finding.cases[0] if finding.cases else "")
    first = f"{finding.id} {finding.implementation} {finding.quantity}: {finding.failure_mode}"
    second = f"worst on {case}: {careful_sentence(finding)}"
    return _wrap(first, "  ") + "\n" + _wrap(second, "      ")


def _fastest(timing: pd.DataFrame) -> str:
    """The fastest implementation of each op at its largest timed shape, per pass."""
    dtype, table = fastest_table(timing)
    if table.empty:
        return ""
    passes = [c for c in ("forward", "forward+backward") if c in table.columns]
    if "options" in table.columns:  # plain calls, where the training configuration was timed too
        table = table[table["options"].fillna("").eq("")]
    lines = [
        _wrap(
            f"Fastest here ({dtype}, median per call, “× ahead” of the runner-up), each op at "
            "its largest shape:"
        )
    ]
    for _, row in table.groupby("op", sort=False).tail(1).iterrows():
        cells = "; ".join(f"{p} {row[p]}" for p in passes if row[p] != "—")
        lines.append(_wrap(f"{row['op']} {row['shape']}: {cells}", "  "))
    return "\n".join(lines)


def _where(report_dir: Path, files: list[str], infos: list[tuple[Path, dict]], example: str) -> str:
    tables = [name for name in files if name.endswith(".csv")]
    plots = [name for name in files if name.endswith(".png")]
    lines = [
        _wrap(
            f"Full report: {report_dir / 'report.html'} (report.md beside it), with "
            f"{', '.join(tables) or 'no tables'} and {_count(len(plots), 'plot')}."
        )
    ]
    if len(infos) == 1:  # the commands take one run
        run = infos[0][0]
        lines.append(f"Every finding:  xentbench findings {run}")
        if example:
            lines.append(f"A reproducer:   xentbench repro {example} --run {run}")
    return "\n".join(lines)
