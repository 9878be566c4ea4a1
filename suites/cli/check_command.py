"""``xentbench check``: the call options and inputs given on the command line, run through
``suites.accuracy.check``, and the table of its records."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from rich.table import Table

from xentbench.reference import head, shards
from xentbench.reference.options import CROSS_ENTROPIES, validate
from xentbench.suites.accuracy.check import CheckRequest, dtype_name, run_check
from xentbench.suites.cli.check_inputs import load_array, normalise
from xentbench.suites.cli.check_linear_inputs import normalise_linear, refuse_other_options
from xentbench.suites.cli.usage import UsageError
from xentbench.suites.report.format import error_cells

# check's option flags (their argparse names) -> the call options they set.
OPTION_FLAGS = {
    "reduction": "reduction",
    "ignore_index": "ignore_index",
    "label_smoothing": "label_smoothing",
    "weights": "class_weight",
    "sample_weights": "sample_weight",
    "class_axis": "class_axis",
    "cotangent": "cotangent",
    "tangent": "tangent",
    "softcap": "softcap",
    "temperature": "temperature",
    "z_loss": "z_loss",
    "shards": "shards",
}


def check_options(args) -> dict:
    """The call options given on the command line, arrays loaded (float64, cast per dtype)."""
    options = {}
    for flag, name in OPTION_FLAGS.items():
        value = getattr(args, flag, None)
        if value is None:
            continue
        if isinstance(value, Path):
            try:
                value = np.load(value).astype(np.float64)
            except (OSError, ValueError) as exc:
                raise UsageError(f"cannot read --{flag.replace('_', '-')} array: {exc}") from None
        options[name] = value
    try:  # a bad cap, temperature or z-loss: one line naming the value and what is valid
        head.validate(args.op, options, (*CROSS_ENTROPIES, "linear_cross_entropy"))
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return options


def check_records(args, backends_of: Callable[[list[str] | None], tuple[str, ...]]) -> list[dict]:
    """The records of ``suites.accuracy.check.run_check`` for the parsed ``check`` arguments
    (``backends_of`` checks ``--backend``, after the inputs as before the split)."""
    labels = None if args.labels is None else load_array(str(args.labels), "--labels")
    if args.op == "linear_cross_entropy":
        logits, labels, options = _linear_inputs(args, labels)
    else:
        _no_linear_flags(args)
        if args.logits is None:
            raise UsageError(f"{args.op} needs --logits (a .npy file); none given")
        logits = load_array(str(args.logits), "--logits")
        logits, labels, class_axis = normalise(args.op, logits, labels, args.class_axis)
        options = _with_class_axis(check_options(args), class_axis)
        try:  # an op without shards, or a shard count the classes cannot hold: one line
            validate(args.op, "value", {k: v for k, v in options.items() if k == "shards"})
            shards.validate(options, logits.shape[-1 if class_axis is None else class_axis])
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    try:
        dtypes = tuple(args.dtype) if args.dtype else (dtype_name(logits),)
        request = CheckRequest(
            args.op,
            logits,
            labels,
            backends_of(args.backend),
            dtypes,
            tuple(args.device),
            tuple(args.mode),
            options=options,
            quantities=tuple(args.quantity or ()),
        )
        records = run_check(request)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return records


def _with_class_axis(options: dict, class_axis: int | None) -> dict:
    """The options with the class axis ``normalise`` kept (none for the last axis: the rows
    were flattened to ``[N, C]``, the layout every implementation takes by default)."""
    options = {name: value for name, value in options.items() if name != "class_axis"}
    return options if class_axis is None else {**options, "class_axis": class_axis}


def _linear_inputs(args, labels) -> tuple:
    """check's arrays for linear_cross_entropy (suites.cli.check_linear_inputs), or UsageError."""
    if args.logits is not None:
        raise UsageError(
            "linear_cross_entropy takes no --logits; valid: --hidden X.npy --classifier W.npy"
        )
    given = check_options(args)
    refuse_other_options(given)
    arrays = {
        flag: None
        if getattr(args, flag) is None
        else load_array(str(getattr(args, flag)), f"--{flag}")
        for flag in ("hidden", "classifier", "bias")
    }
    hidden, labels, options = normalise_linear(*arrays.values(), labels, args.ignore_index)
    return hidden, labels, {**options, **{k: v for k, v in given.items() if k in head.HEAD_OPTIONS}}


def _no_linear_flags(args) -> None:
    for flag in ("hidden", "classifier", "bias"):
        if getattr(args, flag, None) is not None:
            raise UsageError(
                f"--{flag} is for --op linear_cross_entropy only; {args.op} takes --logits"
            )


def check_table(records) -> Table:
    """The records as a rich table, one row per implementation, dtype, device, mode, quantity."""
    table = Table(
        "implementation",
        "dtype",
        "device",
        "mode",
        "quantity",
        "verdict",
        "tier",
        "error/allowance",
        "ULPs (budget)",
        "abs error (allowance)",
        "nats error",
        "options",
        "message",
        title="xentbench check",
    )
    for record in records:
        table.add_row(
            record.get("implementation", record["backend"]),
            record.get("dtype", ""),
            record.get("device", ""),
            record.get("mode", ""),
            record.get("quantity", ""),
            record["verdict"],
            record.get("tier") or "",
            *error_cells(record).values(),
            record.get("options", ""),
            (record.get("message") or "")[:60],
        )
    return table
