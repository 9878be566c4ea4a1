"""Which worker jobs run when: a timing run's rounds, each in a fresh worker, spread apart."""

from __future__ import annotations

import dataclasses

from xentbench.suites.run.worker import WorkerJob


def round_of(job: WorkerJob) -> str:
    """The round a one-round timing job runs, as "2/5"; "" for any other job."""
    only = job.timing_options.get("only_round")
    return f"{only}/{job.timing_options['rounds']}" if only else ""


def rounds_apart(jobs: list[WorkerJob]) -> list[WorkerJob]:
    """Timing jobs of K rounds as K jobs each, round-major: every round of every backend in a
    fresh worker process, the backends taking turns.

    A process's state (where its buffers landed, its allocator's and the machine's caches'
    state) shifts an op's time as a whole (+9% and +11% on average for TensorFlow and JAX
    between two runs here, while rounds in one process moved together), so rounds in one
    process share a bias their spread cannot show. Rounds in separate processes, spread over
    the run's whole time, put that shift into the spread that ``compare`` tests against (as
    pyperf spawns a process per sample run for the same reason).

    The jobs of two runs given one run after the other (``run --against``) take turns the
    same way: round r of the first run for every backend, then round r of the second. A
    change of the machine's background between two runs timed one after the other moves
    whole backends (2-thread frameworks by 10-23% here, while other processes took 0.05 of a
    core more: ``reports/bench/timing-rounds-apart``); rounds that take turns see the same
    machine, so ``compare`` tests the software, not the hour (0 of 550 false alarms against
    217: ``reports/bench/timing-interleaved-7-check``).

    A job whose rounds share a process (``in_process``, the default profile) stays one job.
    """
    together = [job for job in jobs if job.timing_options.get("in_process")]
    jobs = [job for job in jobs if not job.timing_options.get("in_process")]
    if jobs and all(job.timing_options.get("only_round") for job in jobs):
        return together + jobs  # already one job per round, in the caller's order
    most = max((job.timing_options.get("rounds", 1) for job in jobs), default=1)
    return together + [
        dataclasses.replace(job, timing_options={**job.timing_options, "only_round": round_})
        for round_ in range(1, most + 1)
        for job in jobs
        if round_ <= job.timing_options.get("rounds", 1)
    ]
