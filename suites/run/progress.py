"""What a run shows while it works: one line of progress per backend and suite.

On a terminal, a live bar each (done/total, elapsed time, an estimate of the time left, the task
in hand). In CI (``CI`` set) or when stdout is not a terminal, a live display is either noise
or nothing, so plain lines take its place: one when a backend starts, one each time it passes
another tenth of its tasks or every ``PLAIN_EVERY_S`` seconds, and one at the end
("accuracy torch: 812/812 done in 3m12s"). Both take the same calls from the runner.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

PLAIN_EVERY_S = 30.0
PLAIN_STEPS = 10  # a plain line each time another tenth of a backend's tasks is done
LABEL_CHARS = 60  # the task in hand, as the bar shows it


def plain_wanted(environ: Mapping[str, str] | None = None, stdout: TextIO | None = None) -> bool:
    """Plain lines instead of live bars: in CI (``CI`` set, not to 0/false/no) or when stdout
    is not a terminal (piped, redirected to a file, captured)."""
    environ = os.environ if environ is None else environ
    stdout = sys.stdout if stdout is None else stdout
    in_ci = environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")
    return in_ci or stdout is None or not stdout.isatty()


def display_for(console: Console) -> BarDisplay | LineDisplay:
    """The display this process should show on ``console`` (``plain_wanted``)."""
    return LineDisplay(console) if plain_wanted() else BarDisplay(console)


def duration(seconds: float) -> str:
    """``seconds`` as a person reads it: 45s, 3m12s, 1h05m."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class BarDisplay:
    """Live rich bars, one per (run, suite, backend); notes print above them."""

    def __init__(self, console: Console):
        self.progress = Progress(
            TextColumn("{task.description}", style="bold", markup=False),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[current]}", style="dim", markup=False),
            console=console,
        )

    def __enter__(self) -> BarDisplay:
        self.progress.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.progress.stop()

    def bar(self, key: Any, name: str) -> int:
        """The bar of ``key``, new or reset: a timing run's rounds share one per backend."""
        for task in self.progress.tasks:
            if task.fields.get("key") == key:
                # ``reset`` replaces the fields, so the key is given again
                self.progress.reset(task.id, total=None, description=name, key=key, current="")
                return task.id
        return self.progress.add_task(name, total=None, key=key, current="")

    def plan(self, bar: int, total: int, done_before: int) -> None:
        self.progress.update(bar, total=total, completed=done_before)

    def working_on(self, bar: int, label: str) -> None:
        self.progress.update(bar, current=label[:LABEL_CHARS])

    def advance(self, bar: int) -> None:
        self.progress.advance(bar)

    def finish(self, bar: int) -> None:
        """The backend is done (finished, unavailable or given up on)."""
        task = next(task for task in self.progress.tasks if task.id == bar)
        self.progress.update(bar, total=task.total or 0, current="done")

    def note(self, text: str, style: str = "") -> None:
        """A line above the bars (a summary, a crash), printed as given (no markup)."""
        self.progress.console.print(Text(text, style=style), soft_wrap=True)


@dataclass
class _Count:
    """One backend's progress as the plain lines tell it."""

    name: str
    key: Any
    started: float  # its worker started: "so far" and "done in" include importing the framework
    planned: float = 0.0  # its first plan: the rate of tasks (for the time left) counts from here
    total: int | None = None
    done: int = 0
    done_before: int = 0  # stored by an earlier run: not part of this run's rate
    step: int = 0  # the last tenth a line was printed for
    last_line: float = 0.0


class LineDisplay:
    """Plain progress lines, for CI logs and pipes (``plain_wanted``)."""

    def __init__(self, console: Console, clock: Callable[[], float] = time.monotonic):
        self.console = console
        self.clock = clock
        self._counts: dict[int, _Count] = {}
        self._lock = threading.Lock()

    def __enter__(self) -> LineDisplay:
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None

    def bar(self, key: Any, name: str) -> int:
        with self._lock:
            bar = next((i for i, c in self._counts.items() if c.key == key), len(self._counts))
            self._counts[bar] = _Count(name, key, self.clock())
        return bar

    def plan(self, bar: int, total: int, done_before: int) -> None:
        """The first plan starts the count; a worker restarted after a crash plans again,
        which only confirms how many are done."""
        count = self._counts[bar]
        if count.total is not None:
            count.done = done_before
            return
        count.total, count.done, count.done_before = total, done_before, done_before
        count.planned = count.last_line = self.clock()
        count.step = done_before * PLAIN_STEPS // total if total else 0
        tasks = f"{total} task{'' if total == 1 else 's'}"
        stored = f" ({done_before} stored before)" if done_before else ""
        self.note(f"{count.name}: started, {tasks}{stored}")

    def working_on(self, bar: int, label: str) -> None:
        return None

    def advance(self, bar: int) -> None:
        count = self._counts[bar]
        count.done += 1
        if not count.total or count.done >= count.total:
            return  # ``finish`` says it
        now = self.clock()
        step = count.done * PLAIN_STEPS // count.total
        if step > count.step or now - count.last_line >= PLAIN_EVERY_S:
            count.step, count.last_line = step, now
            self.note(self._progress_line(count, now))

    def finish(self, bar: int) -> None:
        count = self._counts[bar]
        if count.total and count.done >= count.total:
            took = duration(self.clock() - count.started)
            self.note(f"{count.name}: {count.done}/{count.total} done in {took}")

    def note(self, text: str, style: str = "") -> None:
        self.console.print(text, style=style or None, markup=False, highlight=False, soft_wrap=True)

    @staticmethod
    def _progress_line(count: _Count, now: float) -> str:
        done_now = count.done - count.done_before
        rate_s = (now - count.planned) / done_now if done_now else None
        eta = f", about {duration(rate_s * (count.total - count.done))} left" if rate_s else ""
        share = 100 * count.done // count.total
        so_far = f"{duration(now - count.started)} so far"
        return f"{count.name}: {count.done}/{count.total} ({share}%), {so_far}{eta}"
