"""``xentbench matrix``: a selection of the accuracy suite over a grid of releases, each in its
own environment and run directory, merged into one table with a column per release."""

from __future__ import annotations

from pathlib import Path

from xentbench.adapters.base import DTYPES, OPS
from xentbench.suites.catalog.selection import Selection
from xentbench.suites.cli.params import check_cases, check_numbers, prepare_run_dir, writable_dir
from xentbench.suites.cli.usage import UsageError
from xentbench.suites.cli.versions_command import Releases
from xentbench.suites.run import run_info
from xentbench.suites.versions import envs, releases


def grid(args, known: Releases) -> list[str]:
    """``--versions`` as given (each checked), else the newest patch of the last ``--minors``
    minor releases in the window."""
    if args.versions:
        for version in args.versions:
            if version not in known.versions:
                raise UsageError(
                    f"--versions {version!r} is no installable {known.package} release in the "
                    f"window; valid: {', '.join(known.versions[-12:])}"
                )
        return list(dict.fromkeys(args.versions))
    if args.minors < 1:
        raise UsageError(f"invalid --minors {args.minors}; valid: an integer >= 1")
    return releases.minor_latest(known.versions, args.minors)


def matrix_command(args, console) -> int:
    from xentbench.suites.versions.matrix import Column, write_matrix
    from xentbench.suites.versions.oracle import run_accuracy

    check_numbers(args.jobs, args.timeout)
    check_cases(tuple(args.cases), tuple(args.op or OPS))
    known = Releases(args)
    versions = grid(args, known)
    out = writable_dir(args.out or Path("reports", "runs", f"matrix-{known.package}"))
    selection = Selection(
        ops=tuple(args.op or OPS),
        dtypes=tuple(args.dtype or DTYPES),
        devices=tuple(args.device),
        modes=tuple(args.mode),
        implementations=tuple(args.impl),
        cases=tuple(args.cases),
        seed=args.seed,
    )
    columns = []
    for version in versions:
        env = known.env(version)
        run_dir = out / envs.env_name(known.package, version)
        if env.ready:
            prepare_run_dir(
                run_dir, new=args.new, pinned=run_info.pinned(args.seed), say=console.print
            )
        else:
            console.print(f"[yellow]{known.package} {version}: not installable[/]: {env.failure}")
        columns.append(Column(version, env, run_dir))
    ready = {c.run_dir: c.env for c in columns if c.env.ready}
    if not ready:
        raise UsageError(f"no release of {', '.join(versions)} could be installed; see the logs")
    outcomes = run_accuracy(
        ready, known.stack.backend, selection, console, timeout_s=args.timeout, jobs=args.jobs
    )
    text = (
        f"backend {known.stack.backend}, ops {' '.join(selection.ops)}, dtypes "
        f"{' '.join(selection.dtypes)}, modes {' '.join(selection.modes)}, implementations "
        f"{' '.join(selection.implementations)}, cases {' '.join(selection.cases)}, seed "
        f"{selection.seed}"
    )
    path = write_matrix(out, known.package, columns, text)
    print(f"matrix: {path}")
    errors = sum(len(o.harness_errors) for o in outcomes)
    return 1 if errors else 0
