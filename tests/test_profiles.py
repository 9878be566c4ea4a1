"""Timing profiles (``run --profile``), the per-phase time breakdown in run.json, and the
report's lines for both."""

from __future__ import annotations

import json
import textwrap
import time

import pytest
from plugin_helpers import register_plugins

from xentbench.suites.catalog.selection import DEFAULT_SHAPES
from xentbench.suites.cli import main
from xentbench.suites.report import run_time
from xentbench.suites.report.build import build_report
from xentbench.suites.run import run_info
from xentbench.suites.run.phases import PhaseClock
from xentbench.suites.run.runner import BackendOutcome
from xentbench.suites.run.schedule import rounds_apart
from xentbench.suites.run.worker import WorkerJob, _rounds
from xentbench.suites.store.rows import load
from xentbench.suites.store.run_json import TIME_PHASES, read_run_info, time_breakdown
from xentbench.suites.timing.profiles import DEFAULT_PROFILE_SHAPES, PROFILES, profile_named
from xentbench.suites.timing.rounds import AB_DEFAULT_ROUNDS, DEFAULT_ROUNDS

# ---------------------------------------------------------------- choosing a profile


@pytest.fixture
def captured_jobs(monkeypatch):
    """``run`` up to its workers: the jobs it would start, none started."""
    from xentbench.suites.run import runner

    jobs = []

    def run_all(given, timeout_s, console, parallel=1):
        jobs.extend(given)
        return []

    monkeypatch.setattr(runner, "run_all", run_all)
    return jobs


def _timing_jobs(jobs):
    return [job for job in jobs if job.suite == "timing"]


RUN = ["run", "--suite", "timing", "--backend", "numpy", "--op", "softmax"]


def test_the_default_profile_times_its_own_grid_in_one_worker_per_backend(tmp_path, captured_jobs):
    assert main([*RUN, "--out", str(tmp_path / "run")]) == 0
    (job,) = _timing_jobs(captured_jobs)
    assert job.timing_options["rounds"] == 1 and job.timing_options["in_process"] is True
    assert job.timing_options["overhead_window_s"] == 0.0
    assert job.selection.shapes == DEFAULT_PROFILE_SHAPES == ((1, 1000), (256, 32000), (8, 256000))
    info = read_run_info(tmp_path / "run")
    assert info["profile"] == "default"
    assert info["timing_profile"]["rounds"] == 1
    assert info["timing_profile"]["rounds_in_process"] is True
    assert info["timing_profile"]["description"].startswith("default (1 round in one process")


def test_the_full_profile_keeps_the_grid_and_rounds_in_fresh_processes(tmp_path, captured_jobs):
    assert main([*RUN, "--profile", "full", "--out", str(tmp_path / "run")]) == 0
    (job,) = _timing_jobs(captured_jobs)
    assert job.timing_options["rounds"] == DEFAULT_ROUNDS == 5
    assert job.timing_options["in_process"] is False
    assert job.selection.shapes == DEFAULT_SHAPES and len(DEFAULT_SHAPES) == 5
    assert read_run_info(tmp_path / "run")["profile"] == "full"
    # Each round its own job (a fresh worker process), round-major.
    assert [j.timing_options["only_round"] for j in rounds_apart([job])] == [1, 2, 3, 4, 5]


def test_a_gate_pair_keeps_its_seven_rounds_in_fresh_processes(tmp_path, captured_jobs):
    a, b = tmp_path / "a", tmp_path / "b"
    assert main([*RUN, "--out", str(a), "--against", str(b)]) == 0
    jobs = _timing_jobs(captured_jobs)
    assert len(jobs) == 2
    for job in jobs:
        assert job.timing_options["rounds"] == AB_DEFAULT_ROUNDS == 7
        assert job.timing_options["in_process"] is False
        assert job.selection.shapes == DEFAULT_SHAPES
    assert read_run_info(a)["profile"] == read_run_info(b)["profile"] == "full"
    assert len(rounds_apart(jobs)) == 14


def test_shapes_and_rounds_given_override_the_profile(tmp_path, captured_jobs):
    argv = [*RUN, "--shapes", "4x5", "--repeat-runs", "3", "--out", str(tmp_path / "run")]
    assert main(argv) == 0
    (job,) = _timing_jobs(captured_jobs)
    assert job.selection.shapes == ((4, 5),) and job.timing_options["rounds"] == 3
    assert read_run_info(tmp_path / "run")["timing_profile"]["rounds"] == 3


def test_an_unknown_profile_exits_2_naming_the_valid_ones(capsys):
    with pytest.raises(SystemExit) as exit_:
        main([*RUN, "--profile", "quick"])
    assert exit_.value.code == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1
    assert "'quick'" in error and "'default'" in error and "'full'" in error
    with pytest.raises(ValueError, match="unknown profile 'quick'; valid: default, full"):
        profile_named("quick")


def test_a_gate_pair_with_the_default_profile_exits_2(tmp_path, capsys, captured_jobs):
    argv = [*RUN, "--profile", "default", "--out", str(tmp_path / "a")]
    assert main([*argv, "--against", str(tmp_path / "b")]) == 2
    error = capsys.readouterr().err
    assert "--profile default" in error and "valid: --profile full" in error
    assert not captured_jobs


def test_a_directory_timed_with_one_profile_refuses_the_other(tmp_path, capsys, captured_jobs):
    out = tmp_path / "run"
    assert main([*RUN, "--out", str(out)]) == 0
    (out / "timing-numpy.parquet").write_bytes(b"")  # results are there now
    assert main([*RUN, "--profile", "full", "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert "profile 'default'" in error and "'full'" in error and "--new" in error


def test_in_process_rounds_are_one_job_and_the_worker_runs_them_round_by_round():
    together = {"rounds": 3, "in_process": True}
    job = WorkerJob("numpy", "timing", None, "/tmp/x", "r", "h", timing_options=together)
    assert rounds_apart([job]) == [job]
    assert [one.timing_options["only_round"] for one in _rounds(job)] == [1, 2, 3]
    apart = WorkerJob("numpy", "timing", None, "/tmp/x", "r", "h", timing_options={"rounds": 3})
    assert _rounds(apart) == [apart]
    assert _rounds(WorkerJob("numpy", "accuracy", None, "/tmp/x", "r", "h")) == [
        WorkerJob("numpy", "accuracy", None, "/tmp/x", "r", "h")
    ]


def test_every_profile_describes_itself():
    for name, profile in PROFILES.items():
        assert profile.name == name and profile.rounds >= 1 and profile.shapes
        assert profile.describe().startswith(name)
    assert PROFILES["full"].describe(7, False) == (
        "full (7 rounds each in a fresh process; the grid and rounds a change is gated with)"
    )


# ---------------------------------------------------------------- a real run


STEADY_MODULE = '''
import os
from pathlib import Path

import numpy as np
import scipy.special

from xentbench.adapters.base import Adapter, Implementation, PreparedCall


class SteadyAdapter(Adapter):
    """A softmax that notes the process of every prepared call."""

    name = "steady"

    def version(self):
        return "0.0"

    def implementations(self):
        return (Implementation(name="steady:softmax", op="softmax", dtypes=("float64",)),)

    def prepare(self, call, logits, labels):
        with Path(os.environ["STEADY_PIDS"]).open("a") as pids:
            pids.write(f"{os.getpid()}\\n")
        return PreparedCall(run=lambda: scipy.special.softmax(logits, axis=-1), to_numpy=np.asarray)
'''


def test_a_default_run_pools_its_rounds_in_one_worker_and_records_where_time_went(
    tmp_path, monkeypatch, capsys
):
    site = tmp_path / "site"
    site.mkdir()
    (site / "steady_backend.py").write_text(textwrap.dedent(STEADY_MODULE))
    register_plugins(site, monkeypatch, {"steady": "steady_backend:SteadyAdapter"}, "steady")
    pids = tmp_path / "pids"
    monkeypatch.setenv("STEADY_PIDS", str(pids))
    out = tmp_path / "run"
    argv = ["run", "--backend", "steady", "--dtype", "float64", "--mode", "eager"]
    argv += ["--shapes", "4x5", "--cases", "softmax/benign/normal-4x16", "--out", str(out)]
    argv += ["--repeat-runs", "2"]  # both rounds in the default profile's one worker
    assert main(argv) == 0
    said = "".join(capsys.readouterr())
    assert "time, accuracy (summed over backends): wall " in said
    assert "time, timing (summed over backends): wall " in said
    row = load([out], "timing").query("verdict == 'ok'").iloc[0]
    assert row["rounds"] == 2 and len(row["round_medians_s"]) == 2
    assert len(set(pids.read_text().split())) >= 2  # accuracy's worker and timing's one
    info = read_run_info(out)
    breakdown = time_breakdown(info)
    assert set(breakdown) == {"accuracy steady", "timing steady"}
    for entry, phases in breakdown.items():
        assert set(phases) <= set(TIME_PHASES), entry
        assert {"wall_s", "interpreter_s", "import_s", "plan_s", "evaluate_s"} <= set(phases)
        inside = sum(seconds for phase, seconds in phases.items() if phase != "wall_s")
        assert 0 < inside <= phases["wall_s"] * 1.05 + 0.05, (entry, phases)
    assert breakdown["accuracy steady"]["reference_s"] > 0
    assert info["timing_load"].keys() == {"steady before", "steady after"}  # one worker
    # The report states the profile and the breakdown, and records its own time.
    capsys.readouterr()
    assert main(["report", str(out)]) == 0
    assert "report built in" in capsys.readouterr().out
    report = (out / "report.md").read_text()
    assert "- Timing profile: default (2 rounds in one process per backend;" in report  # 2 given
    assert "## Where the time went" in report and "| timing steady" in report
    recorded = time_breakdown(read_run_info(out))["report"]
    assert set(recorded) == {"wall_s", "plots_s", "tables_s"}
    assert recorded["plots_s"] <= recorded["wall_s"]
    # Plots drawn in processes of their own (a large report's way) are the same files.
    monkeypatch.setattr(run_time, "PARALLEL_FROM_ROWS", 0)
    apart = build_report([out], tmp_path / "apart")
    pngs = sorted(name for name in apart if name.endswith(".png"))
    assert pngs and pngs == sorted(path.name for path in out.glob("*.png"))
    assert all(apart[name].stat().st_size > 1000 for name in pngs)


# ---------------------------------------------------------------- the breakdown's schema


def test_the_breakdown_keeps_known_non_negative_phases_only():
    info = {
        "time_breakdown": {
            "accuracy jax": {"wall_s": 10, "import_s": 2.5, "compile_s": -1, "made_up_s": 3},
            "timing jax": {"wall_s": "soon", "write_s": True},
            "broken": [1, 2],
            "report": {"plots_s": 1.5},
        }
    }
    assert time_breakdown(info) == {
        "accuracy jax": {"wall_s": 10.0, "import_s": 2.5},
        "report": {"plots_s": 1.5},
    }
    assert time_breakdown({}) == {} and time_breakdown({"time_breakdown": 3}) == {}


def test_the_runs_breakdown_sums_each_backends_jobs(tmp_path):
    outcomes = []
    for round_ in (1, 2):
        outcome = BackendOutcome("jax", "timing", run_dir=str(tmp_path), round_=f"{round_}/2")
        outcome.phases = {"wall_s": 10.0, "import_s": 1.25, "compile_s": 4.0 / round_}
        outcomes.append(outcome)
    other = BackendOutcome("numpy", "accuracy", run_dir=str(tmp_path))
    other.phases = {"wall_s": 3.0, "reference_s": 1.0}
    elsewhere = BackendOutcome("numpy", "accuracy", run_dir=str(tmp_path / "other"))
    elsewhere.phases = {"wall_s": 99.0}
    (tmp_path / "run.json").write_text(json.dumps({"run_id": "r"}))
    info = run_info.finish(tmp_path, [*outcomes, other, elsewhere])
    assert info["time_breakdown"] == {
        "timing jax": {"compile_s": 6.0, "import_s": 2.5, "wall_s": 20.0},
        "accuracy numpy": {"reference_s": 1.0, "wall_s": 3.0},
    }


def test_the_phase_clock_puts_reference_and_compile_time_apart(monkeypatch):
    from xentbench.suites.run import phases

    spent = [0.0]
    monkeypatch.setattr(phases, "seconds_spent", lambda: spent[0])
    clock = PhaseClock()
    with clock.task():
        time.sleep(0.05)
        spent[0] += 0.03  # of which the reference took 0.03 s
    clock.add_compile([{"compile_s": 0.01, "rounds": 1}, {"compile_s": 5.0, "rounds": 2}])
    seconds = clock.seconds()
    assert seconds["reference_s"] == 0.03 and seconds["compile_s"] == 0.01
    assert 0.05 - 0.03 - 0.01 - 0.002 <= seconds["evaluate_s"] < 0.5
    with clock.phase("write_s"):
        pass
    assert set(clock.seconds()) == {"reference_s", "compile_s", "evaluate_s", "write_s"}
