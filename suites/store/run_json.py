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
