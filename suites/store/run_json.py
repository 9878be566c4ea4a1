"""A run's ``run.json``: read with its schema version checked, merged under a file lock.

Several worker processes (one per backend, possibly in different virtual environments) record
into the same ``run.json``; what they record is ``suites.run.run_info``'s.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from xentbench.suites.store.safe_paths import atomic_write_text, inside, open_no_follow
from xentbench.suites.store.schema import READABLE_VERSIONS, CorruptRun, IncompatibleRun


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock on ``.<name>.lock`` beside ``path`` (never through a symlink)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = open_no_follow(path.with_name(f".{path.name}.lock"), os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def read_run_info(run_dir: Path) -> dict[str, Any]:
    """The run's ``run.json`` ({} if none), its schema version checked (none recorded: 1)."""
    path = inside(Path(run_dir), Path(run_dir) / "run.json")
    try:
        info = json.loads(path.read_text()) if path.exists() else {}
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise CorruptRun(f"{path} is not readable JSON ({exc})") from None
    if not isinstance(info, dict):
        raise CorruptRun(f"{path} does not hold a JSON object")
    version = info.get("schema_version", 1)
    if version not in READABLE_VERSIONS:
        raise IncompatibleRun(
            f"{path} records results schema version {version}; this xentbench reads versions "
            f"{', '.join(map(str, sorted(READABLE_VERSIONS)))}"
        )
    return info


def update_run_info(run_dir: Path, update: dict[str, Any]) -> dict[str, Any]:
    """Merge ``update`` into ``run.json`` (dicts merged one level deep), under a file lock.

    Several worker processes (one per backend, possibly in different virtual environments)
    record their versions into the same run, so the merge is read-modify-write under a lock.
    """
    path = inside(Path(run_dir), Path(run_dir) / "run.json")
    with _locked(path):
        info = read_run_info(run_dir)
        for key, value in update.items():
            if isinstance(value, dict) and isinstance(info.get(key), dict):
                info[key] = {**info[key], **value}
            elif isinstance(value, list) and isinstance(info.get(key), list):
                info[key] = info[key] + [item for item in value if item not in info[key]]
            else:
                info[key] = value
        text = json.dumps(info, indent=2, sort_keys=True, default=str)
        atomic_write_text(Path(run_dir), path, text)
    return info


# Where a run's time went (``suites.run.phases``), seconds per phase, one entry per
# "<suite> <backend>" and one for "report": what ``time_breakdown`` reads back.
TIME_PHASES = (
    "wall_s",  # the backend's jobs from start to end, as the runner saw them
    "interpreter_s",  # worker interpreters starting, xentbench's own imports
    "import_s",  # the framework's import (registry.load)
    "plan_s",  # planning the tasks, reading the stored rows to resume or pool
    "reference_s",  # the exact reference, computed or read from its cache
    "compile_s",  # compilation on first calls (timing rows' compile_s)
    "evaluate_s",  # the rest of the tasks: framework calls and judging, or timing samples
    "write_s",  # writing rows
    "plots_s",  # report: rendering the plots
    "tables_s",  # report: the rest (loading rows, sections, markdown, HTML, CSV)
)


def time_breakdown(info: dict[str, Any]) -> dict[str, dict[str, float]]:
    """run.json's ``time_breakdown``: per entry, its known phases with non-negative numbers
    (anything else is dropped, so an older or damaged record never breaks a report)."""
    recorded = info.get("time_breakdown")
    if not isinstance(recorded, dict):
        return {}
    breakdown = {}
    for entry, phases in recorded.items():
        if not isinstance(phases, dict):
            continue
        kept = {
            phase: float(phases[phase])
            for phase in TIME_PHASES
            if isinstance(phases.get(phase), int | float)
            and not isinstance(phases.get(phase), bool)
            and phases[phase] >= 0
        }
        if kept:
            breakdown[str(entry)] = kept
    return breakdown
