"""The arguments of the commands across releases: ``versions``, ``bisect`` and ``matrix``."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from xentbench.adapters.base import DEVICES, DTYPES, MODES, OPS


def versions_parsers(commands, check_flags: Callable[[argparse.ArgumentParser, bool], None]):
    """Add ``versions``, ``bisect`` and ``matrix`` (``check_flags`` adds check's test flags)."""
    versions = commands.add_parser(
        "versions", help="a backend's installable releases and the cached version environments"
    )
    _release_flags(versions, backend_required=False)
    versions.add_argument(
        "--prune",
        nargs="*",
        metavar="NAME",
        help="delete these cached environments (e.g. scipy-1.11.4), or every one when none is "
        "named, with their logs and failure records",
    )
    bisect = commands.add_parser(
        "bisect",
        help="the first release where a finding appeared or went away (binary search over "
        "released wheels, judged by the exact reference)",
    )
    bisect.add_argument(
        "finding_id",
        nargs="?",
        metavar="FINDING_ID",
        help="a finding of --run; or none, with check's --op, --impl and arrays as the test",
    )
    bisect.add_argument("--run", nargs="+", type=Path, metavar="RUN_DIR")
    bisect.add_argument("--impl", metavar="NAME", help="with --op: the implementation to test")
    bisect.add_argument(
        "--fail-on",
        choices=("inaccurate", "wrong"),
        default="inaccurate",
        help="with --op: a release is bad when the verdict is at or beyond this (error counts)",
    )
    bisect.add_argument(
        "--max-rel-error",
        type=float,
        metavar="R",
        help="with --op: a release is also bad when its largest relative error from the exact "
        "result exceeds R (for a fix that made a result already within budget accurate)",
    )
    _release_flags(bisect, backend_required=True)
    _run_flags(bisect, "reports/runs/bisect-<id>")
    check_flags(bisect, False)
    matrix = commands.add_parser(
        "matrix", help="the accuracy suite (or a selection) across releases, one table"
    )
    _release_flags(matrix, backend_required=True)
    matrix.add_argument(
        "--versions", nargs="+", metavar="V", help="these releases (default: --minors' grid)"
    )
    matrix.add_argument(
        "--minors",
        type=int,
        default=4,
        metavar="K",
        help="the newest patch release of each of the last K minor releases in "
        "--since..--until (default 4)",
    )
    matrix.add_argument("--impl", nargs="+", default=["*"], metavar="GLOB")
    matrix.add_argument("--op", nargs="+", choices=OPS, metavar="OP")
    matrix.add_argument("--dtype", nargs="+", choices=DTYPES, metavar="D")
    matrix.add_argument("--device", nargs="+", choices=DEVICES, default=["cpu"])
    matrix.add_argument("--mode", nargs="+", choices=MODES, default=["eager"], metavar="M")
    matrix.add_argument("--cases", nargs="+", default=["*"], metavar="GLOB")
    matrix.add_argument("--seed", type=int, default=0)
    matrix.add_argument("--jobs", type=int, default=2, help="environments' workers at a time")
    _run_flags(matrix, "reports/runs/matrix-<package>")


def _release_flags(parser: argparse.ArgumentParser, backend_required: bool) -> None:
    parser.add_argument(
        "--backend", required=backend_required, metavar="B", help="numpy jax onnxruntime ..."
    )
    parser.add_argument(
        "--package",
        metavar="P",
        help="the package stepped through (default: scipy for numpy, jax, onnxruntime, "
        "tensorflow-cpu; numpy for numpy, optax for jax); see docs/bisect.md for what moves "
        "with it",
    )
    parser.add_argument("--since", metavar="V", help="the oldest release considered")
    parser.add_argument("--until", metavar="V", help="the newest release considered")
    parser.add_argument(
        "--index",
        metavar="URL",
        help="a simple-API package index for the stepped package (default: "
        "XENTBENCH_INDEX_<BACKEND>, else the one pip uses); torch needs one of CPU builds",
    )


def _run_flags(parser: argparse.ArgumentParser, default_out: str) -> None:
    parser.add_argument("--out", type=Path, help=f"directory of the runs (default {default_out})")
    parser.add_argument(
        "--new", action="store_true", help="start its run directories anew (results moved aside)"
    )
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per task")
