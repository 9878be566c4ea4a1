"""``xentbench hunt``: one worker per backend hunts its targets; a summary of what was found."""

from __future__ import annotations

from pathlib import Path

from rich.table import Table

from xentbench.suites.catalog.selection import Selection
from xentbench.suites.hunt.search import HuntSpec
from xentbench.suites.run import run_info

# Backends whose hunts take longest go first (JAX eager compiles each new shape), so the others
# share the second worker meanwhile; any other backend follows in its given order.
LONGEST_FIRST = ("jax", "tensorflow", "torch", "numpy", "onnxruntime")

# Seconds a hunt task may stay silent beyond its budget (judging and saving what it kept,
# a first call that compiles) before the runner calls it hung.
GRACE_S = 120.0


def run_hunt(args, backends, pythons, selection: Selection, console, stdout) -> int:
    """Hunt every selected target into the run directory; print what was found."""
    from xentbench.suites.run.runner import run_all
    from xentbench.suites.run.worker import WorkerJob

    spec = HuntSpec(args.budget_s, args.max_evals, args.from_scratch, tuple(args.quantity))
    run_dir = args.out or run_info.default_run_dir()
    info = run_info.start(run_dir, args.seed, timing=False)
    jobs = [
        WorkerJob.in_run(
            run_dir, info, backend, "hunt", selection, python=pythons.get(backend, ""), hunt=spec
        )
        for backend in sorted(backends, key=_longest_first)
    ]
    console.print(f"run directory: {run_dir}")
    outcomes = run_all(jobs, 2 * args.budget_s + GRACE_S, console, args.jobs)
    run_info.finish(run_dir, outcomes)
    stdout.print(summary_table(Path(run_dir)))
    if any(outcome.harness_errors for outcome in outcomes):
        console.print("[red]some hunts failed inside xentbench itself[/] (see above)")
        return 1
    return 0


def _longest_first(backend: str) -> int:
    return LONGEST_FIRST.index(backend) if backend in LONGEST_FIRST else len(LONGEST_FIRST)


def summary_table(run_dir: Path) -> Table:
    """The hunted rows that fail, worst first."""
    from xentbench.suites.judge.verdicts import FAILURES
    from xentbench.suites.store.rows import load

    rows = load([run_dir], "accuracy")
    rows = rows[(rows["source"] == "hunt") & rows["verdict"].isin(FAILURES)]
    rows = rows.sort_values("worst_ratio", ascending=False)
    table = Table("implementation", "dtype", "quantity", "verdict", "worst ratio", "input", "case")
    table.title = f"xentbench hunt: {len(rows)} failing inputs found"
    for row in rows.itertuples(index=False):
        table.add_row(
            row.implementation,
            row.dtype,
            row.quantity,
            row.verdict,
            f"{row.worst_ratio:.3g}",
            _text(row.worst_input)[:70],
            row.case_id,
        )
    return table


def _text(value) -> str:
    return value if isinstance(value, str) else ""
