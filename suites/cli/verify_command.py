"""``xentbench verify TARGET --op OP``: one user function checked in one command.

The function becomes the reserved backend ``verify`` (``adapters.function_adapter``), loaded by
the worker processes the runner starts, configured through ``XENTBENCH_VERIFY``: the accuracy
catalog for the op runs in the dtypes asked for, then a short hunt, each call under a timeout.
Then the verdicts, the trivial-output margins and the findings (with reproducers) are printed,
and the exit status is 0 only when nothing fails (1 otherwise, 2 for usage errors).
"""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path

from xentbench.adapters.base import DTYPES
from xentbench.adapters.function_adapter import (
    BACKEND,
    ENV_VAR,
    Target,
    TargetError,
    load_function,
)
from xentbench.suites.catalog.selection import Selection
from xentbench.suites.cli.params import check_cases, prepare_run_dir, writable_dir
from xentbench.suites.cli.usage import UsageError
from xentbench.suites.run import run_info
from xentbench.suites.store.run_json import update_run_info

# Seconds a task may take beyond its calls' timeouts (the exact reference of a large case, the
# worker's start) before the runner kills the worker: the backstop for a hang in native code.
TASK_GRACE_S = 120.0
# What the rows of a timed-out call say: ``function_adapter.deadline``, or the runner's kill.
TIMED_OUT_MESSAGES = "CallTimedOut|timed out after"


def checked_target(args) -> Target:
    """The target of ``args``, its function (and gradient function) loaded once here, so that a
    bad target is a usage error before anything starts."""
    if not math.isfinite(args.timeout) or args.timeout <= 0:
        raise UsageError(f"invalid --timeout {args.timeout:g}; valid: a number of seconds > 0")
    if not math.isfinite(args.budget_s) or args.budget_s < 0:
        raise UsageError(f"invalid --budget-s {args.budget_s:g}; valid: seconds >= 0 (0: no hunt)")
    if args.device != "cpu" and args.array == "numpy":
        raise UsageError(
            f"--device {args.device} needs device arrays; valid: --array torch|jax with it"
        )
    if args.device != "cpu":
        _require_device(args.array, args.device)
    grad = bool(args.grad or args.grad_fn)
    if grad and args.array == "numpy" and not args.grad_fn:
        raise UsageError(
            "--grad with --array numpy needs --grad-fn NAME (NumPy has no autograd); "
            "valid: --grad-fn NAME, or --array torch|jax"
        )
    target = Target(
        values=_values(args),
        spec=args.target,
        op=args.op,
        array=args.array,
        grad=grad,
        grad_fn=args.grad_fn or "",
        options=tuple(dict.fromkeys(args.options)),
        dtypes=tuple(dict.fromkeys(args.dtype or DTYPES)),
        timeout_s=args.timeout,
        device=args.device,
    )
    if ":" in args.target and args.target.rpartition(":")[0].endswith(".py"):
        where = args.target.rpartition(":")[0]
        target = dataclasses.replace(target, spec=f"{Path(where).resolve()}:{target.function_name}")
    try:
        load_function(target.spec)
        if target.grad_fn:
            load_function(target.spec, target.grad_fn)
    except TargetError as exc:
        raise UsageError(str(exc)) from None
    return target


def _require_device(array: str, device: str) -> None:
    """A device the array kind's framework sees on this machine, or one line saying it does
    not (every case would otherwise be ``unsupported``)."""
    from xentbench.adapters import function_arrays

    try:
        found = function_arrays.kind(array).devices()
    except ImportError as exc:
        raise UsageError(f"--array {array} needs {array} installed ({exc})") from None
    if device not in found:
        raise UsageError(
            f"--device {device}: {array} sees no {device.upper()} device on this machine; "
            f"valid here: --device {' '.join(found)}"
        )


def _values(args) -> tuple[tuple[str, object], ...]:
    """The call option values given as ``check`` takes them (``--label-smoothing 0.1``, ...),
    checked against the op by the reference's own rules: (name, value) pairs."""
    from xentbench.reference.options import validate
    from xentbench.suites.cli.check_command import check_options

    values = check_options(args)
    try:
        validate(args.op, "value", values)
    except ValueError as exc:
        raise UsageError(f"{exc} (--op {args.op})") from None
    return tuple(sorted(values.items()))


def _check_shards(target: Target, patterns: tuple[str, ...], console) -> None:
    """A given shard count that no selected case has the classes for is a usage error (one
    line naming it and the valid range); the cases with fewer classes than it are not run
    (``suites.accuracy.suite.plan_accuracy``), and their number is said."""
    from xentbench.suites.catalog import cases

    count = dict(target.values).get("shards")
    if count is None:
        return
    selection = Selection(ops=(target.op,), cases=patterns)
    sizes = [c.classes for c in cases.catalog() if c.op == target.op and selection.wants_case(c.id)]
    if not 1 <= count <= max(sizes):
        raise UsageError(
            f"--shards {count} is invalid; valid: an integer from 1 to {max(sizes)}, the "
            "classes of the largest selected case (each shard holds at least one class)"
        )
    fewer = sum(size < count for size in sizes)
    if fewer:
        console.print(f"--shards {count}: {fewer} selected cases have fewer classes; not run")


def verify_command(args, console, stdout) -> int:
    """Run the catalog and the hunt on the target; print the outcome; 0, or 1 if anything fails."""
    from xentbench.suites.cli.verify_report import print_outcome
    from xentbench.suites.run.lock import hold

    target = checked_target(args)
    check_cases(tuple(args.cases), (target.op,))
    _check_shards(target, tuple(args.cases), console)
    out = writable_dir(args.out or run_info.default_run_dir())
    with hold(out):
        prepare_run_dir(out, new=args.new, pinned=run_info.pinned(args.seed), say=console.print)
        outcomes = _run(args, target, out, console)
    os.environ[ENV_VAR] = target.to_json()  # the reproducers load the function in this process
    return print_outcome(out, target, args, outcomes, stdout)


def _run(args, target: Target, out: Path, console) -> list:
    """The accuracy catalog, then the hunt, for the ``verify`` backend in worker processes."""
    from xentbench.suites.hunt.search import HuntSpec
    from xentbench.suites.run.runner import run_all
    from xentbench.suites.run.worker import WorkerJob

    info = run_info.start(out, args.seed, timing=False)
    update_run_info(out, {"verify": {"target": target.spec, "config": target.to_json()}})
    console.print(f"run directory: {out}")
    environment = {ENV_VAR: target.to_json()}
    selection = Selection(
        ops=(target.op,),
        dtypes=target.dtypes,
        devices=(target.device,),
        cases=tuple(args.cases),
        seed=args.seed,
        options=target.values,
    )
    catalog = WorkerJob.in_run(out, info, BACKEND, "accuracy", selection, environment=environment)
    task_timeout = 2 * target.timeout_s + TASK_GRACE_S
    outcomes = run_all([catalog], task_timeout, console)
    _refuse(outcomes)
    if args.budget_s > 0 and target.values:
        console.print(
            "hunt skipped: the hunt searches calls without options; with option values given, "
            "the catalog runs alone"
        )
    elif args.budget_s > 0 and _timed_out(out):
        console.print("hunt skipped: the function timed out on catalog cases (see the verdicts)")
    elif args.budget_s > 0:
        quantities = ("value", "grad") if target.grad else ("value",)
        spec = HuntSpec(args.budget_s, 4000, False, quantities)
        hunt = WorkerJob.in_run(
            out, info, BACKEND, "hunt", selection, environment=environment, hunt=spec
        )
        outcomes += run_all([hunt], 2 * args.budget_s + task_timeout, console)
    run_info.finish(out, outcomes)
    return outcomes


def configure_from_runs(run_dirs: list[Path]) -> None:
    """Set ``XENTBENCH_VERIFY`` from a verify run's ``run.json`` (unless set), so that
    ``xentbench repro`` on that run loads the verified function as verify did."""
    from xentbench.suites.store.run_json import read_run_info

    for run_dir in run_dirs:
        recorded = read_run_info(run_dir).get("verify")
        if isinstance(recorded, dict) and "config" in recorded:
            os.environ.setdefault(ENV_VAR, recorded["config"])
            return


def _timed_out(out: Path) -> bool:
    """Whether a catalog call timed out: a hunt would wait out the timeout on every candidate."""
    from xentbench.suites.store.rows import load

    rows = load([out], "accuracy")
    if rows.empty:
        return False
    said = rows["message"].fillna("") + " " + rows["harness_error"].fillna("")
    return bool(said.str.contains(TIMED_OUT_MESSAGES, regex=True).any())


def _refuse(outcomes) -> None:
    """The run directory holds rows of another version of the function: a usage error."""
    for outcome in outcomes:
        if outcome.refused:
            raise UsageError(outcome.refused)
