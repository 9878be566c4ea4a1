"""The runner: crash and hang isolation, resume, harness errors kept apart from verdicts."""

from __future__ import annotations

import pickle
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
from plugin_helpers import register_plugins

from xentbench.suites.cli import main
from xentbench.suites.store.rows import load
from xentbench.suites.store.run_json import read_run_info

CRASHY_MODULE = '''
import os
import time

import numpy as np
import scipy.special

from xentbench.adapters.base import Adapter, Implementation, PreparedCall


def _softmax(name):
    return Implementation(name=f"crashy:{name}", op="softmax", dtypes=("float64",))


class CrashyAdapter(Adapter):
    """Three softmaxes: one right, one that kills its process, one that never returns."""

    name = "crashy"

    def version(self):
        return "0.0"

    def implementations(self):
        return (_softmax("ok"), _softmax("exit"), _softmax("hang"))

    def prepare(self, call, logits, labels):
        kind = call.implementation.api

        def run():
            if kind == "exit":
                os._exit(3)
            if kind == "hang":
                time.sleep(3600)
            return scipy.special.softmax(logits, axis=-1)

        return PreparedCall(run=run, to_numpy=np.asarray)
'''


@pytest.fixture
def crashy_backend(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A backend registered only through an entry point (spawned workers see sys.path too)."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "crashy_backend.py").write_text(textwrap.dedent(CRASHY_MODULE))
    register_plugins(site, monkeypatch, {"crashy": "crashy_backend:CrashyAdapter"}, "crashy")
    return "crashy"


def _run(out: Path, *extra: str) -> int:
    return main(["run", "--suite", "accuracy", "--out", str(out), "--dtype", "float64", *extra])


@pytest.mark.slow
def test_a_crash_or_hang_becomes_an_error_row_and_the_run_goes_on(crashy_backend, tmp_path):
    out = tmp_path / "run"
    case = "softmax/benign/normal-*"  # two cases: each hang costs the whole timeout
    code = _run(out, "--backend", crashy_backend, "--cases", case, "--timeout", "5", "--jobs", "1")
    assert code == 0
    rows = load([out], "accuracy").set_index("implementation")
    per_impl = rows.groupby(level=0)
    assert set(per_impl.groups) == {"crashy:ok", "crashy:exit", "crashy:hang"}
    assert (rows.loc["crashy:ok", "verdict"] == "pass").all()
    assert (rows.loc["crashy:exit", "verdict"] == "error").all()
    assert rows.loc["crashy:exit", "message"].str.contains("worker process died").all()
    assert rows.loc["crashy:hang", "message"].str.contains("timed out after 5 s").all()
    assert per_impl.size().nunique() == 1  # every case reached every implementation
    assert len(read_run_info(out)["crashes"]) == 2 * per_impl.size().iloc[0]


def test_rerunning_into_the_same_directory_resumes_without_recomputing(tmp_path):
    out = tmp_path / "run"
    assert _run(out, "--backend", "numpy", "--impl", "numpy:stable.*", "--cases", "*/benign/*") == 0
    first = load([out], "accuracy").set_index(["implementation", "case_id"])
    assert _run(out, "--backend", "numpy", "--impl", "numpy:*", "--cases", "*/benign/*") == 0
    second = load([out], "accuracy").set_index(["implementation", "case_id"])
    assert not second.index.duplicated().any()
    assert len(second) > len(first)
    # Rows stored by the first run are kept as they were, not computed again.
    kept = second.loc[first.index, "elapsed_s"]
    assert (kept.to_numpy() == first["elapsed_s"].to_numpy()).all()


@pytest.mark.slow
def test_an_interrupted_run_resumes_to_exactly_the_uninterrupted_rows(tmp_path):
    """Rows are flushed as they are produced: the parts of a run killed before its final merge
    survive, and the resumed run holds every evaluation exactly once, key by key and verdict
    by verdict the same as an uninterrupted run."""
    from xentbench.suites.store.rows import RowWriter
    from xentbench.suites.store.schema import KEYS

    selection = ("--backend", "numpy", "--impl", "numpy:naive.softmax", "--cases", "*")
    whole, interrupted = tmp_path / "whole", tmp_path / "interrupted"
    assert _run(whole, *selection) == 0
    rows = load([whole], "accuracy")
    writer = RowWriter(interrupted, "accuracy", "numpy")  # only part files, no merged file
    for row in rows.head(5).to_dict("records"):
        writer.write(row)
    writer.flush()
    assert len(load([interrupted], "accuracy")) == 5
    assert _run(interrupted, *selection) == 0
    keys = list(KEYS["accuracy"])
    resumed = load([interrupted], "accuracy")
    assert not resumed.duplicated(keys).any()
    expected = rows[[*keys, "verdict"]].sort_values(keys).reset_index(drop=True)
    got = resumed[[*keys, "verdict"]].sort_values(keys).reset_index(drop=True)
    pd.testing.assert_frame_equal(got, expected)


def test_a_backend_runs_with_the_interpreter_given_for_it(tmp_path):
    """--python B=PYTHON starts B's worker with that interpreter (here a wrapper that leaves a
    mark, then runs this Python without our import path, as another environment would)."""
    mark = tmp_path / "started"
    wrapper = tmp_path / "python"
    wrapper.write_text(f'#!/bin/sh\ntouch "{mark}"\nexec "{sys.executable}" "$@"\n')
    wrapper.chmod(0o755)
    out = tmp_path / "run"
    code = _run(
        out,
        "--backend",
        "numpy",
        "--impl",
        "numpy:stable.softmax",
        "--cases",
        "*/benign/*",
        "--python",
        f"numpy={wrapper}",
    )
    assert code == 0 and mark.exists()
    rows = load([out], "accuracy")
    assert len(rows) > 0 and (rows["verdict"] == "pass").all()


class _Collector:
    def __init__(self):
        self.messages = []

    def send(self, message):
        self.messages.append(message)


def test_worker_messages_need_no_framework_to_read(tmp_path, monkeypatch):
    """The parent may run in an environment without the backend's framework, so nothing a
    worker sends may pickle a framework's type (torch.__version__ is a str subclass)."""
    import pickletools

    from xentbench.adapters.numpy_adapter import NumpyAdapter
    from xentbench.suites.catalog.selection import Selection
    from xentbench.suites.run.worker import WorkerJob, work

    class FrameworkVersion(str):
        pass

    monkeypatch.setattr(NumpyAdapter, "version", lambda self: FrameworkVersion("9.9"))
    selection = Selection(
        ops=("softmax",),
        dtypes=("float64",),
        devices=("cpu",),
        modes=("eager",),
        implementations=("numpy:stable.softmax",),
        cases=("softmax/benign/*",),
        shapes=(),
        seed=0,
    )
    connection = _Collector()
    work(WorkerJob("numpy", "accuracy", selection, str(tmp_path), "run", "host"), connection)
    assert [kind for kind, _ in connection.messages][-1] == "end"
    for message in connection.messages:
        opcodes = {op.name for op, _, _ in pickletools.genops(pickle.dumps(message))}
        assert not opcodes & {"GLOBAL", "STACK_GLOBAL", "INST", "OBJ"}, message


LATER_MODULE = '''
import os
from pathlib import Path

import numpy as np
import scipy.special

from xentbench.adapters.base import Adapter, Implementation, PreparedCall


class LaterAdapter(Adapter):
    """A softmax whose process dies when a mark left by another process exists: it measures
    in the first round of a timing run and crashes in the second (its own worker)."""

    name = "later"

    def version(self):
        return "0.0"

    def implementations(self):
        return (Implementation(name="later:softmax", op="softmax", dtypes=("float64",)),)

    def prepare(self, call, logits, labels):
        mark = Path(os.environ["LATER_MARK"])
        if mark.exists() and mark.read_text() != str(os.getpid()):
            os._exit(3)
        mark.write_text(str(os.getpid()))
        return PreparedCall(run=lambda: scipy.special.softmax(logits, axis=-1), to_numpy=np.asarray)
'''


@pytest.mark.slow
def test_each_timing_round_runs_in_a_fresh_worker_and_a_crash_keeps_the_earlier_rounds(
    tmp_path, monkeypatch
):
    site = tmp_path / "site"
    site.mkdir()
    (site / "later_backend.py").write_text(textwrap.dedent(LATER_MODULE))
    register_plugins(site, monkeypatch, {"later": "later_backend:LaterAdapter"}, "later")
    mark = tmp_path / "mark"
    monkeypatch.setenv("LATER_MARK", str(mark))
    out = tmp_path / "run"
    argv = ["run", "--suite", "timing", "--backend", "later", "--dtype", "float64"]
    argv += ["--mode", "eager", "--shapes", "4x5", "--repeat-runs", "2", "--out", str(out)]
    argv += ["--profile", "full"]  # its rounds each in a fresh worker
    assert main(argv) == 0
    # Round 1 measured in one process; round 2's process died on its first call.
    row = load([out], "timing").query("verdict == 'ok'").iloc[0]
    assert row["rounds"] == 1 and len(row["times_s"]) == row["repeats"] >= 3
    info = read_run_info(out)
    assert any("worker process died" in crash for crash in info["crashes"])
    assert {"later round 1/2 before", "later round 2/2 after"} <= set(info["timing_load"])
    # Resumed, only round 2 runs (in a fresh process again), pooling with round 1's samples.
    mark.unlink()
    assert main(argv) == 0
    resumed = load([out], "timing").query("verdict == 'ok'").iloc[0]
    assert resumed["rounds"] == 2 and len(resumed["round_medians_s"]) == 2
    assert list(resumed["times_s"][: row["repeats"]]) == list(row["times_s"])


@pytest.mark.slow
def test_against_times_two_runs_at_once_and_keeps_their_records_apart(tmp_path, monkeypatch):
    site = tmp_path / "site"
    site.mkdir()
    (site / "later_backend.py").write_text(textwrap.dedent(LATER_MODULE))
    register_plugins(site, monkeypatch, {"later": "later_backend:LaterAdapter"}, "later")
    monkeypatch.setenv("LATER_MARK", str(tmp_path / "mark"))
    a, b = tmp_path / "a", tmp_path / "b"
    argv = ["run", "--suite", "timing", "--backend", "later", "--dtype", "float64"]
    argv += ["--mode", "eager", "--shapes", "4x5", "--repeat-runs", "1"]
    assert main([*argv, "--out", str(a), "--against", str(b)]) == 0
    # Run a's round went first and measured; run b's worker died on its first call.
    assert load([a], "timing")["verdict"].tolist() == ["ok"]
    assert load([b], "timing")["verdict"].tolist() == ["error"]
    info_a, info_b = read_run_info(a), read_run_info(b)
    assert (info_a["interleaved_with"], info_b["interleaved_with"]) == ("b", "a")
    assert info_a["crashes"] == [] and len(info_b["crashes"]) == 1
    assert "worker process died" in info_b["crashes"][0]
    assert set(info_a["timing_load"]) == {"later round 1/1 before", "later round 1/1 after"}


def test_the_rounds_of_two_interleaved_runs_take_turns():
    from xentbench.suites.catalog.selection import Selection
    from xentbench.suites.run.schedule import rounds_apart
    from xentbench.suites.run.worker import WorkerJob

    def jobs(run_dir):
        options = {"rounds": 2, "memory": False}
        return [
            WorkerJob(backend, "timing", Selection(), run_dir, "r", "h", timing_options=options)
            for backend in ("jax", "torch")
        ]

    order = [
        (job.run_dir, job.backend, job.timing_options["only_round"])
        for job in rounds_apart([*jobs("a"), *jobs("b")])
    ]
    first = [("a", "jax", 1), ("a", "torch", 1), ("b", "jax", 1), ("b", "torch", 1)]
    assert order == [*first, *[(run, backend, 2) for run, backend, _ in first]]


def test_timing_rounds_are_spread_round_major_over_the_backends():
    from xentbench.suites.catalog.selection import Selection
    from xentbench.suites.run.schedule import rounds_apart
    from xentbench.suites.run.worker import WorkerJob

    def job(backend, rounds):
        options = {"rounds": rounds, "memory": False}
        return WorkerJob(backend, "timing", Selection(), "/tmp/x", "r", "h", timing_options=options)

    jobs = rounds_apart([job("jax", 3), job("torch", 3), job("numpy", 1)])
    order = [(j.backend, j.timing_options["only_round"]) for j in jobs]
    expected = [("jax", 1), ("torch", 1), ("numpy", 1), ("jax", 2), ("torch", 2)]
    assert order == [*expected, ("jax", 3), ("torch", 3)]
    assert rounds_apart(list(reversed(jobs))) == list(reversed(jobs))  # already split: kept
    assert all(j.timing_options["rounds"] in (1, 3) for j in jobs)


def test_a_timing_round_skips_the_keys_whose_rows_already_pool_it(tmp_path):
    from xentbench.suites.catalog.selection import Selection
    from xentbench.suites.run.worker import WorkerJob, _done
    from xentbench.suites.store.rows import RowWriter, stored_rows

    writer = RowWriter(tmp_path, "timing", "numpy")
    base = {"shape": "4x5", "dtype": "float32", "device": "cpu", "mode": "eager"}
    base |= {"pass": "forward", "options": "", "run_id": "r", "host": "h", "backend_version": "0"}
    samples = {"times_s": [1e-3, 1.1e-3, 0.9e-3]}
    rows = {
        "numpy:one_round": {"verdict": "ok", "rounds": 1, **samples},
        "numpy:two_rounds": {"verdict": "ok", "rounds": 2, **samples},
        "numpy:unsupported": {"verdict": "unsupported", "rounds": None},
        "numpy:failed": {"verdict": "error", "rounds": None},
        "numpy:no_samples": {"verdict": "ok", "rounds": None},  # an older run's: cannot pool
    }
    for name, fields in rows.items():
        writer.write({**base, "implementation": name, "backend": "numpy", **fields})
    writer.close()

    def done_in(round_: int) -> set[str]:
        options = {"rounds": 3, "only_round": round_}
        job = WorkerJob(
            "numpy", "timing", Selection(), str(tmp_path), "r", "h", timing_options=options
        )
        return {key[0] for key in _done(job, stored_rows(tmp_path, "timing", "numpy"))}

    assert done_in(1) == set(rows)
    never_again = {"numpy:unsupported", "numpy:failed", "numpy:no_samples"}
    assert done_in(2) == {"numpy:two_rounds", *never_again}
    assert done_in(3) == never_again


def test_the_rounds_of_a_backend_share_one_progress_bar():
    import io

    from rich.console import Console

    from xentbench.suites.catalog.selection import Selection
    from xentbench.suites.run.progress import BarDisplay
    from xentbench.suites.run.schedule import rounds_apart
    from xentbench.suites.run.worker import WorkerJob

    options = {"rounds": 3, "memory": False}
    jobs = rounds_apart(
        [
            WorkerJob(backend, "timing", Selection(), "/tmp/x", "r", "h", timing_options=options)
            for backend in ("jax", "torch")
        ]
    )
    display = BarDisplay(Console(file=io.StringIO()))
    rounds = [(job, f"round {job.timing_options['only_round']}") for job in jobs]
    bars = [display.bar((job.run_dir, job.suite, job.backend), name) for job, name in rounds]
    progress = display.progress
    assert len(progress.tasks) == 2 and bars == [bars[0], bars[1]] * 3
    assert progress.tasks[0].description == "round 3"


def _threads_seen(tmp_path: Path, jobs: str) -> tuple[list[str], dict]:
    """Run numpy's accuracy with ``--jobs``; the thread variables its worker started with
    (through a wrapper interpreter that writes them down) and the run's run.json."""
    seen = tmp_path / f"threads-{jobs}"
    wrapper = tmp_path / f"python-{jobs}"
    wrapper.write_text(
        f'#!/bin/sh\necho "$OMP_NUM_THREADS $MKL_NUM_THREADS" > "{seen}"\n'
        f'exec "{sys.executable}" "$@"\n'
    )
    wrapper.chmod(0o755)
    out = tmp_path / f"run-{jobs}"
    args = ("--backend", "numpy", "--impl", "numpy:stable.softmax", "--cases", "*/benign/*")
    assert _run(out, *args, "--python", f"numpy={wrapper}", "--jobs", jobs) == 0
    return seen.read_text().split(), read_run_info(out)


def test_workers_side_by_side_get_their_share_of_the_cores(tmp_path, monkeypatch):
    """With --jobs 2 each worker's thread pools are capped to half the cores (a variable the
    user set is kept) and run.json says so; a lone worker is left uncapped."""
    from xentbench.suites.run.threads import THREAD_VARIABLES, usable_cores

    for name in THREAD_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MKL_NUM_THREADS", "3")
    share = str(max(1, usable_cores() // 2))
    seen, info = _threads_seen(tmp_path, "2")
    assert seen == [share, "3"]
    assert info["concurrent_worker_threads"]["OMP_NUM_THREADS"] == share
    assert "MKL_NUM_THREADS" not in info["concurrent_worker_threads"]
    seen, info = _threads_seen(tmp_path, "1")
    assert seen == ["3"] and "concurrent_worker_threads" not in info
