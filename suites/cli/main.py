"""The ``xentbench`` command line: list, run, check, report, compare, findings, repro, hunt,
verify, and across releases versions, bisect, matrix.

Bad usage exits with status 2 and one line naming the bad value and the valid ones; no input
makes a traceback reach the user (an internal error is one line, exit 3); Ctrl-C exits 130.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys

from rich.console import Console

from xentbench.adapters.base import DTYPES, OPS, backend_and_api
from xentbench.suites.catalog.selection import Selection
from xentbench.suites.cli.params import (
    existing_dir,
    interpreters,
    require_results,
    selected_backends,
    writable_dir,
)
from xentbench.suites.cli.parser import build_parser
from xentbench.suites.cli.run_command import run_command
from xentbench.suites.cli.usage import UsageError
from xentbench.suites.run.lock import RunLocked
from xentbench.suites.store.safe_paths import UnsafePath
from xentbench.suites.store.schema import CorruptRun, IncompatibleRun


def _stdout() -> Console:
    """Rich console for results: full width when piped (rich assumes 80 columns otherwise)."""
    return Console(width=None if sys.stdout.isatty() else 200)


# Errors that are the input's, not xentbench's: one line, exit status 2.
USER_ERRORS = (UsageError, IncompatibleRun, CorruptRun, UnsafePath, RunLocked)


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except KeyboardInterrupt:
        return _interrupted("")
    console = Console(stderr=True)
    try:
        return COMMANDS[args.command](args, console)
    except USER_ERRORS as exc:
        print(f"xentbench {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return _interrupted(args.command)
    except Exception as exc:  # a bug of xentbench: one line, not a traceback
        if os.environ.get("XENTBENCH_DEBUG"):
            raise
        print(
            f"xentbench {args.command}: internal error: {type(exc).__name__}: {_one_line(exc)} "
            "(a bug of xentbench; XENTBENCH_DEBUG=1 shows the traceback)",
            file=sys.stderr,
        )
        return 3


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _interrupted(command: str) -> int:
    print(f"{f'xentbench {command}'.strip()}: interrupted", file=sys.stderr)
    return 130


def _list(args, console) -> int:
    from xentbench.suites.cli.listing import backend_listing, render_listing

    entries = backend_listing()
    if args.format == "json":
        print(json.dumps(entries, indent=2))
    else:
        _stdout().print(render_listing(entries))
    return 0


def _check(args, console) -> int:
    from xentbench.suites.cli.check_command import check_records, check_table

    records = check_records(args, selected_backends)
    if args.format == "json":
        print(json.dumps(records, indent=2, default=float))
    else:
        _stdout().print(check_table(records))
    return 0


def _report(args, console) -> int:
    from xentbench.suites.report.build import REPORT_SECONDS, build_report
    from xentbench.suites.store.run_json import update_run_info

    run_dirs = [existing_dir(path) for path in args.run_dirs]
    for run_dir in run_dirs:
        require_results(run_dir)
    out = writable_dir(args.out or run_dirs[0])
    paths = build_report(run_dirs, out)
    print(paths["summary.txt"].read_text(encoding="utf-8"))
    seconds = {name: round(value, 3) for name, value in REPORT_SECONDS.items()}
    print(f"report built in {seconds['wall_s']:.1f} s (plots {seconds['plots_s']:.1f} s)")
    own = out.resolve() == run_dirs[0].resolve() and (run_dirs[0] / "run.json").is_file()
    if own:  # the run's own report: part of its time
        with contextlib.suppress(OSError):
            update_run_info(run_dirs[0], {"time_breakdown": {"report": seconds}})
    return 0


def _hunt(args, console) -> int:
    from xentbench.suites.cli.hunt_command import run_hunt

    if args.budget_s <= 0 or args.max_evals < 1:
        raise UsageError(
            f"invalid budget: --budget-s {args.budget_s:g} and --max-evals {args.max_evals} "
            "must be positive"
        )
    backends = selected_backends(args.backend)
    pythons = interpreters(args.python, backends)
    _check_implementations(args.implementation, backends)
    selection = Selection(
        ops=tuple(args.op or OPS),
        dtypes=tuple(args.dtype or DTYPES),
        devices=tuple(args.device),
        modes=tuple(args.mode),
        implementations=tuple(args.implementation),
        seed=args.seed,
    )
    return run_hunt(args, backends, pythons, selection, console, _stdout())


def _check_implementations(names: list[str], backends: tuple[str, ...]) -> None:
    """An implementation name without a pattern must start with a selected backend."""
    for name in names:
        if any(ch in name for ch in "*?[") or backend_and_api(name)[0] in backends:
            continue
        raise UsageError(
            f"unknown implementation {name!r}; names read '<backend>:<api>' with backend one of: "
            f"{', '.join(backends)} (see xentbench list)"
        )


def _compare(args, console) -> int:
    from xentbench.suites.report.compare import compare_runs

    for value, name in (
        (args.ulp_threshold, "--ulp-threshold"),
        (args.time_threshold, "--time-threshold"),
    ):
        lowest = 1.0 if name == "--ulp-threshold" else 0.0
        if not value >= lowest or value == float("inf"):
            raise UsageError(f"invalid {name} {value:g}; valid: a finite number >= {lowest:g}")
    if not 0 < args.significance < 1:
        raise UsageError(f"invalid --significance {args.significance:g}; valid: 0 < p < 1")
    base, new = (require_results(existing_dir(path)) for path in (args.base, args.new))
    comparison = compare_runs(
        base,
        new,
        ulp_threshold=args.ulp_threshold,
        time_threshold=args.time_threshold,
        significance=args.significance,
        normalise=args.normalise,
    )
    print(comparison.render(args.format))
    return 1 if comparison.failed else 0


def _findings(args, console) -> int:
    from xentbench.suites.findings.tables import findings_of_runs, render_json, render_markdown

    if args.upstream and args.upstream_top is not None:
        raise UsageError("give --upstream ID or --upstream-top N, not both")
    if args.upstream:
        return _upstream(args)
    if args.upstream_top is not None:
        return _upstream_top(args)
    result = findings_of_runs([existing_dir(path) for path in args.run_dirs])
    text = render_json(result) if args.format == "json" else render_markdown(result)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n", encoding="utf-8")
        print(f"{args.format}: {args.out}")
    else:
        print(text)
    return 0


def _rows_and_findings(paths):
    """The runs' stored accuracy rows and their findings, for the upstream reports."""
    from xentbench.suites.findings.group import run_seeds
    from xentbench.suites.findings.tables import findings_of_rows
    from xentbench.suites.store.rows import load

    run_dirs = [existing_dir(path) for path in paths]
    rows = load(run_dirs, "accuracy")
    return rows, findings_of_rows(rows, run_seeds(run_dirs)).findings


def _upstream(args) -> int:
    """``findings RUN --upstream ID --out DIR``: the issue body and reproducer of one finding."""
    from xentbench.suites.findings.upstream import write_upstream

    if args.out is None:
        raise UsageError("--upstream needs --out DIR, the directory for <id>.md and <id>.py")
    rows, findings = _rows_and_findings(args.run_dirs)
    chosen = next((f for f in findings if f.id == args.upstream), None)
    if chosen is None:
        known = ", ".join(f.id for f in findings[:10]) or "none"
        raise UsageError(f"no finding {args.upstream!r} in the runs; valid: {known} ...")
    print(f"{chosen.id}: {write_upstream(chosen, rows, args.out, findings)}")
    return 0


def _upstream_top(args) -> int:
    """``findings RUN --upstream-top N --out DIR``: the N most severe confirmed defects'
    reports and their index (``suites.findings.upstream_top``)."""
    from xentbench.suites.findings.upstream_top import TRACKERS_FILE, load_checks, write_top

    if args.upstream_top < 1:
        raise UsageError(f"invalid --upstream-top {args.upstream_top}; valid: a whole number >= 1")
    if args.out is None:
        raise UsageError("--upstream-top needs --out DIR, the directory for the reports")
    try:
        load_checks(args.out / TRACKERS_FILE)
    except (ValueError, OSError) as exc:  # tomllib's errors are ValueErrors
        raise UsageError(f"invalid {args.out / TRACKERS_FILE}: {exc}".splitlines()[0]) from None
    rows, findings = _rows_and_findings(args.run_dirs)
    for finding, what in write_top(findings, rows, args.out, args.upstream_top):
        print(f"{finding.id} {finding.implementation} {finding.failure_mode}: {what}")
    print(f"index: {args.out / 'README.md'}")
    return 0


def _repro(args, console) -> int:
    from xentbench.suites.cli.verify_command import configure_from_runs
    from xentbench.suites.findings.repro import NotReproducible, build_reproducer, write_reproducer
    from xentbench.suites.findings.tables import findings_of_runs

    run_dirs = [existing_dir(path) for path in args.run]
    configure_from_runs(run_dirs)  # a verify run's function: the reserved backend's target
    findings = findings_of_runs(run_dirs).findings
    chosen = [f for f in findings if args.finding_id in ("all", f.id)]
    if not chosen:
        known = ", ".join(f.id for f in findings[:10]) or "none"
        raise UsageError(
            f"no finding {args.finding_id!r} in {', '.join(map(str, args.run))}; "
            f"valid: all, {known}{' ...' if len(findings) > 10 else ''}"
        )
    skipped = []
    for finding in chosen:
        try:
            reproducer = build_reproducer(finding)
        except NotReproducible as exc:
            if len(chosen) == 1:
                raise UsageError(str(exc)) from None
            skipped.append(str(exc))
            continue
        path = write_reproducer(reproducer, args.out)
        shrunk = "x".join(map(str, reproducer.shape))
        original = "x".join(map(str, reproducer.original_shape))
        print(f"{finding.id} {finding.failure_mode} [{finding.klass}]: {path}", end=" ")
        print(f"(input {original} -> {shrunk})")
    for reason in skipped:
        print(f"skipped {reason}")
    return 0


def _verify(args, console) -> int:
    from xentbench.suites.cli.verify_command import verify_command

    return verify_command(args, console, _stdout())


def _versions(name: str, args, console) -> int:
    """``versions``, ``bisect`` and ``matrix`` (suites.cli.versions_command, matrix_command)."""
    if name == "matrix_command":
        from xentbench.suites.cli.matrix_command import matrix_command

        return matrix_command(args, console)
    from xentbench.suites.cli.versions_command import bisect_command, versions_command

    command = bisect_command if name == "bisect_command" else versions_command
    return command(args, console)


COMMANDS = {
    "list": _list,
    "run": run_command,
    "check": _check,
    "report": _report,
    "compare": _compare,
    "findings": _findings,
    "repro": _repro,
    "hunt": _hunt,
    "verify": _verify,
    "versions": lambda args, console: _versions("versions_command", args, console),
    "bisect": lambda args, console: _versions("bisect_command", args, console),
    "matrix": lambda args, console: _versions("matrix_command", args, console),
}
