"""nox sessions: tests, lint, accuracy(backend), timing(backend), report (the main job).

Each backend's suites run in a virtual environment with only that backend installed
(``.nox/backend-<name>``). All sessions of one ``nox`` invocation write into the same run
directory (RUN_DIR below).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import socket
import sys
from pathlib import Path

import nox

nox.options.reuse_venv = "yes"
nox.options.sessions = ["tests", "lint"]

BACKENDS = ["numpy", "torch", "tensorflow", "jax", "onnxruntime"]
EXTRAS = {
    "numpy": [],
    "torch": ["torch"],
    "tensorflow": ["tensorflow"],
    "jax": ["jax"],
    "onnxruntime": ["onnxruntime"],
}
# torch 2.13.0 as a CPU build installs in seconds where pip finds it locally; elsewhere pip
# takes PyPI's build of that release. Any other requirement: XENTBENCH_TORCH="torch>=2.14".
TORCH = os.environ.get("XENTBENCH_TORCH", "torch==2.13.0")
RUN_DIR = Path(
    os.environ.get("XENTBENCH_RUN_DIR")
    or Path("reports", "runs", f"{dt.datetime.now():%Y%m%d-%H%M%S}-{socket.gethostname()}")
)


def install(session: nox.Session, *extras: str) -> None:
    """Install the project (editable) with ``extras``, torch first so its pin is the one used."""
    if {"torch", "all"} & set(extras):
        session.install(TORCH)
    session.install("-e", f".[{','.join(extras)}]" if extras else ".")


@nox.session
def tests(session: nox.Session) -> None:
    """Run the test suite with every backend installed."""
    install(session, "all", "test")
    session.run("pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check."""
    session.install("ruff>=0.6")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


def backend_environment(session: nox.Session, backend: str) -> Path:
    """The virtual environment of one backend (only that framework), shared by its sessions.

    accuracy(backend), timing(backend) and report run in these environments, so a framework of
    several hundred MB is installed once. pip runs only when the environment is new or what it
    was installed from (pyproject.toml, the torch requirement, this Python) changed: the
    project is installed editable, so code changes need no reinstall.
    """
    env = Path(".nox", f"backend-{backend}")
    python = env / "bin" / "python"
    stamp = env / "xentbench-installed"
    wanted = _install_fingerprint(backend)
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return env
    if not python.exists():
        session.run(sys.executable, "-m", "venv", str(env), external=True)
    pip = [str(python), "-m", "pip", "install", "--quiet"]
    if backend == "torch":
        session.run(*pip, TORCH, external=True)
    extras = EXTRAS[backend]
    session.run(*pip, "-e", f".[{','.join(extras)}]" if extras else ".", external=True)
    stamp.write_text(wanted)
    return env


def _install_fingerprint(backend: str) -> str:
    """What a backend environment's installation depends on, as one hashed line."""
    parts = [backend, TORCH, sys.version, Path("pyproject.toml").read_text()]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def run_suites(session: nox.Session, suite: str, backends: list[str], *options: str) -> None:
    """``xentbench run`` of ``suite`` into RUN_DIR, each backend in its own environment.

    The driving process runs in the NumPy environment (the core dependencies only) and starts
    each backend's workers with that backend's interpreter.
    """
    pythons = [
        f"{b}={(backend_environment(session, b) / 'bin' / 'python').absolute()}" for b in backends
    ]
    xentbench = backend_environment(session, "numpy") / "bin" / "xentbench"
    command = [str(xentbench), "run", "--suite", suite, "--backend", *backends]
    command += ["--python", *pythons, "--out", str(RUN_DIR), *options]
    session.run(*command, *session.posargs, external=True)


@nox.session(venv_backend="none")
@nox.parametrize("backend", BACKENDS)
def accuracy(session: nox.Session, backend: str) -> None:
    """Accuracy suite for one backend, in its own environment, into RUN_DIR."""
    run_suites(session, "accuracy", [backend])


@nox.session(venv_backend="none")
@nox.parametrize("backend", BACKENDS)
def timing(session: nox.Session, backend: str) -> None:
    """Timing suite for one backend, in its own environment, into RUN_DIR."""
    run_suites(session, "timing", [backend])


@nox.session(venv_backend="none")
def report(session: nox.Session) -> None:
    """The main job: every backend's accuracy and timing, then the report in RUN_DIR.

    One ``xentbench run`` drives all five backends, each in its own environment: accuracy
    workers two at a time (this machine has two cores), then timing workers one at a time.
    """
    run_suites(session, "all", BACKENDS, "--jobs", "2")
    xentbench = backend_environment(session, "numpy") / "bin" / "xentbench"
    session.run(str(xentbench), "report", str(RUN_DIR), external=True)
