"""Where a run's time went (run.json's ``time_breakdown``), and the plots drawn beside the rest.

The plots are most of a large report's own time; where there are enough rows to pay for a
process's start they are drawn in two processes of their own (accuracy, timing) while this one
builds the tables and findings (``PlotJobs``).
"""

from __future__ import annotations

import multiprocessing
import time
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path

import pandas as pd

from xentbench.suites.report import plots
from xentbench.suites.report.format import format_seconds
from xentbench.suites.report.render import Section, Table
from xentbench.suites.store.run_json import TIME_PHASES, time_breakdown

# Rows from which the plots go to processes of their own: a fresh interpreter importing
# matplotlib and pandas costs a few seconds, which a small report's plots do not.
PARALLEL_FROM_ROWS = 2000
_LABELS = {
    "wall_s": "wall",
    "interpreter_s": "interpreter",
    "import_s": "import",
    "plan_s": "plan",
    "reference_s": "reference",
    "compile_s": "compile",
    "evaluate_s": "calls and judging / samples",
    "write_s": "writing",
    "plots_s": "plots",
    "tables_s": "tables",
}


def run_time_section(infos: list[tuple[Path, dict]]) -> Section | None:
    """A short table of each run's seconds per phase and backend (None where none recorded)."""
    frames = []
    for run_dir, info in infos:
        breakdown = time_breakdown(info)
        if not breakdown:
            continue
        frame = pd.DataFrame.from_dict(breakdown, orient="index")
        frame.insert(0, "run", info.get("run_id", run_dir.name))
        frames.append(frame.rename_axis("suite and backend").reset_index())
    if not frames:
        return None
    table = pd.concat(frames, ignore_index=True)
    if table["run"].nunique() == 1:
        table = table.drop(columns="run")
    phases = [phase for phase in TIME_PHASES if phase in table]
    table = table[[c for c in table if c not in TIME_PHASES] + phases]
    for phase in phases:
        table[phase] = table[phase].map(_seconds)
    table = table.rename(columns=_LABELS)
    text = (
        "Seconds per phase, as the run recorded them (run.json's `time_breakdown`): wall time "
        "of each suite and backend (accuracy backends run two at a time), worker interpreters "
        "starting, the framework's import, planning, the exact reference, compilation on first "
        "calls, the calls with their judging (timing: the samples), writing rows; the report's "
        "own when it was built into the run directory."
    )
    return Section("Where the time went", [text, Table(table)])


def _timed(draw, *args) -> tuple[list[Path], float]:
    start = time.perf_counter()
    return draw(*args), time.perf_counter() - start


class PlotJobs:
    """The report's plots, drawn in processes of their own for large reports (else here,
    when asked for); ``seconds`` is the wall time they took (the longer process's, when
    drawn beside the rest)."""

    def __init__(self, accuracy: pd.DataFrame, timing: pd.DataFrame, out_dir: Path, bandwidth):
        self._jobs = {
            "accuracy": (plots.accuracy_plots, accuracy, out_dir),
            "timing": (plots.timing_plots, timing, out_dir, bandwidth),
        }
        self._futures: dict[str, Future] = {}
        self._pool = None
        self.seconds = 0.0
        self.waited = 0.0  # this process's time in ``result``: drawing, or waiting for them
        if len(accuracy) + len(timing) >= PARALLEL_FROM_ROWS:
            context = multiprocessing.get_context("spawn")  # no fork of a threaded process
            self._pool = ProcessPoolExecutor(max_workers=2, mp_context=context)
            self._futures = {
                name: self._pool.submit(_timed, *job) for name, job in self._jobs.items()
            }

    def result(self, name: str) -> list[Path]:
        """The paths of the ``accuracy`` or ``timing`` plots, drawn."""
        start = time.perf_counter()
        if name in self._futures:  # drawn beside the rest: the longest process counts
            paths, seconds = self._futures.pop(name).result()
            self.seconds = max(self.seconds, seconds)
        else:
            paths, seconds = _timed(*self._jobs[name])
            self.seconds += seconds
        self.waited += time.perf_counter() - start
        if not self._futures:
            self.close()
        return paths

    def close(self) -> None:
        """Stop the plot processes (after an error elsewhere, the plots not waited for)."""
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None


def _seconds(value: float) -> str:
    return "" if pd.isna(value) else "0" if value == 0 else format_seconds(value)
