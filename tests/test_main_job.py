"""The main job's backends (``nox -s report``): the five built-in frameworks, plugin backends
added by name, every backend in ``report_full``; read from the noxfile without nox installed."""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _decorator(*args, **kwargs):
    """``@nox.session`` and ``@nox.session(...)`` alike: the function unchanged."""
    if len(args) == 1 and callable(args[0]) and not kwargs:
        return args[0]
    return lambda function: function


@pytest.fixture(scope="module")
def noxfile():
    """The noxfile as a module, with a stand-in for nox (its decorators leave functions as
    they are)."""
    stand_in = types.ModuleType("nox")
    stand_in.options = types.SimpleNamespace()
    stand_in.Session = object
    stand_in.session = _decorator
    stand_in.parametrize = lambda *args, **kwargs: _decorator
    saved = sys.modules.get("nox")
    sys.modules["nox"] = stand_in
    try:
        spec = importlib.util.spec_from_file_location("xentbench_noxfile", ROOT / "noxfile.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        if saved is None:
            del sys.modules["nox"]
        else:
            sys.modules["nox"] = saved
    return module


class Ended(Exception):
    """``session.error``: the session ends, failed."""


class FakeSession:
    def __init__(self, posargs: list[str]) -> None:
        self.posargs = posargs
        self.runs: list[tuple] = []

    def error(self, message: str):
        raise Ended(message)

    def run(self, *command, **kwargs) -> None:
        self.runs.append(command)


@pytest.fixture
def suites_run(noxfile, monkeypatch):
    """``run_suites`` recorded instead of run: (suite, backends, options, run_args) each."""
    calls = []

    def run_suites(session, suite, backends, *options, run_args=None):
        calls.append((suite, list(backends), options, run_args))
        return []

    monkeypatch.setattr(noxfile, "run_suites", run_suites)
    monkeypatch.setattr(noxfile.shutil, "which", lambda name: "/usr/bin/clang")
    return calls


def test_the_core_and_plugin_backends_split_every_backend(noxfile):
    assert noxfile.CORE_BACKENDS == ["numpy", "torch", "tensorflow", "jax", "onnxruntime"]
    assert sorted(noxfile.CORE_BACKENDS + noxfile.PLUGIN_BACKENDS) == sorted(noxfile.BACKENDS)
    assert sorted(noxfile.LONGEST_FIRST) == sorted(noxfile.BACKENDS)


def test_report_runs_the_five_built_in_backends_with_the_default_profile(noxfile, suites_run):
    noxfile.report(FakeSession([]))
    (suite, backends, options, run_args), *rest = suites_run
    assert not rest
    assert suite == "all" and sorted(backends) == sorted(noxfile.CORE_BACKENDS)
    assert backends[0] == "jax"  # the longest accuracy run starts first
    assert options[options.index("--profile") + 1] == "default"
    assert options[options.index("--split") + 1] == "jax=2"  # JAX's accuracy on both cores
    assert run_args == []


@pytest.mark.parametrize("out", [["--out", "elsewhere"], ["--out=elsewhere"]])
def test_report_reports_the_run_directory_the_options_name(noxfile, suites_run, out):
    session = FakeSession(["--dtype", "float32", *out])
    noxfile.report(session)
    assert session.runs[-1][1:] == ("report", "elsewhere")
    session = FakeSession([])
    noxfile.report(session)
    assert session.runs[-1][1:] == ("report", str(noxfile.RUN_DIR))


def test_report_adds_the_plugins_named_and_passes_options_on(noxfile, suites_run):
    session = FakeSession(["paddle", "mlx", "torch", "mlx", "--dtype", "float32", "mlx"])
    noxfile.report(session)
    (_, backends, _, run_args), *_ = suites_run
    assert sorted(backends) == sorted([*noxfile.CORE_BACKENDS, "paddle", "mlx"])
    assert run_args == ["--dtype", "float32", "mlx"]  # from the first option on: xentbench run's


def test_report_refuses_an_unknown_backend_in_one_line_naming_the_valid_ones(noxfile, suites_run):
    with pytest.raises(Ended) as ended:
        noxfile.report(FakeSession(["padle"]))
    message = str(ended.value)
    assert "\n" not in message and "'padle'" in message
    assert all(name in message for name in noxfile.PLUGIN_BACKENDS)
    assert not suites_run


def test_report_full_runs_every_backend_with_the_full_profile(noxfile, suites_run):
    noxfile.report_full(FakeSession(["--dtype", "float32"]))
    (suite, backends, options, run_args), *rest = suites_run
    assert suite == "all" and not rest
    assert sorted(backends) == sorted(noxfile.BACKENDS)
    assert options[options.index("--profile") + 1] == "full"
    assert run_args == ["--dtype", "float32"]


def test_without_clang_tinygrad_runs_apart_on_the_emulators_small_cases(noxfile, suites_run):
    noxfile.shutil.which = lambda name: None  # restored by suites_run's monkeypatch
    noxfile.report(FakeSession(["tinygrad"]))
    (_, backends, _, _), (suite, emulated, options, _) = suites_run
    assert "tinygrad" not in backends
    assert (suite, emulated, options) == ("accuracy", ["tinygrad"], noxfile.TINYGRAD_EMULATOR_RUN)
