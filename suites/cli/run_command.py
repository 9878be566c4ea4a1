"""``xentbench run``: one run directory (or an interleaved pair) locked, its workers started,
its outcome recorded, contended timings named, and the ``--fail-on`` gate applied."""

from __future__ import annotations

import contextlib
import dataclasses
from pathlib import Path

from xentbench.adapters.base import DTYPES, OPS
from xentbench.suites.catalog.selection import Selection
from xentbench.suites.cli.params import (
    check_cases,
    check_implementations,
    check_numbers,
    interpreters,
    prepare_run_dir,
    selected_backends,
    splits,
    writable_dir,
)
from xentbench.suites.cli.usage import UsageError
from xentbench.suites.judge.verdicts import at_or_beyond
from xentbench.suites.run import run_info
from xentbench.suites.store.run_json import update_run_info
from xentbench.suites.store.schema import SUITES
from xentbench.suites.timing.profiles import DEFAULT_PROFILE, PROFILES, Profile
from xentbench.suites.timing.rounds import AB_DEFAULT_ROUNDS

DEFAULT_MODES = {"accuracy": ("eager",), "timing": ("eager", "compiled")}
DEFAULT_DTYPES = {"accuracy": DTYPES, "timing": ("float32",)}


def run_command(args, console) -> int:
    """``xentbench run``: the request checked, the run directories locked, then run."""
    check_numbers(args.jobs, args.timeout)
    backends = selected_backends(args.backend)
    pythons = interpreters(args.python, backends)
    args.split = splits(args.split, backends)
    check_cases(tuple(args.cases), tuple(args.op or OPS))
    suites = SUITES if args.suite == "all" else (args.suite,)
    out = args.out or run_info.default_run_dir()
    against = _against(args, out)  # checked before either directory is created
    against_pythons = pythons | interpreters(args.against_python, backends, "--against-python")
    runs = {writable_dir(out): pythons}  # run directory -> its backends' interpreters
    if against:
        runs[writable_dir(against, "--against")] = against_pythons
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

    pair = len(runs) > 1
    profile = _profile(args, pair)
    rounds = args.repeat_runs or (AB_DEFAULT_ROUNDS if pair else profile.rounds)
    timing = {
        "rounds": rounds,
        "memory": args.memory,
        "in_process": profile.rounds_in_process,
        "overhead_window_s": profile.overhead_window_s,
    }
    per_run = [
        _jobs_of_run(args, console, run_dir, pythons, backends, suites, (profile, timing))
        for run_dir, pythons in runs.items()
    ]
    if pair:  # compare reads it: the pair's rounds took turns on one machine
        names = [jobs[0].run_id for jobs in per_run]
        for run_dir, other in zip(runs, reversed(names), strict=True):
            update_run_info(run_dir, {"interleaved_with": other})
    jobs = [job for jobs in per_run for job in jobs]  # a pair's rounds take turns (run_all)
    try:
        outcomes = run_all(jobs, args.timeout, console, args.jobs)
    except KeyboardInterrupt:
        raise KeyboardInterrupt from None  # finished rows are stored; main says so in one line
    for run_dir in runs:
        info = run_info.finish(run_dir, outcomes)
        console.print(_time_line(run_dir, info) if len(runs) == 1 else "", end="")
    _refuse_unusable(args, outcomes)
    unstarted = [o for o in outcomes if _failed_to_start(o)]
    for outcome in unstarted:  # e.g. a --python interpreter without xentbench
        console.print(
            f"[red]{outcome.backend} ({outcome.suite}): the worker failed to start[/]: "
            f"{outcome.crashes[0]}"
        )
    if unstarted and not any(outcome.planned for outcome in outcomes):
        return 1
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


def _profile(args, pair: bool) -> Profile:
    """The timing profile: ``--profile``'s (default: ``default``); an A/B pair's is ``full``
    (its rounds each in a fresh process, as the gate's statistics were measured)."""
    if not pair:
        return PROFILES[args.profile or DEFAULT_PROFILE]
    if args.profile not in (None, "full"):
        raise UsageError(
            f"--against times a gate pair with the full profile; invalid with --profile "
            f"{args.profile}; valid: --profile full"
        )
    return dataclasses.replace(PROFILES["full"], rounds_in_process=False)


def _jobs_of_run(args, console, run_dir, pythons, backends, suites, timing) -> list:
    """Start (or resume) one run directory and return its jobs, backend x suite; ``timing``
    is the profile and the timing jobs' options."""
    from xentbench.suites.run.worker import WorkerJob

    profile, options = timing
    timed = "timing" in suites
    pinned = run_info.pinned(args.seed) | ({"profile": profile.name} if timed else {})
    prepare_run_dir(run_dir, new=args.new, pinned=pinned, say=console.print)
    record = {
        "name": profile.name,
        "rounds": options["rounds"],
        "rounds_in_process": options["in_process"],
        "description": profile.describe(options["rounds"], options["in_process"]),
    }
    info = run_info.start(run_dir, args.seed, timing=timed, profile=record)
    if tuple(args.shard) != (1, 1):  # provenance: the report names each directory's part
        update_run_info(run_dir, {"shard": "{}/{}".format(*args.shard)})
    console.print(f"run directory: {run_dir}")
    return [
        WorkerJob.in_run(
            run_dir,
            info,
            backend,
            suite,
            _selection(args, suite, profile),
            python=pythons.get(backend, ""),
            timing_options=dict(options) if suite == "timing" else {},
            part=part,
        )
        for suite in suites
        for backend in backends
        for part in _parts(args.split.get(backend, 1) if suite != "timing" else 1)
    ]


def _parts(count: int) -> list[tuple[int, int]]:
    """The parts of a backend's tasks, one per worker (``--split``; timing is never split:
    its workers run alone)."""
    return [(index, count) for index in range(1, count + 1)]


def _refuse_unusable(args, outcomes) -> None:
    """Exit 2 when a backend refused the directory's rows, or the selection selected nothing."""
    refused = [outcome.refused for outcome in outcomes if outcome.refused]
    if refused:
        raise UsageError(refused[0])
    usable = [o for o in outcomes if not o.unavailable and not _failed_to_start(o)]
    if usable:
        check_implementations(
            tuple(args.impl), {name for outcome in usable for name in outcome.names}
        )
    if usable and not any(outcome.planned for outcome in usable) and args.shard == (1, 1):
        raise UsageError(
            "the selection matches no evaluation (--op/--dtype/--mode/--device/--impl/--cases "
            "combined); widen it"
        )


def _failed_to_start(outcome) -> bool:
    """A worker that died before it planned anything (its crash names its log)."""
    return not outcome.unavailable and not outcome.planned and bool(outcome.crashes)


def _selection(args, suite: str, profile: Profile) -> Selection:
    return Selection(
        ops=tuple(args.op or OPS),
        dtypes=tuple(args.dtype or DEFAULT_DTYPES[suite]),
        devices=tuple(args.device),
        modes=tuple(args.mode or DEFAULT_MODES[suite]),
        implementations=tuple(args.impl),
        cases=tuple(args.cases),
        shapes=tuple(args.shapes or profile.shapes),
        seed=args.seed,
        shard=tuple(args.shard),
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


def _time_line(run_dir: Path, info: dict) -> str:
    """Where the run's time went, one line per suite, summed over its backends (run.json's
    ``time_breakdown`` keeps each backend's)."""
    from xentbench.suites.store.run_json import time_breakdown

    totals: dict[str, dict[str, float]] = {}
    for entry, phases in time_breakdown(info).items():
        if entry == "report":  # an earlier report's, not this run's
            continue
        suite = totals.setdefault(entry.split(" ")[0], {})
        for phase, seconds in phases.items():
            suite[phase] = suite.get(phase, 0.0) + seconds
    lines = [
        f"time, {suite} (summed over backends): "
        + ", ".join(
            f"{phase.removesuffix('_s')} {seconds:.0f} s" for phase, seconds in phases.items()
        )
        + "\n"
        for suite, phases in totals.items()
    ]
    where = f"per backend: {run_dir / 'run.json'} (time_breakdown)\n"
    return "".join(lines) + where if lines else ""
