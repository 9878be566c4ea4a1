"""The runner: one worker process per backend, progress, crash and hang isolation, resume.

A worker that dies or stays silent past the task timeout is killed; the task it was running
becomes an ``error`` row marked ``harness_error`` (this run moves on; the next run into the
directory retries it) and a fresh worker carries on. Ctrl-C stops every worker within a second
or two (``stop_workers``): finished rows are kept, the tasks in flight leave no row. Workers
are fresh interpreters, this one or a backend environment's (``WorkerJob.python``), so one run
can drive backends installed in separate virtual environments. What a worker prints goes to
its backend's log in the run directory (``worker_log``), not the terminal; a crash report
quotes the log's last lines.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path

from rich.console import Console

from xentbench.suites.run import worker_log
from xentbench.suites.run.phases import add_seconds, interpreter_s
from xentbench.suites.run.progress import BarDisplay, LineDisplay, display_for
from xentbench.suites.run.schedule import round_of, rounds_apart
from xentbench.suites.run.threads import shared_core_caps
from xentbench.suites.run.worker import WorkerJob
from xentbench.suites.store.rows import RowWriter
from xentbench.suites.store.run_json import update_run_info

PLAN_TIMEOUT_S = 600.0  # importing a framework and planning can take a while on a busy machine
MAX_RESTARTS = 50
POLL_S = 0.2  # how often a waiting runner thread checks for Ctrl-C
STOP_GRACE_S = 1.0  # how long a stopping worker may take to store its finished rows

_stop = threading.Event()  # set on Ctrl-C: every runner thread winds down
_interrupted = threading.Event()  # SIGINT seen while ``run_all`` waits (``_ctrl_c_as_flag``)
_live: set[_Worker] = set()
_live_lock = threading.Lock()


@dataclass
class BackendOutcome:
    backend: str
    suite: str
    version: str = ""
    unavailable: str | None = None  # why it cannot run ("not installed: pip install ...")
    verdicts: dict[str, int] = field(default_factory=dict)
    crashes: list[str] = field(default_factory=list)
    harness_errors: list[str] = field(default_factory=list)
    refused: str | None = None  # the stored rows are of another backend version
    names: list[str] = field(default_factory=list)  # the implementations the plan covered
    planned: int = 0
    skipped: set = field(default_factory=set)  # keys given up on in this run (crash, timeout)
    round_: str = ""  # "2/5": one round of a timing run (``rounds_apart``)
    part: str = ""  # "1/2": one of the workers a backend's tasks are split over (``run --split``)
    run_dir: str = ""  # the run it served (``run --against`` runs two at once)
    run_label: str = ""  # the run's name in progress and summaries, where there are several
    phases: dict[str, float] = field(default_factory=dict)  # seconds (``suites.run.phases``)


class _Worker:
    """A worker process, the parent's end of its pipe, and the log its output goes to."""

    def __init__(self, job: WorkerJob, title: str):
        python = job.python or sys.executable
        env = {**os.environ, **job.environment}
        if python == sys.executable:  # as multiprocessing's spawn does: the same import path
            env["PYTHONPATH"] = os.pathsep.join(path for path in sys.path if path)
        read_fd, write_fd = os.pipe()
        command = [
            python,
            "-c",
            "from xentbench.suites.run.worker import main; main()",
            str(write_fd),
        ]
        command.append(str(os.getpid()))
        self.started = time.monotonic()
        self.log = worker_log.prepare_log(job.run_dir, job.suite, job.backend, job.part)
        log_fd, self.log_start = worker_log.open_log(self.log, title)
        # Its own session: a terminal's Ctrl-C goes to this process only, which stops workers.
        # Its stdout and stderr (file descriptors 1 and 2: C++ libraries' output too) go to
        # the log from its first instruction on, so even a failed start is written there.
        try:
            self.process = subprocess.Popen(
                command,
                stdin=subprocess.PIPE,
                stdout=log_fd,
                stderr=log_fd,
                pass_fds=(write_fd,),
                env=env,
                start_new_session=True,
            )
        finally:
            os.close(log_fd)
        with _live_lock:
            _live.add(self)
        os.close(write_fd)
        self.connection = Connection(read_fd, writable=False)
        try:
            self.process.stdin.write(pickle.dumps(job))
            self.process.stdin.close()
        except BrokenPipeError:  # it died at start; receive() reports that
            pass

    def receive(self, timeout_s: float):
        """The next message; ("died", None) if the pipe closed; None after timeout_s of silence;
        ("stopped", None) once Ctrl-C was pressed."""
        deadline = time.monotonic() + timeout_s
        while not _stop.is_set():
            if self.connection.poll(max(0.0, min(POLL_S, deadline - time.monotonic()))):
                try:
                    return self.connection.recv()
                except (EOFError, OSError):  # the worker's end closed: it exited
                    return ("stopped", None) if _stop.is_set() else ("died", None)
            if time.monotonic() >= deadline:
                return None
        return ("stopped", None)

    def stop(self) -> str:
        if _stop.is_set():  # Ctrl-C: let it store its finished rows (``stop_workers``) first
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=STOP_GRACE_S + 0.5)
        if self.process.poll() is None:
            self.process.kill()
        try:
            code = self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            code = None
        with _live_lock:
            _live.discard(self)
        self.connection.close()
        return f"exit code {code}" if code is None or code >= 0 else f"signal {-code}"

    def last_words(self) -> str:
        """The last lines this worker wrote to its log, indented, or that it wrote none."""
        lines = worker_log.tail(self.log, self.log_start)
        if not lines:
            return f"its log {self.log} holds no output from it"
        return f"last lines of {self.log}:\n" + "\n".join(f"    {line}" for line in lines)


def stop_workers() -> None:
    """Ctrl-C: every live worker is asked to store its finished rows and exit (SIGTERM), and
    killed if it has not within ``STOP_GRACE_S``; runner threads stop waiting on them."""
    _stop.set()
    with _live_lock:
        workers = list(_live)
    for worker in workers:
        if worker.process.poll() is None:
            worker.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_S
    for worker in workers:
        try:
            worker.process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            worker.process.kill()


Display = BarDisplay | LineDisplay


def run_backend(
    job: WorkerJob, display: Display, timeout_s: float, run_label: str = ""
) -> BackendOutcome:
    """Run one backend's suite to completion, restarting its worker after crashes or hangs."""
    part = "{}/{}".format(*job.part) if job.part[1] > 1 else ""
    outcome = BackendOutcome(
        job.backend,
        job.suite,
        round_=round_of(job),
        part=part,
        run_dir=job.run_dir,
        run_label=run_label,
    )
    name = _name(outcome)
    # One bar per backend (and part): the rounds of a timing run reuse the first round's, reset.
    bar = display.bar((job.run_dir, job.suite, job.backend, part), name)
    for _ in range(MAX_RESTARTS):
        if _stop.is_set():
            break
        worker = _Worker(dataclasses.replace(job, skip=frozenset(outcome.skipped)), name)
        try:
            finished = _drive(worker, job, outcome, display, bar, timeout_s)
        finally:
            worker.stop()
        if finished:
            break
    display.finish(bar)
    return outcome


def _name(outcome: BackendOutcome) -> str:
    name = f"{outcome.run_label} {outcome.suite} {outcome.backend}".strip()
    name = f"{name} part {outcome.part}" if outcome.part else name
    return f"{name} round {outcome.round_}" if outcome.round_ else name


def _drive(worker, job, outcome, display, bar, timeout_s) -> bool:
    """Consume one worker's messages; True when it finished (or the backend is unavailable)."""
    in_flight, planned = None, False
    while True:
        wait_s = PLAN_TIMEOUT_S if in_flight is None else timeout_s
        message = worker.receive(wait_s)
        if message is not None and message[0] == "stopped":
            return True  # Ctrl-C: no row for the task in flight
        if message is None or message[0] == "died":
            _record_crash(job, outcome, in_flight, worker, display, wait_s, message is None)
            if in_flight is None:
                return True
            display.advance(bar)
            return False
        kind, payload = message
        if kind in ("unavailable", "refused"):
            setattr(outcome, kind, payload)
            return True
        if kind == "plan":
            planned = planned or add_seconds(outcome.phases, interpreter_s(worker.started, payload))
            outcome.version = payload["version"]
            outcome.names = payload.get("names", [])
            outcome.planned = payload["total"]
            done_before = payload["total"] - payload["todo"]
            display.plan(bar, payload["total"], max(done_before, 0))
        elif kind == "start":
            in_flight = payload
            display.working_on(bar, payload[1])
        elif kind == "done":
            outcome.verdicts[payload] = outcome.verdicts.get(payload, 0) + 1
            in_flight = None
            display.advance(bar)
        elif kind == "harness_error":
            outcome.harness_errors.append(payload)
            in_flight = None
            display.advance(bar)
            display.note(f"harness error in {_name(outcome)}: {payload}", style="red")
        elif kind == "end":
            add_seconds(outcome.phases, payload or {})
            return True


def _record_crash(job, outcome, in_flight, worker, display, wait_s, timed_out: bool) -> None:
    """A worker that died or stayed silent ``wait_s``: reported with the last lines of its log
    and recorded (run.json's crashes); the task in flight, if any, becomes an ``error`` row."""
    status = worker.stop()
    if _stop.is_set():
        return
    reason = f"timed out after {wait_s:g} s" if timed_out else f"worker process died ({status})"
    label = in_flight[1] if in_flight else "worker failed before starting a task"
    log = worker.log.relative_to(job.run_dir)
    outcome.crashes.append(f"{label}: {reason} (log: {log})")
    display.note(f"{_name(outcome)}: {label}: {reason}; {worker.last_words()}", style="red")
    if in_flight is None:
        return
    key, _, template = in_flight
    outcome.skipped.add(key)
    outcome.verdicts["error"] = outcome.verdicts.get("error", 0) + 1
    if template.get("verdict") == "ok":  # a later timing round: the stored earlier rounds stay
        return
    writer = RowWriter(Path(job.run_dir), job.store_suite, job.backend)
    row = {**template, "verdict": "error", "message": reason, "harness_error": reason}
    writer.write(row)
    writer.flush()


def run_all(
    jobs: list[WorkerJob], timeout_s: float, console: Console, parallel: int = 1
) -> list[BackendOutcome]:
    """Run the jobs (backend x suite), ``parallel`` workers at a time, showing their
    progress (``progress.display_for``: bars on a terminal, plain lines in CI or a pipe).

    Timing jobs run alone (after the others): a concurrent worker would steal the cores
    being measured; each round of them in its own worker (``rounds_apart``). Workers that run
    side by side are capped to their share of the cores (``suites.run.threads``). On Ctrl-C the
    workers are stopped, every finished row is merged, and ``KeyboardInterrupt`` propagates.
    """
    _stop.clear()
    for job in jobs:  # a symlink planted where a log goes: refused before any worker starts
        worker_log.prepare_log(job.run_dir, job.suite, job.backend, job.part)
    caps = shared_core_caps(parallel)  # side by side, each worker gets its share of the cores
    concurrent = [
        dataclasses.replace(job, environment={**caps, **job.environment})
        for job in jobs
        if job.suite != "timing"
    ]
    alone = rounds_apart([job for job in jobs if job.suite == "timing"])
    for run_dir in {job.run_dir for job in concurrent} if caps else ():
        update_run_info(run_dir, {"concurrent_worker_threads": caps})  # what the rows ran with
    several = len({job.run_dir for job in jobs}) > 1
    with _ctrl_c_as_flag(), display_for(console) as display:

        def one(job: WorkerJob) -> BackendOutcome:
            started = time.monotonic()
            _record_load(job, "before")
            label = Path(job.run_dir).name if several else ""
            try:
                outcome = run_backend(job, display, timeout_s, label)
            except Exception as exc:  # a harness bug: fail this backend, let the others finish
                outcome = BackendOutcome(job.backend, job.suite, run_dir=job.run_dir)
                outcome.harness_errors.append(f"runner: {type(exc).__name__}: {exc}")
            RowWriter(Path(job.run_dir), job.store_suite, job.backend).close()
            _record_load(job, "after")
            outcome.verdicts = dict(sorted(outcome.verdicts.items()))
            add_seconds(outcome.phases, {"wall_s": time.monotonic() - started})
            display.note(_summary(outcome, time.monotonic() - started))
            return outcome

        pool = ThreadPoolExecutor(max_workers=max(1, parallel))
        try:
            outcomes = _wait_all([pool.submit(one, job) for job in concurrent])
            for job in alone:  # in a pool thread too, so that Ctrl-C reaches this thread
                outcomes += _wait_all([pool.submit(one, job)])
        except KeyboardInterrupt:
            stop_workers()
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        pool.shutdown()
    return outcomes


@contextlib.contextmanager
def _ctrl_c_as_flag() -> Iterator[None]:
    """While the runner waits, SIGINT only sets ``_interrupted``, and ``_wait_all`` raises
    KeyboardInterrupt between two waits. Raised wherever the signal lands, it once landed
    inside concurrent.futures' locking (a future's lock acquired, the ``with`` that releases
    it not yet entered): the lock stayed held, the worker thread could never store its
    result, and the shutdown after Ctrl-C waited forever (seen once under a loaded test run).
    Only the main thread may set a handler; elsewhere SIGINT keeps its own."""
    _interrupted.clear()
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, lambda signum, frame: _interrupted.set())
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _wait_all(futures) -> list[BackendOutcome]:
    """The futures' results in order, checking for Ctrl-C every ``POLL_S``."""
    while not all(future.done() for future in futures):
        if _interrupted.is_set():
            raise KeyboardInterrupt
        time.sleep(POLL_S)
    if _interrupted.is_set():
        raise KeyboardInterrupt
    return [future.result() for future in futures]


def _record_load(job: WorkerJob, when: str) -> None:
    """Timing only: the 1/5/15-minute load averages in run.json, before and after the backend."""
    if job.suite == "timing" and hasattr(os, "getloadavg"):
        load = [round(value, 2) for value in os.getloadavg()]
        name = f"{job.backend} round {round_of(job)}" if round_of(job) else job.backend
        update_run_info(Path(job.run_dir), {"timing_load": {f"{name} {when}": load}})


def _summary(outcome: BackendOutcome, elapsed_s: float) -> str:
    name = _name(outcome)
    if outcome.unavailable:
        return f"{name}: {outcome.unavailable}"
    if outcome.refused:
        return f"{name}: refused: {outcome.refused}"
    counts = ", ".join(f"{count} {verdict}" for verdict, count in outcome.verdicts.items())
    crashes = f"; {len(outcome.crashes)} crash/timeout rows" if outcome.crashes else ""
    if outcome.harness_errors:
        crashes += f"; {len(outcome.harness_errors)} HARNESS ERRORS (no rows written)"
    return f"{name} {outcome.version}: {counts or 'nothing to do'} in {elapsed_s:.0f} s{crashes}"
