"""An upstream-ready report of one finding: the issue body a framework maintainer would accept.

``xentbench findings RUN --upstream ID --out DIR`` writes ``DIR/<ID>.md`` and, beside it, the
finding's standalone reproducer ``DIR/<ID>.py`` (``suites.findings.repro``). The body holds a
title naming the API, the version and what goes wrong; a summary on the shrunk input (got,
expected and a careful float32 kernel's result, exact) with one named cause; the environment
and versions (``run.json``); expected against got at the worst stored element with exact values;
the careful kernel's result on the same input; the reproducer inline; the other implementations'
verdicts on the same case, dtype and quantity from the same run, and the findings sharing its
cause; and which catalogue entries (``known.toml``) it is not.
"""

from __future__ import annotations

import math
from fnmatch import fnmatchcase
from pathlib import Path

import pandas as pd

from xentbench.suites.findings.careful import careful_sentence
from xentbench.suites.findings.group import Finding
from xentbench.suites.findings.known import Entry, load_entries
from xentbench.suites.findings.repro import (
    NotReproducible,
    Reproducer,
    build_reproducer,
    write_reproducer,
)
from xentbench.suites.findings.upstream_cause import cause_line, minimal_summary, shared_with
from xentbench.suites.store.run_json import read_run_info

# What each failure mode is, in a title's words.
_WHAT = {
    "nan-for-finite": "returns NaN where the result is finite",
    "nan-for-infinite": "returns NaN where the result is infinite",
    "inf-for-finite": "returns inf where the result is finite",
    "wrong-infinity": "returns the wrong infinity",
    "finite-for-nonfinite": "returns a finite number where the result is NaN or infinite",
    "answers-invalid-input": "returns a number for an out-of-range class id",
    "raises-on-valid-input": "raises on valid input",
    "over-budget": "loses accuracy",
    "flushed-subnormal": "flushes subnormal results to zero",
    "shift-variant": "changes when the logits are shifted",
}


def title(finding: Finding) -> str:
    """The issue title: which API and version, what goes wrong, in which dtype, on what input."""
    case_id = finding.sample.case_id  # the reproducer's input
    dtype = finding.sample.dtype
    if len(finding.dtypes) > 1:
        dtype += f" (and {', '.join(d for d in finding.dtypes if d != finding.sample.dtype)})"
    what = _WHAT.get(finding.failure_mode, finding.failure_mode.replace("-", " "))
    if finding.failure_mode == "over-budget" and math.isfinite(finding.worst_ratio):
        what += f" (error up to {finding.worst_ratio:.3g} x the allowance a careful kernel meets)"
    api = finding.implementation.partition(":")[2]
    version = finding.versions[0] if finding.versions else finding.backend
    quantity = "" if finding.quantity == "value" else f" ({finding.quantity})"
    return f"`{api}`{quantity} {what} in {dtype} ({version}; {case_id.split('/', 1)[-1]})"


def _environment(finding: Finding) -> list[str]:
    info = read_run_info(Path(finding.sample.run_dir)) if finding.sample.run_dir else {}
    backends = info.get("backends", {})
    lines = [f"- {finding.backend}: {backends.get(finding.backend) or '; '.join(finding.versions)}"]
    for key in ("python", "platform", "cpu", "gpu"):
        if info.get(key):
            lines.append(f"- {key}: {info[key]}")
    run = info.get("run_id", "")
    lines.append(f"- measured by xentbench run `{run}` (commit {info.get('git_commit', '?')})")
    return lines


def _value(value) -> str:
    """A stored float exactly (repr and hex), or — for none."""
    if value is None:
        return "—"
    number = float(value)
    return f"{number!r} ({number.hex()})" if math.isfinite(number) else repr(number)


def worst_row(finding: Finding, rows: pd.DataFrame) -> pd.Series | None:
    """The stored evaluation of the finding's worst case and dtype (its worst by ratio)."""
    case_id, _, dtype = finding.worst_case.partition(" ")
    mine = rows[
        (rows["implementation"] == finding.implementation)
        & (rows["quantity"] == finding.quantity)
        & (rows["case_id"] == case_id)
        & (rows["dtype"] == dtype)
    ]
    if mine.empty:
        return None
    return mine.sort_values("worst_ratio", ascending=False, na_position="last").iloc[0]


def _expected_against_got(finding: Finding, row: pd.Series | None) -> list[str]:
    if row is None:
        return ["(the stored evaluation is not in the run directories given)"]
    facts = [
        ("case", f"`{row['case_id']}` (xentbench catalog, seed {finding.sample.seed})"),
        ("dtype, device, mode", f"{row['dtype']}, {row['device']}, {row['mode']}"),
    ]
    if row.get("verdict") == "error":  # no number came back: the exception is the result
        facts += [("got", f"`{row.get('message') or 'an exception'}`"), ("expected", "a result")]
    else:
        facts += [
            ("worst element", f"{row.get('worst_index') or '—'} {row.get('worst_input') or ''}"),
            ("got", _value(row.get("got"))),
            ("expected (exact, float64 nearest)", _value(row.get("expected"))),
            ("error in ULPs of the output dtype", _value(row.get("ulp_error"))),
            ("allowance (absolute)", _value(row.get("allowance"))),
            ("error / allowance", _value(row.get("worst_ratio"))),
        ]
    return ["| | |", "| --- | --- |", *[f"| {name} | {value} |" for name, value in facts]]


def others_on_same_input(finding: Finding, rows: pd.DataFrame) -> pd.DataFrame:
    """Every other implementation of the op on the worst case, dtype and quantity, same run."""
    case_id, _, dtype = finding.worst_case.partition(" ")
    same = rows[
        (rows["op"] == finding.op)
        & (rows["case_id"] == case_id)
        & (rows["dtype"] == dtype)
        & (rows["quantity"] == finding.quantity)
        & (rows["implementation"] != finding.implementation)
        & (rows["verdict"] != "unsupported")
    ]
    table = same[["implementation", "device", "mode", "verdict", "worst_ratio"]]
    return table.sort_values(["verdict", "implementation"]).reset_index(drop=True)


def _others_table(others: pd.DataFrame) -> list[str]:
    if others.empty:
        return ["No other implementation of this op was evaluated on this input in the run."]
    lines = ["| implementation | device | mode | verdict | error / allowance |", "|" + " --- |" * 5]
    for row in others.itertuples(index=False):
        ratio = "—" if pd.isna(row.worst_ratio) else f"{row.worst_ratio:.3g}"
        lines.append(
            f"| `{row.implementation}` | {row.device} | {row.mode} | {row.verdict} | {ratio} |"
        )
    return lines


def _not_these(finding: Finding, entries: tuple[Entry, ...]) -> list[str]:
    """The catalogue entries about this implementation, and that none of them explains it."""
    if finding.klass != "defect?":
        url = finding.evidence_url
        return [f"Known: catalogue entry `{finding.entry}` ({finding.klass}) {url}".rstrip()]
    nearby = [
        e for e in entries if any(fnmatchcase(finding.implementation, g) for g in e.implementations)
    ]
    lines = ["No entry of xentbench's catalogue of known behaviour explains it."]
    for entry in nearby:
        covers = ", ".join(entry.failure_modes or ("any mode",))
        cases = ", ".join(entry.cases or ("any case",))
        where = entry.evidence.get("url", entry.evidence.get("reason", ""))
        lines.append(f"- not `{entry.id}` ({entry.klass}: {covers} on {cases}) {where}".rstrip())
    return lines


def _seen(finding: Finding) -> str:
    worst = (
        "the wrong kind of number"
        if math.isinf(finding.worst_ratio)
        else f"{finding.worst_ratio:.3g} x the error allowance"
    )
    cases = ", ".join(c.split("/", 1)[1] for c in finding.cases[:6])
    more = " ..." if len(finding.cases) > 6 else ""
    dtypes = ", ".join(finding.dtypes)
    seen = f"Seen in {finding.evaluations} evaluations ({dtypes}; cases {cases}{more})"
    if math.isnan(finding.worst_ratio):  # an exception everywhere: nothing to rank
        return f"{seen}."
    return f"{seen}; the worst is {worst}."


def _careful(finding: Finding) -> list[str]:
    return [
        f"{careful_sentence(finding)}. The careful kernel is the error budget's own algorithm "
        "(max shift, exp and a pairwise sum in float32 for 16-bit inputs, in the dtype's own "
        "precision otherwise, one rounding of the output); its error / allowance on this "
        f"input: {_value(finding.careful_ratio)}."
    ]


def _reproducer(finding: Finding, reproducer: str, note: str) -> list[str]:
    if not reproducer:
        return [f"No standalone reproducer: {note}"]
    saved = f"Saved beside this file as `{finding.id}.py`; it exits 1 while the problem is present."
    return [saved, "", "```python", reproducer.rstrip(), "```"]


def upstream_body(
    finding: Finding,
    rows: pd.DataFrame,
    reproducer: str,
    note: str = "",
    minimal: list[str] | None = None,
    shared: list[str] | None = None,
) -> str:
    """The markdown issue body of one finding (``reproducer`` the script's text, "" for none,
    with ``note`` saying why; ``minimal`` the summary on the shrunk input, ``shared`` the other
    findings of its cause)."""
    sections = [
        ("Summary", [*(minimal or []), "", f"Likely cause: {cause_line(finding)}"]),
        ("Environment", _environment(finding)),
        (
            "Expected against got",
            [*_expected_against_got(finding, worst_row(finding, rows)), "", _seen(finding)],
        ),
        ("A careful kernel on the same input", _careful(finding)),
        ("Minimal reproducer", _reproducer(finding, reproducer, note)),
        (
            "Other implementations on the same input",
            [*_others_table(others_on_same_input(finding, rows)), "", *(shared or [])],
        ),
        ("Known behaviour it is not", _not_these(finding, load_entries())),
    ]
    lines = [f"# {title(finding)}", ""]
    for heading, body in sections:
        lines += [f"## {heading}", "", *body, ""]
    return "\n".join(lines)


def write_upstream(
    finding: Finding, rows: pd.DataFrame, out_dir: Path, findings: list[Finding] | None = None
) -> Path:
    """Write ``out_dir/<id>.md`` and, where one can be built, the reproducer ``<id>.py``;
    ``findings`` (all of the run's) name the others that share its cause."""
    out_dir.mkdir(parents=True, exist_ok=True)
    text, note, reproducer = "", "", None
    try:
        reproducer = build_reproducer(finding)
        write_reproducer(reproducer, out_dir)
        text = reproducer.text
    except NotReproducible as exc:
        note = str(exc)
    body = upstream_body(
        finding, rows, text, note, _minimal(finding, reproducer), shared_with(finding, findings)
    )
    path = out_dir / f"{finding.id}.md"
    path.write_text(body, encoding="utf-8")
    return path


def _minimal(finding: Finding, reproducer: Reproducer | None) -> list[str]:
    if reproducer is None or reproducer.facts is None:
        return [f"{_WHAT.get(finding.failure_mode, finding.failure_mode)} (see below)."]
    return minimal_summary(finding, reproducer.facts)
