"""nox sessions: tests, lint, accuracy(backend), timing(backend), report (the main job).

Each backend's suites run in a virtual environment with only that backend installed. All
sessions of one ``nox`` invocation write into the same run directory (RUN_DIR below).
"""

from __future__ import annotations

import datetime as dt
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

    accuracy(backend) and timing(backend) run in the same environment, so a framework of
    several hundred MB is installed once, not once per session; nox manages the other sessions'
    environments as usual.
    """
    env = Path(".nox", f"backend-{backend}")
    if not (env / "bin" / "python").exists():
        session.run(sys.executable, "-m", "venv", str(env), external=True)
    pip = [str(env / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    if backend == "torch":
        session.run(*pip, TORCH, external=True)
    extras = EXTRAS[backend]
    session.run(*pip, "-e", f".[{','.join(extras)}]" if extras else ".", external=True)
    return env


def run_suite(session: nox.Session, suite: str, backend: str) -> None:
    """One suite for one backend, in that backend's environment, into RUN_DIR."""
    xentbench = backend_environment(session, backend) / "bin" / "xentbench"
    session.run(
        str(xentbench),
        "run",
        "--suite",
        suite,
        "--backend",
        backend,
        "--out",
        str(RUN_DIR),
        *session.posargs,
        external=True,
    )


@nox.session(venv_backend="none")
@nox.parametrize("backend", BACKENDS)
def accuracy(session: nox.Session, backend: str) -> None:
    """Accuracy suite for one backend, in its own environment, into RUN_DIR."""
    run_suite(session, "accuracy", backend)


@nox.session(venv_backend="none")
@nox.parametrize("backend", BACKENDS)
def timing(session: nox.Session, backend: str) -> None:
    """Timing suite for one backend, in its own environment, into RUN_DIR."""
    run_suite(session, "timing", backend)


@nox.session(
    requires=[
        f"{suite}(backend='{backend}')" for suite in ("accuracy", "timing") for backend in BACKENDS
    ]
)
def report(session: nox.Session) -> None:
    """The main job: every backend's accuracy and timing, then the report in RUN_DIR."""
    install(session)
    session.run("xentbench", "report", str(RUN_DIR), *session.posargs)
