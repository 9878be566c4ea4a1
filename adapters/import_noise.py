"""A framework's import-time log lines kept off the terminal of in-process commands.

TensorFlow (through Keras) prints absl's "All log messages before absl::InitializeLog()"
line and an INFO line about oneDNN from C++ when it is imported, whatever
``TF_CPP_MIN_LOG_LEVEL`` says; ``xentbench list`` and ``check`` import every backend in their
own process, so those lines landed between the command and its table. While a backend's
module is imported, file descriptor 2 is captured; absl/glog lines of INFO and WARNING
severity are dropped and everything else (errors, Python warnings, any other text) is written
back to standard error unchanged.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from collections.abc import Iterator

# absl/glog's prefix: severity letter, MMDD, time (``I0000 00:00:1796554575.864593 27941
# port.cc:153] ...``), plus absl's one-off notice that precedes its first line.
_LOG_LINE = re.compile(r"^(?:[IW]\d{4} \d\d:\d\d:\d\d|WARNING: All log messages before absl::)")


def kept(text: str) -> str:
    """``text`` without its absl/glog INFO and WARNING lines (line endings kept)."""
    lines = text.splitlines(keepends=True)
    return "".join(line for line in lines if not _LOG_LINE.match(line))


@contextlib.contextmanager
def quiet_import() -> Iterator[None]:
    """Capture file descriptor 2 for the block; write back what ``kept`` keeps of it."""
    with contextlib.ExitStack() as stack:
        try:
            sys.stderr.flush()
            saved = os.dup(2)
        except (OSError, ValueError):  # no usable descriptor 2: nothing to capture
            yield
            return
        stack.callback(os.close, saved)
        capture = stack.enter_context(tempfile.TemporaryFile())
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            with contextlib.suppress(ValueError, OSError):
                sys.stderr.flush()
            os.dup2(saved, 2)
            capture.seek(0)
            text = kept(capture.read().decode("utf-8", errors="replace"))
            if text:
                os.write(2, text.encode())
