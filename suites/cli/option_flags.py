"""The call options' flags, one definition for ``check`` and ``verify`` (reference.options)."""

from __future__ import annotations

import argparse
from pathlib import Path


def _number_or_path(text: str) -> float | Path:
    """A number as given, or the path of a .npy array (``--temperature``)."""
    try:
        return float(text)
    except ValueError:
        return Path(text)


def call_option_flags(parser: argparse.ArgumentParser, arrays: bool = True) -> None:
    """The call options' flags (reference.options), one definition for ``check`` and
    ``verify``; ``arrays``: also the options given as arrays or as a layout of the user's own
    inputs (class and sample weights, the class axis, a temperature per row)."""
    from xentbench.reference.options import REDUCTIONS

    parser.add_argument("--reduction", choices=tuple(REDUCTIONS), help="see docs/options.md")
    parser.add_argument("--ignore-index", type=int, metavar="N")
    parser.add_argument("--label-smoothing", type=float, metavar="EPS")
    if arrays:
        parser.add_argument("--weights", type=Path, metavar="W.npy", help="class weights [C]")
        parser.add_argument("--sample-weights", type=Path, metavar="S.npy", help="one per row")
        parser.add_argument(
            "--class-axis",
            type=int,
            metavar="K",
            help="the axis of the logits holding the classes, e.g. 1 for torch's [N, C, d]; the "
            "arrays are judged as given (default: the last axis)",
        )
    parser.add_argument(
        "--softcap", type=float, metavar="CAP", help="cap * tanh(x / cap), a cap > 0 (LLM head)"
    )
    parser.add_argument(
        "--temperature",
        type=_number_or_path if arrays else float,
        metavar="T",
        help="x / T first: a number > 0" + (", or T.npy with one per row" if arrays else ""),
    )
    parser.add_argument(
        "--z-loss", type=float, metavar="Z", help="adds Z * logsumexp^2 per row, Z >= 0"
    )
    parser.add_argument(
        "--shards",
        type=int,
        metavar="K",
        help="vocabulary-parallel: the classes split into K shards (1 <= K <= C, uneven as "
        "numpy.array_split), judged against the unsharded loss (sparse labels)",
    )
