"""What ``xentbench verify`` prints: verdicts per dtype and quantity with each case's
trivial-output margin, the failing evaluations, the findings with their reproducers, and the
exit status (0 only when nothing fails)."""

from __future__ import annotations

import shlex
from collections import Counter
from pathlib import Path

import pandas as pd
from rich.markup import escape
from rich.table import Table

from xentbench.adapters.function_adapter import Target
from xentbench.suites.cli.usage import UsageError
from xentbench.suites.judge.trivial import TRIVIAL_OUTPUTS
from xentbench.suites.judge.verdicts import FAILURES, SEVERITY

TRIVIAL_FILE = "verify-trivial.csv"  # per case, dtype and quantity: the trivial outputs passing
SHOWN_FAILURES = 20
TIMED_OUT = "did not return within"  # in the message of a call ``deadline`` stopped


def print_outcome(out: Path, target: Target, args, outcomes, stdout) -> int:
    """Print the outcome of a verify run from its stored rows; the exit status."""
    from xentbench.suites.store.rows import load

    rows = load([out], "accuracy")
    evaluated = rows[rows["verdict"] != "unsupported"] if len(rows) else rows
    problems = _problems(outcomes, stdout)
    if evaluated.empty and problems:
        stdout.print(f"verify {target.spec}: FAIL: the function could not be run")
        return 1
    if evaluated.empty:
        raise UsageError(
            f"nothing was verified: every selected case is unsupported by {target.spec} "
            f"(--dtype {' '.join(target.dtypes)}, --options {' '.join(target.options) or 'none'}, "
            "--cases); widen the selection"
        )
    catalog = evaluated[evaluated["source"] == "catalog"].copy()
    catalog["trivial_pass"] = trivial_column(catalog, args.seed, target.values)
    catalog[["case_id", "dtype", "quantity", "verdict", "trivial_pass"]].to_csv(
        out / TRIVIAL_FILE, index=False
    )
    stdout.print(verdict_table(evaluated, catalog, target))
    failing = evaluated[evaluated["verdict"].isin(FAILURES)]
    if len(failing):
        stdout.print(failing_table(failing))
    _print_guard(catalog, stdout)
    findings = _print_findings(out, target, args, stdout)
    if findings or len(failing) or problems:
        names = ", ".join(f"{f.id} ({f.failure_mode})" for f in findings)
        stdout.print(f"verify {target.spec}: FAIL: {len(findings)} findings: {names}")
        return 1
    stdout.print(f"verify {target.spec}: PASS ({len(evaluated)} evaluations, run {out})")
    return 0


def _problems(outcomes, stdout) -> list[str]:
    """What kept the function from running (a worker that could not load it, a harness
    error), each printed."""
    problems = [f"{o.suite}: {o.unavailable}" for o in outcomes if o.unavailable]
    problems += [f"{o.suite}: {e}" for o in outcomes for e in o.harness_errors]
    for problem in problems:
        stdout.print(f"[red]not verified[/]: {problem}")
    return problems


def trivial_column(catalog: pd.DataFrame, seed: int, fixed: tuple = ()) -> list[str]:
    """Per catalog row: the trivial outputs the judge would pass there, comma-separated
    (``fixed``: the option values every call passed, beneath each case's own)."""
    from xentbench.suites.accuracy.suite import case_exact, case_inputs, case_options
    from xentbench.suites.judge.trivial import trivial_passes

    column = []
    for row in catalog.itertuples(index=False):
        exact = case_exact(row.case_id, row.dtype, seed, row.quantity, fixed)
        if isinstance(exact, ValueError):  # invalid input: any number is wrong
            column.append("")
            continue
        logits, labels = case_inputs(row.case_id, row.dtype, seed)
        options = {**dict(fixed), **case_options(row.case_id, row.dtype, seed, row.quantity)}
        passes = trivial_passes(row.op, row.quantity, row.dtype, logits, labels, exact, options)
        column.append(",".join(passes))
    return column


def verdict_table(evaluated: pd.DataFrame, catalog: pd.DataFrame, target: Target) -> Table:
    """Counts per dtype and quantity: catalog verdicts, hunted failures, trivial passes."""
    table = Table("dtype", "quantity", "cases", "pass", "inaccurate", "wrong", "error")
    table.add_column("hunt failing")
    table.add_column("trivial outputs passing (cases)")
    table.title = f"xentbench verify {target.spec} ({target.op}, {target.array} arrays)"
    hunted = evaluated[evaluated["source"] == "hunt"]
    for (dtype, quantity), group in catalog.groupby(["dtype", "quantity"], sort=True):
        counts = Counter(group["verdict"])
        found = hunted[(hunted["dtype"] == dtype) & (hunted["quantity"] == quantity)]
        trivial = Counter(n for cell in group["trivial_pass"] for n in cell.split(",") if n)
        table.add_row(
            dtype,
            quantity,
            str(len(group)),
            *(str(counts.get(verdict, 0)) for verdict in ("pass", *FAILURES)),
            str(int(found["verdict"].isin(FAILURES).sum())),
            ", ".join(f"{n} {trivial[n]}" for n in TRIVIAL_OUTPUTS if trivial[n]) or "none",
        )
    return table


def failing_table(failing: pd.DataFrame) -> Table:
    """The failing evaluations, most severe first, at most ``SHOWN_FAILURES``."""
    ranked = failing.assign(severity=failing["verdict"].map(SEVERITY)).sort_values(
        ["severity", "worst_ratio"], ascending=False
    )
    table = Table("verdict", "dtype", "quantity", "case", "worst ratio", "what")
    table.title = f"{len(failing)} failing evaluations" + (
        f" (the first {SHOWN_FAILURES})" if len(failing) > SHOWN_FAILURES else ""
    )
    for row in ranked.head(SHOWN_FAILURES).itertuples(index=False):
        what = row.message if isinstance(row.message, str) and row.message else ""
        if not what and isinstance(row.worst_input, str):
            what = f"got {row.got:.6g}, expected {row.expected:.6g} at {row.worst_input}"
        table.add_row(
            row.verdict, row.dtype, row.quantity, row.case_id, f"{row.worst_ratio:.3g}", what[:110]
        )
    return table


def _print_guard(catalog: pd.DataFrame, stdout) -> None:
    """Name any trivial output passing every case of a dtype and quantity (a weak selection)."""
    for (dtype, quantity), group in catalog.groupby(["dtype", "quantity"], sort=True):
        cells = [set(cell.split(",")) for cell in group["trivial_pass"]]
        for name in TRIVIAL_OUTPUTS:
            if cells and all(name in cell for cell in cells):
                stdout.print(
                    f"[yellow]warning:[/] a {name} output would pass every selected {dtype} "
                    f"{quantity} case: these cases cannot tell it from a correct kernel "
                    "(widen --cases)"
                )


def reproduce_command(target: Target, args, case_id: str, dtype: str) -> str:
    """The ``xentbench verify`` command that runs one catalog case again."""
    words = ["xentbench", "verify", target.spec, "--op", target.op, "--array", target.array]
    words += ["--dtype", dtype, "--cases", case_id, "--budget-s", "0"]
    if target.grad_fn:
        words += ["--grad-fn", target.grad_fn]
    elif target.grad:
        words += ["--grad"]
    if target.options:
        words += ["--options", *target.options]
    for name, value in target.values:
        words += [f"--{name.replace('_', '-')}={value}"]
    return shlex.join(words)


def _print_findings(out: Path, target: Target, args, stdout) -> list:
    """Each finding with a command that shows it again and, unless ``--no-repro``, a
    standalone reproducer script under ``<out>/repro``."""
    from xentbench.suites.findings.tables import findings_of_runs

    findings = findings_of_runs([out]).findings
    for finding in findings:
        sample = finding.sample
        stdout.print(
            f"[bold]{finding.id}[/] {finding.quantity} {finding.failure_mode} "
            f"{escape(f'[{finding.klass}]')}: "
            f"{finding.evaluations} evaluations, {', '.join(finding.dtypes)}; e.g. "
            f"{sample.case_id} ({sample.dtype})"
        )
        if not sample.case_id.startswith("hunt/"):
            stdout.print(
                f"  again: {reproduce_command(target, args, sample.case_id, sample.dtype)}"
            )
        if not args.no_repro:
            stdout.print(f"  reproducer: {_reproducer(finding, out, target)}")
    return findings


def _reproducer(finding, out: Path, target: Target) -> str:
    """The path of the finding's standalone script, or why there is none."""
    from xentbench.suites.findings.repro import build_reproducer, write_reproducer

    if target.values:
        return "none (reproducers render a case's own options, not values given to verify)"
    if finding.failure_mode == "raises-on-valid-input" and _timed_out(finding, out):
        return "none (the call timed out; the rows say so)"
    try:
        reproducer = build_reproducer(finding, max_tries=60, max_s=15.0)
    except Exception as exc:  # the user's function misbehaving while shrinking: say so
        return f"none ({type(exc).__name__}: {' '.join(str(exc).split())[:160]})"
    return str(write_reproducer(reproducer, out / "repro"))


def _timed_out(finding, out: Path) -> bool:
    from xentbench.suites.store.rows import load

    rows = load([out], "accuracy")
    rows = rows[
        (rows["case_id"] == finding.sample.case_id) & (rows["dtype"] == finding.sample.dtype)
    ]
    messages = " ".join(str(m) for m in rows["message"]) + " ".join(
        str(m) for m in rows["harness_error"]
    )
    return TIMED_OUT in messages or "timed out" in messages
