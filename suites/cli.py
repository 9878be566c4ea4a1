"""The ``xentbench`` command line: list, run, check, report, compare, hunt.

Bad usage exits with status 2 and one line naming the bad value and the valid ones.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from adapters import registry
from adapters.base import DEVICES, DTYPES, MODES, OPS
from suites.catalog.selection import DEFAULT_SHAPES, Selection
from suites.judge.verdicts import at_or_beyond
from suites.run import run_info
from suites.store import SUITES, IncompatibleRun

DEFAULT_MODES = {"accuracy": ("eager",), "timing": ("eager", "compiled")}
DEFAULT_DTYPES = {"accuracy": DTYPES, "timing": ("float32",)}


def _stdout() -> Console:
    """Rich console for results: full width when piped (rich assumes 80 columns otherwise)."""
    return Console(width=None if sys.stdout.isatty() else 200)


class UsageError(Exception):
    """Bad usage: reported in one line, exit status 2."""


def _shape(text: str) -> tuple[int, int]:
    try:
        batch, classes = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid shape {text!r}; expected BATCHxCLASSES, e.g. 64x1000"
        ) from None
    if batch < 1 or classes < 1:
        raise argparse.ArgumentTypeError(f"invalid shape {text!r}; both sizes must be >= 1")
    return batch, classes


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="xentbench", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    listing = commands.add_parser("list", help="backends, versions, availability, implementations")
    listing.add_argument("--format", choices=("table", "json"), default="table")

    run = commands.add_parser("run", help="run the accuracy and/or timing suites")
    run.add_argument("--suite", choices=(*SUITES, "all"), default="all")
    run.add_argument("--backend", nargs="+", metavar="B", help="default: every registered backend")
    run.add_argument("--op", nargs="+", choices=OPS, metavar="OP")
    run.add_argument(
        "--dtype",
        nargs="+",
        choices=DTYPES,
        metavar="D",
        help="default: all four for accuracy, float32 for timing",
    )
    run.add_argument("--device", nargs="+", choices=DEVICES, default=["cpu"])
    run.add_argument(
        "--mode",
        nargs="+",
        choices=MODES,
        metavar="M",
        help="default: eager for accuracy, eager and compiled for timing",
    )
    run.add_argument(
        "--impl",
        nargs="+",
        default=["*"],
        metavar="GLOB",
        help="implementation name patterns, e.g. 'torch:*'",
    )
    run.add_argument("--cases", nargs="+", default=["*"], metavar="GLOB", help="case id patterns")
    run.add_argument(
        "--shapes",
        nargs="+",
        type=_shape,
        metavar="BxC",
        help="timing shapes (default: " + " ".join(f"{b}x{c}" for b, c in DEFAULT_SHAPES) + ")",
    )
    run.add_argument("--seed", type=int, default=0)
    run.add_argument(
        "--timeout", type=float, default=300.0, help="seconds per task before it is killed"
    )
    run.add_argument(
        "--jobs",
        type=int,
        default=min(2, os.cpu_count() or 1),
        help="accuracy workers (backends) at a time; timing always runs one at a time",
    )
    run.add_argument(
        "--python",
        nargs="+",
        default=[],
        metavar="B=PYTHON",
        help="run backend B's worker with this interpreter (its own virtual environment)",
    )
    run.add_argument("--out", type=Path, help="run directory (default reports/runs/<time>-<host>)")
    run.add_argument(
        "--fail-on",
        choices=("wrong", "inaccurate"),
        help="exit 1 if any verdict at or beyond this level (error counts as beyond)",
    )

    check = commands.add_parser("check", help="run your own logits through every implementation")
    check.add_argument("--op", required=True, choices=OPS)
    check.add_argument(
        "--logits", required=True, type=Path, help=".npy file, classes on the last axis"
    )
    check.add_argument("--labels", type=Path, help=".npy file (integers for the sparse op)")
    check.add_argument("--backend", nargs="+", metavar="B")
    check.add_argument("--dtype", nargs="+", choices=DTYPES, help="default: the logits' own dtype")
    check.add_argument("--device", nargs="+", choices=DEVICES, default=["cpu"])
    check.add_argument("--mode", nargs="+", choices=MODES, default=["eager"])
    check.add_argument("--format", choices=("table", "json"), default="table")

    report = commands.add_parser("report", help="build report.md/html, plots and CSV from runs")
    report.add_argument("run_dirs", nargs="+", type=Path, metavar="RUN_DIR")
    report.add_argument("--out", type=Path, help="default: the first run directory")

    _hunt_parser(commands)

    compare = commands.add_parser("compare", help="regressions between two runs (exit 1 if any)")
    compare.add_argument("base", type=Path)
    compare.add_argument("new", type=Path)
    compare.add_argument(
        "--ulp-threshold",
        type=float,
        default=2.0,
        help="max-ULP-error growth factor counted as a regression",
    )
    compare.add_argument(
        "--time-threshold",
        type=float,
        default=0.10,
        help="relative slowdown counted as a regression (beyond the spread)",
    )
    compare.add_argument("--format", choices=("table", "json"), default="table")
    return parser


def _hunt_parser(commands) -> None:
    hunt = commands.add_parser(
        "hunt", help="search for the inputs that break each implementation (exact oracle)"
    )
    hunt.add_argument("--backend", nargs="+", metavar="B", help="default: every registered backend")
    hunt.add_argument(
        "--implementation",
        nargs="+",
        default=["*"],
        metavar="NAME",
        help="implementation names or patterns, e.g. 'torch:*'",
    )
    hunt.add_argument("--op", nargs="+", choices=OPS, metavar="OP")
    hunt.add_argument("--dtype", nargs="+", choices=DTYPES, metavar="D", help="default: all four")
    hunt.add_argument("--device", nargs="+", choices=DEVICES, default=["cpu"])
    hunt.add_argument("--mode", nargs="+", choices=MODES, default=["eager"], metavar="M")
    hunt.add_argument("--quantity", nargs="+", choices=("value", "grad"), default=["value", "grad"])
    hunt.add_argument(
        "--budget-s", type=float, default=3.0, help="seconds of search per target (default 3)"
    )
    hunt.add_argument(
        "--max-evals",
        type=int,
        default=4000,
        help="candidates per target; the search is deterministic for a seed when this ends it",
    )
    hunt.add_argument("--seed", type=int, default=0)
    hunt.add_argument(
        "--from-scratch",
        action="store_true",
        help="start from structured seeds only, no catalog rows",
    )
    hunt.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    hunt.add_argument("--python", nargs="+", default=[], metavar="B=PYTHON")
    hunt.add_argument("--out", type=Path, help="run directory (default reports/runs/<time>-<host>)")


def _backends(requested: list[str] | None) -> tuple[str, ...]:
    known = registry.backend_names()
    for name in requested or ():
        if name not in known:
            raise UsageError(f"unknown backend {name!r}; valid: {', '.join(known)}")
    return tuple(requested) if requested else known


def _interpreters(pairs: list[str], backends: tuple[str, ...]) -> dict[str, str]:
    """``--python B=PYTHON`` pairs as {backend: interpreter}, each checked to exist."""
    pythons = {}
    for pair in pairs:
        backend, _, python = pair.partition("=")
        if backend not in backends or not python:
            raise UsageError(
                f"invalid --python {pair!r}; expected B=PYTHON with B one of: {', '.join(backends)}"
            )
        if not os.access(python, os.X_OK) or Path(python).is_dir():
            raise UsageError(f"--python {pair!r}: {python!r} is not an executable file")
        pythons[backend] = python
    return pythons


def _existing_dir(path: Path) -> Path:
    if not path.is_dir():
        raise UsageError(f"no run directory {str(path)!r}")
    return path


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    console = Console(stderr=True)
    try:
        return COMMANDS[args.command](args, console)
    except (UsageError, IncompatibleRun) as exc:
        print(f"xentbench {args.command}: error: {exc}", file=sys.stderr)
        return 2


def _list(args, console) -> int:
    from suites.listing import backend_listing, render_listing

    entries = backend_listing()
    if args.format == "json":
        print(json.dumps(entries, indent=2))
    else:
        _stdout().print(render_listing(entries))
    return 0


def _run(args, console) -> int:
    from suites.run.runner import run_all
    from suites.run.worker import WorkerJob

    backends = _backends(args.backend)
    pythons = _interpreters(args.python, backends)
    suites = SUITES if args.suite == "all" else (args.suite,)
    run_dir = args.out or run_info.default_run_dir()
    info = run_info.start(run_dir, args.seed, timing="timing" in suites)
    jobs = [
        WorkerJob(
            backend,
            suite,
            _selection(args, suite),
            str(run_dir),
            info["run_id"],
            info["host"],
            info.get("memory_bandwidth_gbps", 0.0),
            pythons.get(backend, ""),
        )
        for suite in suites
        for backend in backends
    ]
    console.print(f"run directory: {run_dir}")
    outcomes = run_all(jobs, args.timeout, console, args.jobs)
    run_info.finish(run_dir, outcomes)
    harness_errors = sum(len(outcome.harness_errors) for outcome in outcomes)
    if harness_errors:
        console.print(
            f"[red]{harness_errors} tasks failed inside xentbench itself[/] (see above); "
            "their rows are missing and a re-run into the same directory retries them"
        )
        return 1
    return _gate(run_dir, args.fail_on, console) if args.fail_on else 0


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


def _gate(run_dir: Path, level: str, console) -> int:
    from suites.store import load

    rows = load([run_dir], "accuracy")
    failing = at_or_beyond(level)
    bad = rows[rows["verdict"].isin(failing)]
    if len(bad):
        console.print(f"--fail-on {level}: {len(bad)} evaluations at or beyond {level!r}")
        return 1
    return 0


def _check(args, console) -> int:
    import numpy as np

    from suites.check import CheckRequest, dtype_name, run_check

    try:
        logits = np.load(args.logits)
        labels = None if args.labels is None else np.load(args.labels)
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read array: {exc}") from None
    try:
        dtypes = tuple(args.dtype) if args.dtype else (dtype_name(logits),)
        request = CheckRequest(
            args.op,
            logits,
            labels,
            _backends(args.backend),
            dtypes,
            tuple(args.device),
            tuple(args.mode),
        )
        records = run_check(request)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if args.format == "json":
        print(json.dumps(records, indent=2, default=float))
    else:
        _stdout().print(_check_table(records))
    return 0


def _check_table(records) -> Table:
    table = Table(
        "implementation",
        "dtype",
        "device",
        "mode",
        "quantity",
        "verdict",
        "max ULP",
        "message",
        title="xentbench check",
    )
    for record in records:
        ulps = record.get("max_ulp_error")
        table.add_row(
            record.get("implementation", record["backend"]),
            record.get("dtype", ""),
            record.get("device", ""),
            record.get("mode", ""),
            record.get("quantity", ""),
            record["verdict"],
            "" if ulps is None else f"{ulps:.3g}",
            (record.get("message") or "")[:60],
        )
    return table


def _report(args, console) -> int:
    from suites.report.build import build_report

    run_dirs = [_existing_dir(path) for path in args.run_dirs]
    paths = build_report(run_dirs, args.out or run_dirs[0])
    for name, path in paths.items():
        print(f"{name}: {path}")
    return 0


def _hunt(args, console) -> int:
    from suites.hunt.cli import run_hunt

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
    from suites.report.compare import compare_runs

    comparison = compare_runs(
        _existing_dir(args.base),
        _existing_dir(args.new),
        ulp_threshold=args.ulp_threshold,
        time_threshold=args.time_threshold,
    )
    print(comparison.render(args.format))
    return 1 if len(comparison.regressions) else 0


COMMANDS = {
    "list": _list,
    "run": _run,
    "check": _check,
    "report": _report,
    "compare": _compare,
    "hunt": _hunt,
}

if __name__ == "__main__":
    sys.exit(main())
