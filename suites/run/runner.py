"""The runner: one worker process per backend, progress, crash and hang isolation, resume.

A worker that dies or stays silent past the task timeout is killed; the task it was running
becomes an ``error`` row (so a resumed worker skips it) and a fresh worker carries on. Workers
are fresh interpreters, this one or a backend environment's (``WorkerJob.python``), so one run
can drive backends installed in separate virtual environments.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from suites.run.worker import WorkerJob
from suites.store import RowWriter

PLAN_TIMEOUT_S = 600.0  # importing a framework and planning can take a while on a busy machine
MAX_RESTARTS = 50


@dataclass
class BackendOutcome:
    backend: str
    suite: str
    version: str = ""
    unavailable: str | None = None
    verdicts: dict[str, int] = field(default_factory=dict)
    crashes: list[str] = field(default_factory=list)
    harness_errors: list[str] = field(default_factory=list)


class _Worker:
    """A worker process and the parent's end of its pipe."""

    def __init__(self, job: WorkerJob):
        python = job.python or sys.executable
        env = dict(os.environ)
        if python == sys.executable:  # as multiprocessing's spawn does: the same import path
            env["PYTHONPATH"] = os.pathsep.join(path for path in sys.path if path)
        read_fd, write_fd = os.pipe()
        command = [python, "-c", "from suites.run.worker import main; main()", str(write_fd)]
        self.process = subprocess.Popen(
            command, stdin=subprocess.PIPE, pass_fds=(write_fd,), env=env
        )
        os.close(write_fd)
        self.connection = Connection(read_fd, writable=False)
        try:
            self.process.stdin.write(pickle.dumps(job))
            self.process.stdin.close()
        except BrokenPipeError:  # it died at start; receive() reports that
            pass

    def receive(self, timeout_s: float):
        """The next message; ("died", None) if the pipe closed; None after timeout_s of silence."""
        if self.connection.poll(timeout_s):
            try:
                return self.connection.recv()
            except EOFError:  # the worker's end closed: it exited (it may not be reaped yet)
                return ("died", None)
        return None

    def stop(self) -> str:
        if self.process.poll() is None:
            self.process.kill()
        try:
            code = self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            code = None
        self.connection.close()
        return f"exit code {code}" if code is None or code >= 0 else f"signal {-code}"


def run_backend(job: WorkerJob, progress: Progress, timeout_s: float) -> BackendOutcome:
    """Run one backend's suite to completion, restarting its worker after crashes or hangs."""
    outcome = BackendOutcome(job.backend, job.suite)
    bar = progress.add_task(f"{job.suite} {job.backend}", total=None)
    for _ in range(MAX_RESTARTS):
        worker = _Worker(job)
        try:
            finished = _drive(worker, job, outcome, progress, bar, timeout_s)
        finally:
            worker.stop()
        if finished:
            break
    progress.update(bar, description=f"{job.suite} {job.backend} [done]")
    return outcome


def _drive(worker, job, outcome, progress, bar, timeout_s) -> bool:
    """Consume one worker's messages; True when it finished (or the backend is unavailable)."""
    in_flight = None
    while True:
        message = worker.receive(PLAN_TIMEOUT_S if in_flight is None else timeout_s)
        if message is None or message[0] == "died":
            _record_crash(job, outcome, in_flight, worker, timeout_s, timed_out=message is None)
            if in_flight is None:
                outcome.crashes.append("worker failed before starting a task")
                return True
            progress.advance(bar)
            return False
        kind, payload = message
        if kind == "unavailable":
            outcome.unavailable = payload
            progress.update(bar, total=0)
            return True
        if kind == "plan":
            outcome.version = payload["version"]
            done_before = payload["total"] - payload["todo"]
            progress.update(bar, total=payload["total"], completed=max(done_before, 0))
        elif kind == "start":
            in_flight = payload
            progress.update(bar, description=f"{job.suite} {job.backend}: {payload[1]}"[:70])
        elif kind == "done":
            outcome.verdicts[payload] = outcome.verdicts.get(payload, 0) + 1
            in_flight = None
            progress.advance(bar)
        elif kind == "harness_error":
            outcome.harness_errors.append(payload)
            in_flight = None
            progress.advance(bar)
            progress.console.log(f"[red]harness error[/] in {job.suite} {job.backend}: {payload}")
        elif kind == "end":
            return True


def _record_crash(job, outcome, in_flight, worker, timeout_s, *, timed_out: bool) -> None:
    status = worker.stop()
    if in_flight is None:
        return
    _, label, template = in_flight
    reason = f"timed out after {timeout_s:g} s" if timed_out else f"worker process died ({status})"
    outcome.crashes.append(f"{label}: {reason}")
    outcome.verdicts["error"] = outcome.verdicts.get("error", 0) + 1
    writer = RowWriter(Path(job.run_dir), job.store_suite, job.backend)
    writer.write({**template, "verdict": "error", "message": reason})
    writer.flush()


def run_all(
    jobs: list[WorkerJob], timeout_s: float, console: Console, parallel: int = 1
) -> list[BackendOutcome]:
    """Run the jobs (backend x suite), ``parallel`` workers at a time, with progress bars.

    Timing jobs run alone (after the others): a concurrent worker would steal the cores
    being measured.
    """
    columns = (
        TextColumn("{task.description}", style="bold"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    )
    concurrent = [job for job in jobs if job.suite != "timing"]
    alone = [job for job in jobs if job.suite == "timing"]
    with Progress(*columns, console=console, transient=False) as progress:

        def one(job: WorkerJob) -> BackendOutcome:
            started = time.monotonic()
            try:
                outcome = run_backend(job, progress, timeout_s)
            except Exception as exc:  # a harness bug: fail this backend, let the others finish
                outcome = BackendOutcome(job.backend, job.suite)
                outcome.harness_errors.append(f"runner: {type(exc).__name__}: {exc}")
            RowWriter(Path(job.run_dir), job.store_suite, job.backend).close()
            outcome.verdicts = dict(sorted(outcome.verdicts.items()))
            progress.console.log(_summary(outcome, time.monotonic() - started))
            return outcome

        with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
            outcomes = list(pool.map(one, concurrent))
        outcomes += [one(job) for job in alone]
    return outcomes


def _summary(outcome: BackendOutcome, elapsed_s: float) -> str:
    name = f"{outcome.suite} {outcome.backend}"
    if outcome.unavailable:
        return f"{name}: unavailable: {outcome.unavailable}"
    counts = ", ".join(f"{count} {verdict}" for verdict, count in outcome.verdicts.items())
    crashes = f"; {len(outcome.crashes)} crash/timeout rows" if outcome.crashes else ""
    if outcome.harness_errors:
        crashes += f"; {len(outcome.harness_errors)} HARNESS ERRORS (no rows written)"
    return f"{name} {outcome.version}: {counts or 'nothing to do'} in {elapsed_s:.0f} s{crashes}"
