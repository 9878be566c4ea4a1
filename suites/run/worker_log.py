"""A worker's own output goes to its backend's log in the run directory, not the terminal.

Frameworks write to the process's stderr from C++ (TensorFlow's oneDNN notice and absl lines,
ONNX Runtime's kernel errors on inputs that are meant to fail) and from Python (warnings,
logging); on a terminal they tear the progress display apart. The runner starts each worker
with its stdout and stderr on ``<run dir>/logs/<suite>-<backend>.log`` (file descriptors 1 and
2, so C++ output lands there too; ``<suite>-<backend>-part1of2.log`` for a split backend's
parts), appending, one header line per worker; a worker that crashes is reported with the tail
of what it wrote there.

The frameworks' own log levels cannot do this: the TensorFlow adapter sets
``TF_CPP_MIN_LOG_LEVEL=2`` before importing TensorFlow (warnings and INFO dropped, errors
kept), yet TensorFlow 2.21 still prints absl's "All log messages before absl::InitializeLog()"
line and its oneDNN notice whatever ``TF_CPP_MIN_LOG_LEVEL``, ``ABSL_MIN_LOG_LEVEL`` or
``GLOG_minloglevel`` say (tensorflow#100442), and ONNX Runtime logs a failing kernel at error
severity, the level one keeps. So the output itself is redirected; nothing that changes
numerics (``TF_ENABLE_ONEDNN_OPTS``) is touched.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from pathlib import Path

from xentbench.suites.store.safe_paths import inside, make_dirs, open_no_follow

LOG_DIR = "logs"
TAIL_LINES = 8
TAIL_BYTES = 64 * 1024  # a crashed worker's last words are in its last few kilobytes

_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")  # ONNX Runtime colours its error lines


def log_path(run_dir: str | Path, suite: str, backend: str, part: tuple[int, int] = (1, 1)) -> Path:
    """The log of one backend's workers for one suite (every round and restart appends); each
    part of a split backend (``run --split``) has its own, as the parts' workers run side by
    side and a crash report quotes the end of the log."""
    split = "-part{}of{}".format(*part) if part[1] > 1 else ""
    return Path(run_dir) / LOG_DIR / f"{suite}-{backend}{split}.log"


def prepare_log(
    run_dir: str | Path, suite: str, backend: str, part: tuple[int, int] = (1, 1)
) -> Path:
    """The log's path, its folder created; a symlink on the way (or the log itself a symlink)
    raises ``UnsafePath``: the runner checks every job's before it starts a worker."""
    path = log_path(run_dir, suite, backend, part)
    make_dirs(Path(run_dir), path.parent)
    return inside(Path(run_dir), path)


def open_log(path: Path, title: str) -> tuple[int, int]:
    """Open the prepared log ``path`` for appending (no symlink followed), write a header line
    naming this worker; return the file descriptor and the offset where its output starts."""
    fd = open_no_follow(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    now = dt.datetime.now().isoformat(timespec="seconds")
    os.write(fd, f"--- {now} {title}: worker started\n".encode())
    return fd, os.fstat(fd).st_size


def tail(path: Path, start: int, lines: int = TAIL_LINES) -> list[str]:
    """The last ``lines`` non-blank lines written to ``path`` from byte ``start`` on (one
    worker's output), without terminal colour codes; [] if there are none."""
    try:
        fd = open_no_follow(path, os.O_RDONLY)
    except OSError:
        return []
    with os.fdopen(fd, "rb") as handle:
        size = handle.seek(0, os.SEEK_END)
        handle.seek(max(start, size - TAIL_BYTES))
        text = handle.read().decode("utf-8", errors="replace")
    kept = [_ANSI_ESCAPE.sub("", line).rstrip() for line in text.splitlines()]
    return [line for line in kept if line.strip()][-lines:]
