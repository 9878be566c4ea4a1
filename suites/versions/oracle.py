"""The tests a bisection asks of one release, each run by that release's own interpreter.

A finding's test runs the finding's catalog cases through the backend's adapter in a worker
started with the environment's interpreter (as ``run --python B=PYTHON`` does), into a run
directory of its own, and calls the release bad when the same finding (same id: same
implementation, quantity, failure mode and cause, judged by the exact reference) is found
in its rows. The check-like test runs ``xentbench check`` with the environment's interpreter
and calls the release bad when the implementation's verdict is at or beyond a level.
"""

from __future__ import annotations

import json
import math
import subprocess
from collections.abc import Callable
from pathlib import Path

from xentbench.suites.catalog.selection import Selection
from xentbench.suites.findings.group import Finding, run_seeds
from xentbench.suites.findings.tables import findings_of_rows
from xentbench.suites.judge.verdicts import SEVERITY, at_or_beyond
from xentbench.suites.run import run_info
from xentbench.suites.run.lock import hold
from xentbench.suites.run.runner import run_all
from xentbench.suites.run.worker import WorkerJob
from xentbench.suites.store.rows import load
from xentbench.suites.versions.envs import Env
from xentbench.suites.versions.search import Trial

CHECK_TIMEOUT_S = 1800.0


def literal(name: str) -> str:
    """A glob matching exactly ``name`` (implementation names may hold ``[``)."""
    return "".join(f"[{ch}]" if ch in "*?[" else ch for ch in name)


def finding_selection(finding: Finding, case_ids: list[str], seed: int) -> Selection:
    """What reproduces a finding: its implementation on its cases, dtypes, modes and devices."""
    return Selection(
        ops=(finding.op,),
        dtypes=tuple(finding.dtypes),
        devices=tuple(finding.devices),
        modes=tuple(finding.modes),
        implementations=(literal(finding.implementation),),
        cases=tuple(literal(case) for case in case_ids),
        seed=seed,
    )


def run_accuracy(
    runs: dict[Path, Env],
    backend: str,
    selection: Selection,
    console,
    *,
    timeout_s: float,
    jobs: int,
) -> list:
    """The accuracy suite of ``selection`` for ``backend`` in each environment, each into its
    own run directory (resumed where it has rows), ``jobs`` workers at a time."""
    from contextlib import ExitStack

    with ExitStack() as locks:
        work = []
        for run_dir, env in runs.items():
            run_dir.mkdir(parents=True, exist_ok=True)
            locks.enter_context(hold(run_dir))
            info = run_info.start(run_dir, selection.seed, timing=False)
            work.append(
                WorkerJob.in_run(
                    run_dir, info, backend, "accuracy", selection, python=str(env.python)
                )
            )
        outcomes = run_all(work, timeout_s, console, jobs)
        for run_dir in runs:
            run_info.finish(run_dir, outcomes)
    return outcomes


def finding_oracle(
    finding: Finding,
    selection: Selection,
    env_of: Callable[[str], Env],
    run_dir_of: Callable[[str], Path],
    console,
    timeout_s: float,
) -> Callable[[str], Trial]:
    """The test of one release for ``finding``: bad when its rows show the same finding."""

    def test(version: str) -> Trial:
        env = env_of(version)
        if not env.ready:
            return Trial(version, "skip", f"not installable: {env.failure}")
        run_dir = run_dir_of(version)
        outcomes = run_accuracy(
            {run_dir: env}, finding.backend, selection, console, timeout_s=timeout_s, jobs=1
        )
        unusable = [o.unavailable or o.refused for o in outcomes if o.unavailable or o.refused]
        if unusable:
            return Trial(version, "skip", f"backend unusable: {unusable[0]}")
        rows = load([run_dir], "accuracy")
        mine = rows[rows["implementation"] == finding.implementation] if len(rows) else rows
        if mine.empty:
            return Trial(version, "skip", f"no {finding.implementation} in this release")
        found = findings_of_rows(mine, run_seeds([run_dir]), careful=False).findings
        same = next((f for f in found if f.id == finding.id), None)
        counts = mine[mine["quantity"] == finding.quantity]["verdict"].value_counts().to_dict()
        tally = ", ".join(f"{n} {verdict}" for verdict, n in sorted(counts.items()))
        if same is None:
            return Trial(version, "good", f"{tally}; {run_dir}")
        return Trial(
            version, "bad", f"{same.evaluations} x {finding.failure_mode}, {tally}; {run_dir}"
        )

    return test


def check_oracle(
    argv: list[str],
    implementation: str,
    level: str,
    env_of: Callable[[str], Env],
    max_rel_error: float | None = None,
) -> Callable[[str], Trial]:
    """The test of one release by ``xentbench check ARGV --format json`` in its environment:
    bad when ``implementation``'s worst verdict is at or beyond ``level``, or (``max_rel_error``)
    when its largest relative error from the exact result exceeds that: a stricter line than
    the budget's, for a fix that made a result already within budget accurate."""
    failing = set(at_or_beyond(level))

    def test(version: str) -> Trial:
        env = env_of(version)
        if not env.ready:
            return Trial(version, "skip", f"not installable: {env.failure}")
        command = [str(env.python), "-m", "xentbench.suites.cli", "check", *argv]
        try:
            done = subprocess.run(
                [*command, "--format", "json"],
                capture_output=True,
                text=True,
                timeout=CHECK_TIMEOUT_S,
            )
        except subprocess.TimeoutExpired:
            return Trial(version, "skip", f"check timed out after {CHECK_TIMEOUT_S:g} s")
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            return Trial(version, "skip", f"check exited {done.returncode}: {last[:200]}")
        records = [r for r in json.loads(done.stdout) if r.get("implementation") == implementation]
        judged = [r for r in records if r["verdict"] in SEVERITY]
        if not judged:
            return Trial(version, "skip", f"no verdict of {implementation} in this release")
        worst = max(judged, key=lambda r: SEVERITY[r["verdict"]])
        errors = [_number(r.get("max_rel_error")) for r in judged]
        relative = math.nan if any(map(math.isnan, errors)) else max(errors)
        beyond = max_rel_error is not None and not relative <= max_rel_error  # NaN: beyond
        verdict = "bad" if worst["verdict"] in failing or beyond else "good"
        return Trial(version, verdict, f"{_describe(worst)}, max relative error {relative:.3g}")

    return test


def _number(value) -> float:
    return float(value) if isinstance(value, int | float) else 0.0


def _describe(record: dict) -> str:
    ratio = record.get("worst_ratio")
    got, expected = record.get("got"), record.get("expected")
    shown = f"{record['quantity']} {record['verdict']}"
    if isinstance(ratio, int | float):
        shown += f", error/allowance {ratio:.3g}"
    if got is not None and expected is not None:
        shown += f", got {got} expected {expected}"
    return shown
