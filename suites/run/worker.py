"""The worker process: one backend, one suite; evaluates tasks and writes rows as it goes.

It runs in its own process (started by ``suites.run.runner``, possibly with another virtual
environment's interpreter) so a framework that crashes or hangs loses nothing but the task in
flight. It reads its ``WorkerJob`` pickled from stdin and reports to the parent through a pipe
inherited as a file descriptor: the plan, the start of each task (with the row template the
parent needs to record a crash), its end. Its stdout and stderr are the backend's log file
(``suites.run.worker_log``): what a framework prints never reaches the terminal.

It runs in its own session (a terminal's Ctrl-C reaches only the parent), dies with the parent
(``PR_SET_PDEATHSIG`` on Linux) and, asked to stop with SIGTERM, stores the rows it has
finished and exits without a row for the task in flight.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
import sys
import traceback
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from xentbench.adapters import registry
from xentbench.suites.catalog.selection import Selection, in_part
from xentbench.suites.run.phases import PhaseClock
from xentbench.suites.store.rows import RowWriter, stored_keys, stored_rows, stored_versions
from xentbench.suites.store.schema import KEYS


class Task(Protocol):
    key: tuple
    label: str
    template: dict[str, Any]

    def evaluate(self) -> dict[str, Any] | list[dict[str, Any]]: ...  # a hunt keeps several


@dataclass(frozen=True)
class WorkerJob:
    """What a worker is asked to do (picklable: sent to a spawned process)."""

    backend: str
    suite: str
    selection: Selection
    run_dir: str
    run_id: str
    host: str
    bandwidth_gbps: float = 0.0
    python: str = ""  # the interpreter to run it with (a backend's own environment); "" = ours
    # Keyword options of ``plan_timing`` (rounds, only_round, memory): timing jobs only.
    timing_options: dict[str, Any] = field(default_factory=dict)
    skip: frozenset = frozenset()  # keys this run already gave up on (crashed or timed out)
    hunt: Any = None  # suites.hunt.search.HuntSpec when suite == "hunt"
    # Environment variables set for the worker process (``xentbench verify``'s target).
    environment: dict[str, str] = field(default_factory=dict)
    # (I, N): this worker takes part I of its backend's tasks, N workers side by side
    # (``run --split``); drawn apart from ``--shard``'s parts (``in_part``'s salt).
    part: tuple[int, int] = (1, 1)

    @classmethod
    def in_run(
        cls,
        run_dir: Path,
        info: dict[str, Any],
        backend: str,
        suite: str,
        selection: Selection,
        **fields: Any,
    ) -> WorkerJob:
        """A job writing into ``run_dir``, whose ``run.json`` is ``info`` (``run_info.start``:
        run id, host, measured memory bandwidth); ``fields`` are the rest."""
        return cls(
            backend,
            suite,
            selection,
            str(run_dir),
            info["run_id"],
            info["host"],
            info.get("memory_bandwidth_gbps", 0.0),
            **fields,
        )

    @property
    def store_suite(self) -> str:
        """The results suite its rows belong to: a hunt writes accuracy rows."""
        return "accuracy" if self.suite == "hunt" else self.suite


class Stopped(BaseException):
    """The parent asked this worker to stop (SIGTERM): keep finished rows, then exit."""


def plan(job: WorkerJob, adapter, stored: dict[tuple, dict] | None = None) -> list[Task]:
    if job.suite == "hunt":
        from xentbench.suites.hunt.plan import plan_hunt

        return plan_hunt(adapter, job.selection, job.hunt, job.run_dir)
    if job.suite == "accuracy":
        from xentbench.suites.accuracy.suite import plan_accuracy

        return plan_accuracy(adapter, job.selection)
    from xentbench.suites.timing.suite import plan_timing

    options = {k: v for k, v in job.timing_options.items() if k != "in_process"}
    return plan_timing(
        adapter, job.selection, bandwidth_gbps=job.bandwidth_gbps, stored=stored, **options
    )


def _rounds(job: WorkerJob) -> list[WorkerJob]:
    """The jobs this worker runs one after the other: a timing job whose rounds share this
    process (``in_process``, the default profile's) as one job per round, round-major, so
    each round plans, skips and pools exactly as a round in a process of its own does;
    any other job as itself."""
    options = job.timing_options
    if job.suite != "timing" or not options.get("in_process") or options.get("only_round"):
        return [job]
    rounds = range(1, options.get("rounds", 1) + 1)
    return [replace(job, timing_options={**options, "only_round": r}) for r in rounds]


def _round_rows(job: WorkerJob) -> dict[tuple, dict] | None:
    """A timing round's view of the store: the rows the earlier rounds left (None otherwise)."""
    if job.suite != "timing" or job.timing_options.get("only_round") is None:
        return None
    return stored_rows(Path(job.run_dir), job.store_suite, job.backend)


def _done(job: WorkerJob, stored: dict[tuple, dict] | None) -> set[tuple]:
    """Keys this job skips: stored ones (resume), and those this run gave up on. In round r
    of a timing run, a measured key is done once its row pools r rounds; one that errored or
    is unsupported is done after its first round, and so is one stored without samples (an
    older run's: nothing to pool with)."""
    if stored is None:
        return stored_keys(Path(job.run_dir), job.store_suite, job.backend) | job.skip
    from xentbench.suites.timing.rounds import pooled_rounds

    this_round = job.timing_options["only_round"]
    # As ``stored_keys``: a key whose latest row records a harness error is retried.
    done = {
        key
        for key, row in stored.items()
        if not row.get("harness_error") and pooled_rounds(row) >= this_round
    }
    return done | job.skip


def provenance(job: WorkerJob, version: str) -> dict[str, Any]:
    return {"run_id": job.run_id, "host": job.host, "backend_version": version}


def work(job: WorkerJob, connection) -> None:
    """Entry point of the worker process."""
    # Frameworks warn about the unusual inputs the suites feed them on purpose; the rows record
    # what they do. Each distinct warning is shown once, on stderr: the runner points it at the
    # backend's log in the run directory (``worker_log``), away from the progress display.
    warnings.simplefilter("default")
    clock = PhaseClock()
    try:
        with clock.phase("import_s"):
            adapter = registry.load(job.backend)
            version = str(adapter.version())  # plain: the parent may not unpickle a framework's
    except registry.BackendUnavailable as exc:
        connection.send(("unavailable", exc.summary))
        return
    refused = _version_conflict(job, version)
    if refused:
        connection.send(("refused", refused))
        return
    names = sorted(str(impl.name) for impl in adapter.implementations())
    writer = RowWriter(Path(job.run_dir), job.store_suite, job.backend)
    for one_round in _rounds(job):
        with clock.phase("plan_s"):
            stored = _round_rows(one_round)
            tasks = [t for t in plan(one_round, adapter, stored) if _mine(job, t.key)]
            done = _done(one_round, stored)
            todo = [task for task in tasks if task.key not in done]
        plan_info = {"total": len(tasks), "todo": len(todo), "version": version, "names": names}
        connection.send(("plan", {**plan_info, "phases": clock.seconds()}))
        try:
            _work_through(todo, writer, provenance(job, version), connection, clock)
        except Stopped:
            writer.flush()  # the finished rows; the task in flight leaves no row
            return
        with clock.phase("write_s"):
            writer.flush()  # the next round pools with this one's rows
    with clock.phase("write_s"):
        writer.close()
    connection.send(("end", clock.seconds()))


def _work_through(
    todo: list[Task], writer: RowWriter, extra: dict, connection, clock: PhaseClock
) -> None:
    for task in todo:
        connection.send(("start", (task.key, task.label, {**task.template, **extra})))
        try:
            with clock.task():
                row = task.evaluate()
        except Exception as exc:
            # A bug of the harness, not the implementation's error: no row (a re-run retries
            # the task), and the parent reports it and fails the run.
            connection.send(("harness_error", f"{task.label}: {_describe(exc)}"))
            continue
        rows = row if isinstance(row, list) else [row]  # a hunt task gives several rows
        clock.add_compile(rows)
        with clock.phase("write_s"):
            for one in rows:
                writer.write({**one, **extra})
        worst = max((one["verdict"] for one in rows), key=_severity, default="pass")
        connection.send(("done", worst))


# Where an accuracy key holds its case and dtype: what a ``--split`` part is drawn from.
_INPUT_COLUMNS = tuple(KEYS["accuracy"].index(column) for column in ("case_id", "dtype"))


def _mine(job: WorkerJob, key: tuple) -> bool:
    """Whether the task of ``key`` is this worker's: in the run's shard and the job's part.
    An accuracy task's part is drawn from its case and dtype alone, so every implementation of
    one input shape runs in one worker and a framework that lowers and compiles per shape (JAX
    eager) does so once, not once per worker."""
    drawn = tuple(key[i] for i in _INPUT_COLUMNS) if job.suite == "accuracy" else key
    return job.selection.in_shard(key) and in_part(drawn, job.part, salt="split")


def _version_conflict(job: WorkerJob, version: str) -> str | None:
    """Why this backend's stored rows cannot be mixed with this run's (another version)."""
    stored = stored_versions(Path(job.run_dir), job.store_suite, job.backend) - {version}
    if not stored:
        return None
    return (
        f"{job.run_dir} holds {job.suite} rows of {job.backend} {', '.join(sorted(stored))}, "
        f"this run has {version}; use a new --out, or --new to start this directory anew"
    )


def _severity(verdict: str) -> int:
    from xentbench.suites.judge.verdicts import SEVERITY

    return SEVERITY.get(verdict, -1)


def _describe(exc: BaseException) -> str:
    last = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    where = f" at {last[0].filename}:{last[0].lineno}" if last else ""
    return f"{type(exc).__name__}: {exc}{where}"[:2000]


def main() -> None:
    """Entry point of ``python -c "from xentbench.suites.run.worker import main; main()" FD``."""
    from multiprocessing.connection import Connection

    _die_with_parent(int(sys.argv[2]) if len(sys.argv) > 2 else 0)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    signal.signal(signal.SIGTERM, _stop)
    job = pickle.load(sys.stdin.buffer)
    with contextlib.suppress(Stopped, BrokenPipeError):  # asked to stop, or the parent is gone
        work(job, Connection(int(sys.argv[1]), readable=False))


def _stop(signum, frame) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # once: the cleanup must not be interrupted
    raise Stopped


def _die_with_parent(parent_pid: int) -> None:
    """Ask Linux to SIGKILL this process when its parent dies (a ``kill -9``'d runner must
    not leave workers writing into a directory a resumed run now owns)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if parent_pid and os.getppid() != parent_pid:
        try:
            os.kill(parent_pid, 0)
        except ProcessLookupError:  # the parent died before the request took effect
            os._exit(1)
        except PermissionError:
            pass
