"""One writer per run directory: an OS-level lock (``fcntl.flock``) on ``run.lock``.

The lock belongs to the open file, so it disappears with the process that holds it, however
that process ends (``kill -9`` included): a stale lock file never blocks a resumed run. The
file records the holder (pid, host, command) so that a refused second run can name it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shlex
import socket
import stat
import sys
from collections.abc import Iterator
from pathlib import Path

from xentbench.suites.store.safe_paths import UnsafePath, inside, open_no_follow

LOCK_NAME = "run.lock"


class RunLocked(Exception):
    """Another process is writing into this run directory."""


def _holder_text(fd: int) -> str:
    try:
        holder = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
    except (OSError, ValueError):
        holder = {}
    if not holder:
        return "a process that has not recorded itself yet"
    return (
        f"pid {holder.get('pid', '?')} on {holder.get('host', '?')}: {holder.get('command', '?')}"
    )


@contextlib.contextmanager
def hold(run_dir: Path) -> Iterator[None]:
    """Hold ``run_dir``'s lock for the duration; raise ``RunLocked`` naming the holder if another
    process holds it, ``UnsafePath`` if ``run.lock`` is a symlink or not a regular file."""
    run_dir = Path(run_dir)
    path = inside(run_dir, run_dir / LOCK_NAME)
    fd = open_no_follow(path, os.O_RDWR | os.O_CREAT)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise UnsafePath(f"{path} is not a regular file; remove it")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunLocked(
                f"{run_dir} is being written by another xentbench run ({_holder_text(fd)}); "
                "wait for it to finish, or give another --out"
            ) from None
        holder = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "command": shlex.join(["xentbench", *sys.argv[1:]]),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode(), 0)
        yield
        os.ftruncate(fd, 0)
    finally:
        os.close(fd)  # releases the lock
