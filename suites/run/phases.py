"""Where a worker's time goes: its phases, measured as it runs and sent to the runner.

The phases (``suites.store.run_json.TIME_PHASES``): the framework's import, planning, the exact
reference (``reference.cache``, computed or read), compilation (the timing rows' ``compile_s``),
the rest of each task (the framework's calls and the judging, or the timing samples) and
writing rows. The runner adds the interpreter's start and the wall time (``runner``).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

from xentbench.reference.cache import seconds_spent


class PhaseClock:
    """Seconds per phase of one worker process."""

    def __init__(self) -> None:
        self._seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Count the block's wall time towards ``name``."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self._add(name, time.perf_counter() - start)

    @contextlib.contextmanager
    def task(self) -> Iterator[None]:
        """Count one task: its reference time apart, the rest as ``evaluate_s``."""
        start, reference = time.perf_counter(), seconds_spent()
        try:
            yield
        finally:
            in_reference = seconds_spent() - reference
            self._add("reference_s", in_reference)
            self._add("evaluate_s", time.perf_counter() - start - in_reference)

    def add_compile(self, rows: list[dict[str, Any]]) -> None:
        """Move the compile time timing rows report (first call minus the steady state) from
        ``evaluate_s`` to ``compile_s``; only a row's first round compiles."""
        compiled = sum(row.get("compile_s") or 0.0 for row in rows if (row.get("rounds") or 0) == 1)
        if compiled:
            self._add("compile_s", compiled)
            self._add("evaluate_s", -compiled)

    def seconds(self) -> dict[str, float]:
        """The phases so far, in seconds (never negative)."""
        return {name: max(0.0, round(value, 3)) for name, value in self._seconds.items()}

    def _add(self, name: str, seconds: float) -> None:
        self._seconds[name] = self._seconds.get(name, 0.0) + seconds


def interpreter_s(started: float, plan: dict[str, Any]) -> dict[str, float]:
    """The interpreter's start of a worker started at ``started`` (``time.monotonic``) whose
    first plan message is ``plan``: the time to that message less its import and planning."""
    in_worker = sum(plan.get("phases", {}).values())
    return {"interpreter_s": max(0.0, time.monotonic() - started - in_worker)}


def add_seconds(total: dict[str, float], seconds: dict[str, float]) -> bool:
    """Add ``seconds`` into ``total``, phase by phase; True (it was added)."""
    for name, value in seconds.items():
        total[name] = round(total.get(name, 0.0) + value, 3)
    return True
