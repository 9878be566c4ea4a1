"""The ``xentbench`` command line: list, run, check, report, compare, findings, repro, hunt.

Bad usage exits with status 2 and one line naming the bad value and the valid ones; no input
makes a traceback reach the user (an internal error is one line, exit 3); Ctrl-C exits 130.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path

from rich.console import Console

from xentbench.adapters import registry
from xentbench.adapters.base import DTYPES, OPS
from xentbench.suites.catalog.selection import DEFAULT_SHAPES, Selection
from xentbench.suites.cli import params
from xentbench.suites.cli.parser import build_parser
from xentbench.suites.cli.usage import UsageError
from xentbench.suites.judge.verdicts import at_or_beyond
from xentbench.suites.run import run_info
from xentbench.suites.run.lock import RunLocked
from xentbench.suites.store.rows import SUITES, CorruptRun, IncompatibleRun, update_run_info
from xentbench.suites.store.safe_paths import UnsafePath
from xentbench.suites.timing.suite import AB_DEFAULT_ROUNDS, DEFAULT_ROUNDS

DEFAULT_MODES = {"accuracy": ("eager",), "timing": ("eager", "compiled")}
DEFAULT_DTYPES = {"accuracy": DTYPES, "timing": ("float32",)}


def _stdout() -> Console:
    """Rich console for results: full width when piped (rich assumes 80 columns otherwise)."""
    return Console(width=None if sys.stdout.isatty() else 200)


# Errors that are the input's, not xentbench's: one line, exit status 2.
USER_ERRORS = (UsageError, IncompatibleRun, CorruptRun, UnsafePath, RunLocked)


def _backends(requested: list[str] | None) -> tuple[str, ...]:
    return params.check_backends(requested, registry.backend_names())


def _interpreters(
    pairs: list[str], backends: tuple[str, ...], flag: str = "--python"
) -> dict[str, str]:
    """``--python B=PYTHON`` pairs as {backend: interpreter}, each checked to exist."""
    pythons = {}
    for pair in pairs:
        backend, _, python = pair.partition("=")
        if backend not in backends or not python:
            raise UsageError(
                f"invalid {flag} {pair!r}; expected B=PYTHON with B one of: {', '.join(backends)}"
            )
        if not os.access(python, os.X_OK) or Path(python).is_dir():
            raise UsageError(f"{flag} {pair!r}: {python!r} is not an executable file")
        pythons[backend] = python
    return pythons


def _existing_dir(path: Path) -> Path:
    if not path.is_dir():
        raise UsageError(f"no run directory {str(path)!r}")
    return path


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


def _run(args, console) -> int:

    params.check_numbers(args.jobs, args.timeout)
    backends = _backends(args.backend)
    pythons = _interpreters(args.python, backends)
    params.check_cases(tuple(args.cases), tuple(args.op or OPS))
    suites = SUITES if args.suite == "all" else (args.suite,)
    out = args.out or run_info.default_run_dir()
    against = _against(args, out)  # checked before either directory is created
    against_pythons = pythons | _interpreters(args.against_python, backends, "--against-python")
    runs = {params.writable_dir(out): pythons}  # run directory -> its backends' interpreters
    if against:
        runs[params.writable_dir(against, "--against")] = against_pythons
    from xentbench.suites.run.lock import hold

    with contextlib.ExitStack() as locks:
        for directory in runs:
            locks.enter_context(hold(directory))
        return _run_locked(args, console, runs, backends, suites)


def _against(args, out: Path) -> Path | None:
    """``--against DIR``: the second run directory of an interleaved timing pair, checked
    (not created)."""
    if args.against is None:
        if args.against_python:
            raise UsageError("--against-python needs --against DIR (the run it is for)")
        return None
    if args.suite != "timing":
        raise UsageError(
            f"--against interleaves two timing runs; invalid with --suite {args.suite}; "
            "valid: --suite timing"
        )
    if args.against.resolve() == out.resolve():
        raise UsageError(f"--against {str(args.against)!r} is --out itself; give another directory")
    return args.against


def _run_locked(args, console, runs: dict[Path, dict[str, str]], backends, suites) -> int:
    """The runs (one, or an interleaved pair), their directories' locks held: refuse to mix,
    start, run, record, gate."""
    from xentbench.suites.run.runner import run_all

    rounds = args.repeat_runs or (AB_DEFAULT_ROUNDS if len(runs) > 1 else DEFAULT_ROUNDS)
    per_run = [
        _jobs_of_run(args, console, run_dir, pythons, backends, suites, rounds)
        for run_dir, pythons in runs.items()
    ]
    if len(runs) > 1:  # compare reads it: the pair's rounds took turns on one machine
        names = [jobs[0].run_id for jobs in per_run]
        for run_dir, other in zip(runs, reversed(names), strict=True):
            update_run_info(run_dir, {"interleaved_with": other})
    jobs = [job for jobs in per_run for job in jobs]  # a pair's rounds take turns (run_all)
    try:
        outcomes = run_all(jobs, args.timeout, console, args.jobs)
    except KeyboardInterrupt:
        raise KeyboardInterrupt from None  # finished rows are stored; main says so in one line
    for run_dir in runs:
        run_info.finish(run_dir, outcomes)
    _refuse_unusable(args, outcomes)
    if "timing" in suites:
        for run_dir in runs:
            _warn_contended(run_dir, console)
    harness_errors = sum(len(outcome.harness_errors) for outcome in outcomes)
    if harness_errors:
        console.print(
            f"[red]{harness_errors} tasks failed inside xentbench itself[/] (see above); "
            "their rows are missing and a re-run into the same directory retries them"
        )
        return 1
    if len(runs) > 1:
        console.print(f"compare them: xentbench compare {' '.join(map(str, runs))}")
    return _gate(next(iter(runs)), args.fail_on, console) if args.fail_on else 0


def _jobs_of_run(args, console, run_dir, pythons, backends, suites, rounds) -> list:
    """Start (or resume) one run directory and return its jobs, backend x suite."""
    from xentbench.suites.run.worker import WorkerJob

    if args.new:
        aside = params.start_anew(run_dir)
        if aside:
            console.print(f"previous results moved to {aside}")
    params.check_same_run(run_dir, run_info.pinned(args.seed))
    info = run_info.start(run_dir, args.seed, timing="timing" in suites)
    console.print(f"run directory: {run_dir}")
    return [
        WorkerJob.in_run(
            run_dir,
            info,
            backend,
            suite,
            _selection(args, suite),
            python=pythons.get(backend, ""),
            timing_options={"rounds": rounds, "memory": args.memory} if suite == "timing" else {},
        )
        for suite in suites
        for backend in backends
    ]


def _refuse_unusable(args, outcomes) -> None:
    """Exit 2 when a backend refused the directory's rows, or the selection selected nothing."""
    refused = [outcome.refused for outcome in outcomes if outcome.refused]
    if refused:
        raise UsageError(refused[0])
    usable = [outcome for outcome in outcomes if not outcome.unavailable]
    if usable:
        params.check_implementations(
            tuple(args.impl), {name for outcome in usable for name in outcome.names}
        )
    if usable and not any(outcome.planned for outcome in usable):
        raise UsageError(
            "the selection matches no evaluation (--op/--dtype/--mode/--device/--impl/--cases "
            "combined); widen it"
        )


def _selection(args, suite: str) -> Selection:
    return Selection(
        ops=tuple(args.op or OPS),
        dtypes=tuple(args.dtype or DEFAULT_DTYPES[suite]),
        devices=tuple(args.device),
        modes=tuple(args.mode or DEFAULT_MODES[suite]),
        implementations=tuple(args.impl),
        cases=tuple(args.cases),
        shapes=tuple(args.shapes or DEFAULT_SHAPES),
        seed=args.seed,
    )


def _warn_contended(run_dir: Path, console) -> None:
    """Name how many timings were still contended after their retries (flagged in the rows)."""
    from xentbench.suites.store.rows import load

    rows = load([run_dir], "timing")
    contended = int(rows["contended"].eq(True).sum()) if "contended" in rows else 0
    if contended:
        timed = int(rows["verdict"].eq("ok").sum())
        console.print(
            f"[yellow]warning:[/] {contended} of {timed} timings were measured while other "
            "processes took the CPU (flagged contended = true); re-run on an idle machine"
        )


def _gate(run_dir: Path, level: str, console) -> int:
    from xentbench.suites.store.rows import load

    rows = load([run_dir], "accuracy")
    failing = at_or_beyond(level)
    bad = rows[rows["verdict"].isin(failing)]
    if len(bad):
        console.print(f"--fail-on {level}: {len(bad)} evaluations at or beyond {level!r}")
        return 1
    return 0


def _check(args, console) -> int:
    from xentbench.suites.cli.check_command import check_records, check_table

    records = check_records(args, _backends)
    if args.format == "json":
        print(json.dumps(records, indent=2, default=float))
    else:
        _stdout().print(check_table(records))
    return 0


def _report(args, console) -> int:
    from xentbench.suites.report.build import build_report

    run_dirs = [_existing_dir(path) for path in args.run_dirs]
    for run_dir in run_dirs:
        _require_results(run_dir)
    out = params.writable_dir(args.out or run_dirs[0])
    paths = build_report(run_dirs, out)
    for name, path in paths.items():
        print(f"{name}: {path}")
    return 0


def _hunt(args, console) -> int:
    from xentbench.suites.cli.hunt_command import run_hunt

    if args.budget_s <= 0 or args.max_evals < 1:
        raise UsageError(
            f"invalid budget: --budget-s {args.budget_s:g} and --max-evals {args.max_evals} "
            "must be positive"
        )
    backends = _backends(args.backend)
    pythons = _interpreters(args.python, backends)
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
        if any(ch in name for ch in "*?[") or name.split(":", 1)[0] in backends:
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
    base, new = (_require_results(_existing_dir(path)) for path in (args.base, args.new))
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


def _require_results(run_dir: Path) -> Path:
    """A run directory that holds stored rows (report and compare have nothing to read else)."""
    if not params.has_results(run_dir):
        raise UsageError(
            f"{str(run_dir)!r} holds no results (no accuracy-*/timing-* parquet files or parts); "
            "valid: a directory written by xentbench run"
        )
    return run_dir


def _findings(args, console) -> int:
    from xentbench.suites.findings.tables import findings_of_runs, render_json, render_markdown

    result = findings_of_runs([_existing_dir(path) for path in args.run_dirs])
    text = render_json(result) if args.format == "json" else render_markdown(result)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n", encoding="utf-8")
        print(f"{args.format}: {args.out}")
    else:
        print(text)
    return 0


def _repro(args, console) -> int:
    from xentbench.suites.findings.repro import NotReproducible, build_reproducer, write_reproducer
    from xentbench.suites.findings.tables import findings_of_runs

    findings = findings_of_runs([_existing_dir(path) for path in args.run]).findings
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


COMMANDS = {
    "list": _list,
    "run": _run,
    "check": _check,
    "report": _report,
    "compare": _compare,
    "findings": _findings,
    "repro": _repro,
    "hunt": _hunt,
}
