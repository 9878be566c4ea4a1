"""The ``xentbench`` argument parser, one builder per command (``suites.cli`` runs them)."""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

from xentbench.adapters.base import DEVICES, DTYPES, MODES, OPS
from xentbench.suites.catalog.selection import DEFAULT_SHAPES
from xentbench.suites.cli.option_flags import call_option_flags
from xentbench.suites.hunt import DEFAULT_BUDGET_S
from xentbench.suites.store.schema import SUITES
from xentbench.suites.timing.profiles import PROFILES
from xentbench.suites.timing.rounds import AB_DEFAULT_ROUNDS, DEFAULT_ROUNDS

DESCRIPTION = "xentbench: softmax and cross-entropy checked against an exact reference, and timed"


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


class _Parser(argparse.ArgumentParser):
    """argparse, with a usage error reported in one line (not the usage block, then the line),
    and a value in scientific notation such as ``--z-loss -1e-4`` read as a negative number
    (argparse's own pattern takes ``-1e-4`` for a flag)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._negative_number_matcher = re.compile(r"^-(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")

    def error(self, message: str):
        command = self.prog.removeprefix("xentbench").strip()
        print(f"{f'xentbench {command}'.strip()}: error: {message}", file=sys.stderr)
        sys.exit(2)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"invalid count {text!r}; expected an integer >= 1")
    return value


def _shard(text: str) -> tuple[int, int]:
    """``I/N``: part I of N (1 <= I <= N), for ``run --shard``."""
    index, slash, count = text.partition("/")
    try:
        shard = (int(index), int(count)) if slash else None
    except ValueError:
        shard = None
    if shard is None or not 1 <= shard[0] <= shard[1]:
        raise argparse.ArgumentTypeError(
            f"invalid shard {text!r}; valid: I/N with integers 1 <= I <= N, e.g. 2/3"
        )
    return shard


def build_parser() -> argparse.ArgumentParser:
    """The ``xentbench`` argument parser: one sub-parser per command."""
    parser = _Parser(prog="xentbench", description=DESCRIPTION)
    commands = parser.add_subparsers(dest="command", required=True)
    listing = commands.add_parser("list", help="backends, versions, availability, implementations")
    listing.add_argument("--format", choices=("table", "json"), default="table")
    _run_parser(commands)
    _check_parser(commands)
    report = commands.add_parser("report", help="build report.md/html, plots and CSV from runs")
    report.add_argument("run_dirs", nargs="+", type=Path, metavar="RUN_DIR")
    report.add_argument("--out", type=Path, help="default: the first run directory")
    _hunt_parser(commands)
    _compare_parser(commands)
    _findings_parsers(commands)
    from xentbench.suites.cli.verify_parser import verify_parser

    verify_parser(commands)
    from xentbench.suites.cli.versions_parser import versions_parsers

    versions_parsers(commands, check_flags)
    return parser


def _run_parser(commands) -> None:
    run = commands.add_parser("run", help="run the accuracy and/or timing suites")
    run.add_argument("--suite", choices=(*SUITES, "all"), default="all")
    _targets(
        run,
        ("--impl", "GLOB", "implementation name patterns, e.g. 'torch:*'"),
        dtype_help="default: all four for accuracy, float32 for timing",
    )
    run.add_argument(
        "--mode",
        nargs="+",
        choices=MODES,
        metavar="M",
        help="default: eager for accuracy, eager and compiled for timing",
    )
    run.add_argument("--cases", nargs="+", default=["*"], metavar="GLOB", help="case id patterns")
    run.add_argument(
        "--shapes",
        nargs="+",
        type=_shape,
        metavar="BxC",
        help="timing shapes (default: the profile's; full: "
        + " ".join(f"{b}x{c}" for b, c in DEFAULT_SHAPES)
        + ")",
    )
    run.add_argument(
        "--profile",
        choices=tuple(PROFILES),
        help="timing: default ranks the implementations within this run (fewer shapes, "
        f"{PROFILES['default'].rounds} rounds in one process per backend); full is the grid and "
        f"{DEFAULT_ROUNDS} rounds in fresh processes a change is gated with (--against: always)",
    )
    _run_process_flags(run)


def _targets(
    parser: argparse.ArgumentParser, patterns: tuple[str, str, str], dtype_help: str
) -> None:
    """The flags that pick what runs: backends, implementation patterns (flag, metavar, help),
    ops, dtypes and devices (``run`` and ``hunt``)."""
    flag, metavar, patterns_help = patterns
    parser.add_argument(
        "--backend", nargs="+", metavar="B", help="default: every registered backend"
    )
    parser.add_argument(flag, nargs="+", default=["*"], metavar=metavar, help=patterns_help)
    parser.add_argument("--op", nargs="+", choices=OPS, metavar="OP")
    parser.add_argument("--dtype", nargs="+", choices=DTYPES, metavar="D", help=dtype_help)
    parser.add_argument("--device", nargs="+", choices=DEVICES, default=["cpu"])


def _run_process_flags(run: argparse.ArgumentParser) -> None:
    """``run``'s seed, process, output and timing-mode flags."""
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
    run.add_argument(
        "--split",
        nargs="+",
        default=[],
        metavar="B=K",
        help="run backend B's accuracy in K workers side by side (its tasks split by a stable "
        "hash): for a backend much slower than the others, with --jobs K or more",
    )
    run.add_argument("--out", type=Path, help="run directory (default reports/runs/<time>-<host>)")
    run.add_argument(
        "--new",
        action="store_true",
        help="start the run directory anew: its stored results move to previous-<time>/",
    )
    run.add_argument(
        "--repeat-runs",
        type=_positive_int,
        metavar="K",
        help="timing: K rounds over the whole grid (default: the profile's; "
        f"{AB_DEFAULT_ROUNDS} with --against); compare decides a change from the rounds' medians",
    )
    run.add_argument(
        "--against",
        type=Path,
        metavar="DIR",
        help="timing: a second run directory timed at the same time, its rounds taking turns "
        "with --out's, so that both see the same machine; then `xentbench compare OUT DIR` "
        "gates the change (an A/A check of the noise without --against-python)",
    )
    run.add_argument(
        "--against-python",
        nargs="+",
        default=[],
        metavar="B=PYTHON",
        help="the interpreters of --against's backends (default: --python's): the other "
        "software of the A/B comparison",
    )
    run.add_argument(
        "--memory",
        action="store_true",
        help="timing: also measure each op's CPU peak memory in a fresh process (slow)",
    )
    run.add_argument(
        "--shard",
        type=_shard,
        default=(1, 1),
        metavar="I/N",
        help="run part I of N of the tasks (a stable hash of each task's key), one part per "
        "machine into its own --out; `xentbench report DIR1 ... DIRN` merges them",
    )
    run.add_argument(
        "--fail-on",
        choices=("wrong", "inaccurate"),
        help="exit 1 if any verdict at or beyond this level (error counts as beyond)",
    )


def _check_parser(commands) -> None:
    check = commands.add_parser("check", help="run your own logits through every implementation")
    check_flags(check, op_required=True)
    check.add_argument("--backend", nargs="+", metavar="B")
    check.add_argument("--format", choices=("table", "json"), default="table")


def check_flags(check: argparse.ArgumentParser, op_required: bool) -> None:
    """What ``check`` takes as its test: the op, the arrays, dtypes, devices, modes and call
    options (``bisect`` takes the same)."""
    check.add_argument("--op", required=op_required, choices=OPS)
    check.add_argument(
        "--logits", type=Path, help=".npy file, classes on the last axis (every op but the linear)"
    )
    check.add_argument(
        "--hidden", type=Path, metavar="X.npy", help="linear_cross_entropy: hidden states [N, d]"
    )
    check.add_argument(
        "--classifier",
        type=Path,
        metavar="W.npy",
        help="linear_cross_entropy: the classifier matrix [C, d] (logits = X W^T + b; "
        "--weights is the class weights of the other ops)",
    )
    check.add_argument("--bias", type=Path, metavar="B.npy", help="linear_cross_entropy: bias [C]")
    check.add_argument("--labels", type=Path, help=".npy file (integers for the sparse op)")
    check.add_argument("--dtype", nargs="+", choices=DTYPES, help="default: the logits' own dtype")
    check.add_argument("--device", nargs="+", choices=DEVICES, default=["cpu"])
    check.add_argument("--mode", nargs="+", choices=MODES, default=["eager"])
    _option_flags(check)


def _compare_parser(commands) -> None:
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
    compare.add_argument(
        "--significance",
        type=float,
        default=0.01,
        help="p-value (a t-test on the round medians, else Mann-Whitney U on the samples) "
        "below which a timing change beyond --time-threshold counts",
    )
    compare.add_argument(
        "--normalise",
        action="store_true",
        help="divide time ratios by the calibration kernel's ratio (a uniformly slower machine)",
    )
    compare.add_argument("--format", choices=("table", "json"), default="table")


def _option_flags(check: argparse.ArgumentParser) -> None:
    """``xentbench check``'s call options (reference.options) and quantities."""
    call_option_flags(check)
    check.add_argument("--cotangent", type=Path, metavar="G.npy", help="for grad (a VJP)")
    check.add_argument("--tangent", type=Path, metavar="T.npy", help="for jvp")
    check.add_argument(
        "--quantity",
        nargs="+",
        choices=("value", "grad", "jvp", "grad_hidden", "grad_weight", "grad_bias"),
        metavar="Q",
        help="value grad jvp (default: value, and grad where the op has a plain gradient); "
        "linear_cross_entropy: value grad_hidden grad_weight grad_bias (default: all it has)",
    )


def _findings_parsers(commands) -> None:
    """``findings`` (grouped, classified failures) and ``repro`` (a standalone script each)."""
    findings = commands.add_parser(
        "findings", help="failing evaluations grouped into classified findings"
    )
    findings.add_argument("run_dirs", nargs="+", type=Path, metavar="RUN_DIR")
    findings.add_argument("--format", choices=("md", "json"), default="md")
    findings.add_argument(
        "--out",
        type=Path,
        help="write here instead of standard output (with --upstream: the directory)",
    )
    findings.add_argument(
        "--upstream",
        metavar="FINDING_ID",
        help="write FINDING_ID's issue body, OUT/<id>.md, and its reproducer, OUT/<id>.py",
    )
    findings.add_argument(
        "--upstream-top",
        metavar="N",
        type=int,
        help="write the N most severe confirmed defects' reports and OUT/README.md, their index",
    )
    repro = commands.add_parser(
        "repro", help="write a shrunk, standalone reproducer script for a finding"
    )
    repro.add_argument("finding_id", metavar="FINDING_ID", help="an id from 'findings', or 'all'")
    repro.add_argument(
        "--run",
        nargs="+",
        type=Path,
        default=[Path("reports/sample")],
        metavar="RUN_DIR",
        help="run directories the finding comes from (default reports/sample)",
    )
    repro.add_argument("--out", type=Path, default=Path("repro"), help="directory for the scripts")


def _hunt_parser(commands) -> None:
    hunt = commands.add_parser(
        "hunt", help="search for the inputs that break each implementation (exact oracle)"
    )
    _targets(
        hunt,
        ("--implementation", "NAME", "implementation names or patterns, e.g. 'torch:*'"),
        dtype_help="default: all four",
    )
    hunt.add_argument("--mode", nargs="+", choices=MODES, default=["eager"], metavar="M")
    hunt.add_argument("--quantity", nargs="+", choices=("value", "grad"), default=["value", "grad"])
    hunt.add_argument(
        "--budget-s",
        type=float,
        default=DEFAULT_BUDGET_S,
        help=f"seconds of search per target (default {DEFAULT_BUDGET_S:g}: ~7 min in all)",
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
