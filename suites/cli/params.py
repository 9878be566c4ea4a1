"""What a command is asked to do, checked before any work starts (backends, interpreters, run
directories), and for ``run`` kept consistent with what its run directory already holds.

Rows of one directory must come from one seed and one software version (a resumed run skips
stored keys, so mixing would silently keep rows computed on other inputs or other code);
``--new`` moves the stored results aside (``previous-<time>/``) instead of mixing.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from xentbench.adapters import registry
from xentbench.suites.cli.usage import UsageError
from xentbench.suites.run.run_info import UNKNOWN
from xentbench.suites.store.rows import stored_backends
from xentbench.suites.store.run_json import read_run_info
from xentbench.suites.store.safe_paths import inside, regular_files
from xentbench.suites.store.schema import SUITES

# The run.json entries that must agree for rows to be mixed: (key, what the user changes).
PINNED = (
    ("seed", "--seed"),
    ("git_commit", "xentbench version"),
    ("python", "Python version"),
    ("profile", "--profile"),
)


def check_numbers(jobs: int, timeout_s: float) -> None:
    """``--jobs`` at least 1, ``--timeout`` a finite number of seconds above 0."""
    if jobs < 1:
        raise UsageError(f"invalid --jobs {jobs}; valid: an integer >= 1 (workers at a time)")
    if not math.isfinite(timeout_s) or timeout_s <= 0:
        raise UsageError(f"invalid --timeout {timeout_s:g}; valid: a number of seconds > 0")


def check_backends(backends: list[str] | None, known: tuple[str, ...]) -> tuple[str, ...]:
    """The requested backends, each known and named once (default: every one)."""
    for name in backends or ():
        if name not in known:
            raise UsageError(f"unknown backend {name!r}; valid: {', '.join(known)}")
    repeated = sorted({name for name in backends or () if backends.count(name) > 1})
    if repeated:
        raise UsageError(
            f"backend {repeated[0]!r} is given more than once; name each backend once "
            f"(valid: {', '.join(known)})"
        )
    return tuple(backends) if backends else known


def check_cases(patterns: tuple[str, ...], ops: tuple[str, ...]) -> None:
    """Every ``--cases`` glob matches at least one catalog case of the selected ops."""
    from xentbench.suites.catalog import cases

    ids = [case.id for case in cases.catalog() if case.op in ops]
    for pattern in patterns:
        if not any(fnmatch.fnmatchcase(case_id, pattern) for case_id in ids):
            families = sorted({case_id.rsplit("/", 1)[0] + "/*" for case_id in ids})
            raise UsageError(
                f"--cases {pattern!r} matches no case of {', '.join(ops)}; "
                f"valid: globs over case ids such as {', '.join(families[:8])}"
            )


def check_implementations(patterns: tuple[str, ...], names: set[str]) -> None:
    """After planning: every ``--impl`` glob matched an implementation of the run."""
    for pattern in patterns:
        if not any(fnmatch.fnmatchcase(name, pattern) for name in names):
            shown = ", ".join(sorted(names)[:60]) or "none (no backend was usable)"
            shown += ", ..." if len(names) > 60 else ""
            raise UsageError(f"--impl {pattern!r} matches no implementation; valid: {shown}")


def writable_dir(path: Path, option: str = "--out") -> Path:
    """``path`` as a directory this process can write into, created if needed."""
    if path.exists() and not path.is_dir():
        raise UsageError(f"{option} {str(path)!r} is a file; give a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"{option} {str(path)!r} cannot be created: {exc.strerror}") from None
    probe = path / f".xentbench-probe-{os.getpid()}"
    try:
        probe.touch()
        probe.unlink()
    except OSError as exc:
        raise UsageError(f"{option} {str(path)!r} is not writable: {exc.strerror}") from None
    return path


def has_results(run_dir: Path) -> bool:
    """Whether ``run_dir`` holds any stored rows (merged files or parts)."""
    return any(stored_backends(run_dir, suite) for suite in SUITES)


def check_same_run(run_dir: Path, now: dict[str, Any]) -> None:
    """Refuse to add rows to a directory whose rows came from another seed or version."""
    if not has_results(run_dir):
        return
    before = read_run_info(run_dir)
    for key, what in PINNED:
        # "unknown" (git absent, or slower than its timeout) says nothing about the version
        if UNKNOWN in (before.get(key), now.get(key)):
            continue
        if key in before and key in now and before[key] != now[key]:
            raise UsageError(
                f"{run_dir} holds rows with {key} {before[key]!r}, this run has {now[key]!r} "
                f"({what} differs); use another --out, or --new to start {run_dir} anew"
            )


def prepare_run_dir(
    run_dir: Path, *, new: bool, pinned: dict[str, Any], say: Callable[[str], None]
) -> None:
    """Before a run writes into ``run_dir``: with ``new``, move its results aside (saying where);
    then refuse the directory if its rows came from another seed or version."""
    if new:
        aside = start_anew(run_dir)
        if aside:
            say(f"previous results moved to {aside}")
    check_same_run(run_dir, pinned)


def start_anew(run_dir: Path) -> Path | None:
    """Move the stored results, run.json and the workers' logs into ``previous-<time>/``
    (nothing is deleted)."""
    stored = [*regular_files(run_dir, run_dir, "*.parquet"), run_dir / "run.json"]
    stored = [path for path in stored if path.exists()]
    for folder in ("parts", "logs"):  # the rows being written, the workers' logs
        path = inside(run_dir, run_dir / folder)
        if path.is_dir():
            stored.append(path)
    if not stored:
        return None
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    aside = inside(run_dir, run_dir / f"previous-{stamp}")
    aside.mkdir()
    for path in stored:
        os.rename(path, aside / path.name)
    return aside


def selected_backends(requested: list[str] | None) -> tuple[str, ...]:
    """``--backend``'s backends, each registered and named once (default: every one)."""
    return check_backends(requested, registry.backend_names())


MAX_SPLIT = 64  # workers one backend's tasks may be split over


def splits(pairs: list[str], backends: tuple[str, ...]) -> dict[str, int]:
    """``--split B=K`` pairs as {backend: workers}, K an integer from 1 to ``MAX_SPLIT``."""
    parts = {}
    for pair in pairs:
        backend, _, count = pair.partition("=")
        if backend not in backends or not count.isdigit() or not 1 <= int(count) <= MAX_SPLIT:
            raise UsageError(
                f"invalid --split {pair!r}; valid: B=K with B one of: {', '.join(backends)} "
                f"and K an integer from 1 to {MAX_SPLIT}"
            )
        parts[backend] = int(count)
    return parts


def interpreters(
    pairs: list[str], backends: tuple[str, ...], flag: str = "--python"
) -> dict[str, str]:
    """``--python B=PYTHON`` pairs as {backend: interpreter}, each checked to exist."""
    pythons = {}
    for pair in pairs:
        backend, _, python = pair.partition("=")
        if backend not in backends or not python:
            raise UsageError(
                f"invalid {flag} {pair!r}; expected B=PYTHON with B one of: {', '.join(backends)}"
            )
        if not os.access(python, os.X_OK) or Path(python).is_dir():
            raise UsageError(f"{flag} {pair!r}: {python!r} is not an executable file")
        pythons[backend] = python
    return pythons


def existing_dir(path: Path) -> Path:
    """A run directory given to report, compare, findings or repro, checked to exist."""
    if not path.is_dir():
        raise UsageError(f"no run directory {str(path)!r}")
    return path


def require_results(run_dir: Path) -> Path:
    """A run directory that holds stored rows (report and compare have nothing to read else)."""
    if not has_results(run_dir):
        raise UsageError(
            f"{str(run_dir)!r} holds no results (no accuracy-*/timing-* parquet files or parts); "
            "valid: a directory written by xentbench run"
        )
    return run_dir
