"""The worker process: one backend, one suite; evaluates tasks and writes rows as it goes.

It runs in its own process (started by ``suites.run.runner``, possibly with another virtual
environment's interpreter) so a framework that crashes or hangs loses nothing but the task in
flight. It reads its ``WorkerJob`` pickled from stdin and reports to the parent through a pipe
inherited as a file descriptor: the plan, the start of each task (with the row template the
parent needs to record a crash), its end.
"""

from __future__ import annotations

import pickle
import sys
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from adapters import registry
from suites.catalog.selection import Selection
from suites.store import RowWriter, stored_keys


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
    hunt: Any = None  # suites.hunt.search.HuntSpec when suite == "hunt"

    @property
    def store_suite(self) -> str:
        """The results suite its rows belong to: a hunt writes accuracy rows."""
        return "accuracy" if self.suite == "hunt" else self.suite


def plan(job: WorkerJob, adapter) -> list[Task]:
    if job.suite == "hunt":
        from suites.hunt.task import plan_hunt

        return plan_hunt(adapter, job.selection, job.hunt, job.run_dir)
    if job.suite == "accuracy":
        from suites.accuracy import plan_accuracy

        return plan_accuracy(adapter, job.selection)
    from suites.timing.suite import plan_timing

    return plan_timing(adapter, job.selection, bandwidth_gbps=job.bandwidth_gbps)


def provenance(job: WorkerJob, version: str) -> dict[str, Any]:
    return {"run_id": job.run_id, "host": job.host, "backend_version": version}


def work(job: WorkerJob, connection) -> None:
    """Entry point of the worker process."""
    # Frameworks warn about the unusual inputs the suites feed them on purpose; the rows record
    # what they do, and the warnings would only garble the progress display.
    warnings.simplefilter("ignore")
    try:
        adapter = registry.load(job.backend)
    except registry.BackendUnavailable as exc:
        connection.send(("unavailable", str(exc)))
        return
    version = str(adapter.version())  # plain: the parent may not have the framework to unpickle
    tasks = plan(job, adapter)
    done = stored_keys(Path(job.run_dir), job.store_suite, job.backend)
    todo = [task for task in tasks if task.key not in done]
    connection.send(("plan", {"total": len(tasks), "todo": len(todo), "version": version}))
    writer = RowWriter(Path(job.run_dir), job.store_suite, job.backend)
    extra = provenance(job, version)
    for task in todo:
        connection.send(("start", (task.key, task.label, {**task.template, **extra})))
        try:
            row = task.evaluate()
        except Exception as exc:
            # A bug of the harness, not the implementation's error: no row (a re-run retries
            # the task), and the parent reports it and fails the run.
            connection.send(("harness_error", f"{task.label}: {_describe(exc)}"))
            continue
        rows = row if isinstance(row, list) else [row]
        for one in rows:
            writer.write({**one, **extra})
        worst = max((one["verdict"] for one in rows), key=_severity, default="pass")
        connection.send(("done", worst))
    writer.close()
    connection.send(("end", None))


def _severity(verdict: str) -> int:
    from suites.judge.verdicts import SEVERITY

    return SEVERITY.get(verdict, -1)


def _describe(exc: BaseException) -> str:
    last = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    where = f" at {last[0].filename}:{last[0].lineno}" if last else ""
    return f"{type(exc).__name__}: {exc}{where}"[:2000]


def main() -> None:
    """Entry point of ``python -c "from suites.run.worker import main; main()" FD``."""
    from multiprocessing.connection import Connection

    job = pickle.load(sys.stdin.buffer)
    work(job, Connection(int(sys.argv[1]), readable=False))
