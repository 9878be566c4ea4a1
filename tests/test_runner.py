"""The runner: crash and hang isolation, resume, harness errors kept apart from verdicts."""

from __future__ import annotations

import pickle
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
from plugin_helpers import register_plugins

from suites.cli import main
from suites.store import load, read_run_info

CRASHY_MODULE = '''
import os
import time

import numpy as np
import scipy.special

from adapters.base import Adapter, Implementation, PreparedCall


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
        kind = call.implementation.name.split(":")[1]

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


def test_a_crash_or_hang_becomes_an_error_row_and_the_run_goes_on(crashy_backend, tmp_path):
    out = tmp_path / "run"
    case = "softmax/benign/*"
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


def test_an_interrupted_run_resumes_to_exactly_the_uninterrupted_rows(tmp_path):
    """Rows are flushed as they are produced: the parts of a run killed before its final merge
    survive, and the resumed run holds every evaluation exactly once, key by key and verdict
    by verdict the same as an uninterrupted run."""
    from suites.store import KEYS, RowWriter

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

    from adapters.numpy_adapter import NumpyAdapter
    from suites.catalog.selection import Selection
    from suites.run.worker import WorkerJob, work

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
