"""``xentbench verify``'s arguments: the target function, its op and array kind, what to check."""

from __future__ import annotations

from pathlib import Path

from xentbench.adapters.base import DEVICES, DTYPES
from xentbench.adapters.function_adapter import ARRAY_KINDS, KEYWORD_OPTIONS
from xentbench.suites.catalog.case import LOGITS_OPS
from xentbench.suites.cli.option_flags import call_option_flags

DEFAULT_VERIFY_BUDGET_S = 3.0  # seconds of hunt per target: a CI step, not a search campaign
DEFAULT_CALL_TIMEOUT_S = 30.0


def verify_parser(commands) -> None:
    """Add ``verify`` to the sub-commands."""
    verify = commands.add_parser(
        "verify",
        help="check your own kernel (file.py:function) against the exact reference: the "
        "catalog, a short hunt, findings; exit 1 if anything fails",
    )
    verify.add_argument(
        "target", metavar="TARGET", help="path/to/file.py:function or module:function"
    )
    verify.add_argument("--op", required=True, choices=LOGITS_OPS, help="the op it computes")
    verify.add_argument(
        "--array",
        choices=ARRAY_KINDS,
        default="numpy",
        help="what the function takes and returns (default numpy)",
    )
    verify.add_argument(
        "--grad",
        action="store_true",
        help="also check d/dlogits: through torch/jax autograd, or through --grad-fn",
    )
    verify.add_argument(
        "--grad-fn",
        metavar="NAME",
        help="a function of the same file taking the inputs plus the cotangent, returning "
        "d/dlogits (implies --grad)",
    )
    verify.add_argument(
        "--options",
        nargs="+",
        choices=KEYWORD_OPTIONS,
        default=[],
        metavar="NAME",
        help="keyword options the function takes (cross-entropies): the catalog's options "
        "cases using only these are run too, the values passed by keyword",
    )
    # Values passed by keyword on every call, and to the reference, as check takes them.
    call_option_flags(verify, arrays=False)
    _run_flags(verify)


def _run_flags(verify) -> None:
    """What runs and where it is stored: dtypes, device, cases, hunt, timeout, run directory."""
    verify.add_argument("--dtype", nargs="+", choices=DTYPES, metavar="D", help="default: all four")
    verify.add_argument("--device", choices=DEVICES, default="cpu")
    verify.add_argument(
        "--cases", nargs="+", default=["*"], metavar="GLOB", help="case id patterns (default all)"
    )
    verify.add_argument(
        "--budget-s",
        type=float,
        default=DEFAULT_VERIFY_BUDGET_S,
        help=f"seconds of hunt per dtype and quantity (default {DEFAULT_VERIFY_BUDGET_S:g}; 0: "
        "no hunt)",
    )
    verify.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_CALL_TIMEOUT_S,
        help=f"seconds one call may take (default {DEFAULT_CALL_TIMEOUT_S:g})",
    )
    verify.add_argument("--seed", type=int, default=0)
    verify.add_argument(
        "--out", type=Path, help="run directory (default reports/runs/<time>-<host>)"
    )
    verify.add_argument(
        "--new", action="store_true", help="move the run directory's stored results aside first"
    )
    verify.add_argument(
        "--no-repro", action="store_true", help="skip writing reproducer scripts for findings"
    )
