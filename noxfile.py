"""nox sessions: tests, tests_full, tests_latest, lint, docs, lock, accuracy(backend),
timing(backend), conformance(backend), report (the main job: the built-in backends, plugins
by name), report_full (every backend, the full timing profile), hunt, matrix.

Each backend's suites run in a virtual environment with only that backend installed
(``.nox/backend-<name>``). All sessions of one ``nox`` invocation write into the same run
directory (RUN_DIR below). Every environment but ``tests_latest`` installs within the lock,
``constraints.txt``, so an upstream release changes nothing until ``nox -s lock`` is run on
purpose.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nox

nox.options.reuse_venv = "yes"
nox.options.sessions = ["tests", "lint"]

BACKENDS = [
    "numpy",
    "torch",
    "tensorflow",
    "jax",
    "onnxruntime",
    "paddle",
    "tinygrad",
    "mlx",
    "keras_jax",
    "keras_torch",
]
# The main job's backends: the five built-in frameworks; `nox -s report -- NAME...` adds
# plugin backends by name, and `nox -s report_full` runs every backend.
CORE_BACKENDS = BACKENDS[:5]
PLUGIN_BACKENDS = BACKENDS[5:]
EXTRAS = {
    "numpy": [],
    "torch": ["torch"],
    "tensorflow": ["tensorflow"],
    "jax": ["jax"],
    "onnxruntime": ["onnxruntime"],
    # Plugins shipped in this repository, each in an extra of its own (not in "all"): Paddle,
    # tinygrad, MLX on its CPU device, and Keras on JAX and on torch (one backend per process).
    "paddle": ["paddle"],
    "mlx": ["mlx"],
    "keras_jax": ["keras-jax"],
    "keras_torch": ["keras-torch"],
    "tinygrad": ["tinygrad"],
    # The CUDA environments of `nox -s gpu` (tests/gpu_session.py), made only where a GPU is.
    "gpu-torch": ["torch", "test", "cut-cross-entropy", "liger-kernel"],
    "gpu-jax": ["test", "jax-cuda"],
    "gpu-tensorflow": ["test", "tensorflow-cuda"],
}
# tinygrad's accuracy run where it has only its Python emulator (no clang): the cases small
# enough for it, in float32 (the timing suite would measure the emulator, not tinygrad).
TINYGRAD_EMULATOR_RUN = (
    "--dtype",
    "float32",
    "--cases",
    *(f"*/{family}/*" for family in ("benign", "extreme", "special", "soft_labels", "options")),
)
# Extras installed outside the lock, after the project within it: paddlepaddle pins
# opt_einsum==3.3.0, which the lock (opt-einsum 3.4.0, for JAX) excludes.
# The GPU extras are not in the lock at all (CUDA wheels).
UNLOCKED_EXTRAS = frozenset(
    {"paddle", "cut-cross-entropy", "liger-kernel", "jax-cuda", "tensorflow-cuda"}
)
# The extras that bring torch: their environments install TORCH first.
TORCH_EXTRAS = frozenset({"torch", "all", "keras-torch"})
# torch 2.13.0 as a CPU build installs in seconds where pip finds it locally; elsewhere pip
# takes PyPI's build of that release. Any other requirement: XENTBENCH_TORCH="torch>=2.14".
TORCH = os.environ.get("XENTBENCH_TORCH", "torch==2.13.0")
LOCK = Path("constraints.txt")
# The extras the lock resolves: every optional dependency a session installs (the
# cut-cross-entropy plugin brings triton and a CUDA torch, so it is installed unlocked; the
# keras-jax and keras-torch extras hold only packages "all" locks; mlx and tinygrad are not
# locked yet).
LOCKED_EXTRAS = ("all", "test", "lint", "docs", "dev")
# Each environment's first import of a framework writes its bytecode, and every later process
# reads it: with PYTHONDONTWRITEBYTECODE set (as container images often do), every worker and
# test process would compile TensorFlow again (9 s to import it instead of 4 here).
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
RUN_DIR = Path(
    os.environ.get("XENTBENCH_RUN_DIR")
    or Path("reports", "runs", f"{dt.datetime.now():%Y%m%d-%H%M%S}-{socket.gethostname()}")
)


def install(session: nox.Session, *extras: str, locked: bool = True) -> None:
    """Install the project (editable) with ``extras`` within the lock, torch first so its pin is
    the one used; unless ``locked`` is false: then the newest releases the ranges allow, torch
    included (a pinned torch installed first would only be upgraded again).

    Bytecode is not compiled up front: Python compiles what the tests import, a fraction of
    what the frameworks ship, and caches it (PYTHONDONTWRITEBYTECODE is unset above).
    """
    pins = ["-c", str(LOCK)] if locked else ["--upgrade", "--upgrade-strategy", "eager"]
    if locked and TORCH_EXTRAS & set(extras):
        session.install("--no-compile", *pins, TORCH)
    session.install("--no-compile", *pins, "-e", f".[{','.join(extras)}]" if extras else ".")


def run_pytest(session: nox.Session, *tier: str) -> None:
    """The installed versions, then pytest in two passes: every test but the ``timing`` ones on
    two workers (pytest-xdist), then the ``timing`` tests alone, so nothing of the suite's own
    load reaches a measurement. Both passes list their slowest tests (pyproject.toml's
    addopts). posargs go to both (a pass left with no test is fine).
    """
    session.run("pip", "freeze", "--exclude-editable", silent=False)
    session.run("pytest", "-n", "2", "-m", "not timing", *tier, *session.posargs)
    session.run("pytest", "-m", "timing", *tier, *session.posargs, success_codes=[0, 5])


@nox.session
def tests(session: nox.Session) -> None:
    """The fast tier, within the lock: unit, reference, conformance and flawed-plugin tests."""
    install(session, "all", "test")
    run_pytest(session)


@nox.session(venv_backend="none")
def tests_full(session: nox.Session) -> None:
    """Every test, within the lock: the fast tier and the tests marked slow, run as
    ``nox -s tests -- --run-slow`` so both tiers share one 3 GB environment (two filled a CI
    machine's disk)."""
    command = [sys.executable, "-m", "nox", "-s", "tests", "--", "--run-slow", *session.posargs]
    session.run(*command, external=True)


@nox.session
def tests_latest(session: nox.Session) -> None:
    """The fast tier against the newest releases that pyproject.toml's ranges admit."""
    install(session, "all", "test", locked=False)
    run_pytest(session)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check."""
    session.install("-c", str(LOCK), "ruff")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def docs(session: nox.Session) -> None:
    """Build the documentation site into site/ (mkdocs build --strict: a warning fails)."""
    install(session, "docs")
    # mkdocs-material prints a banner about its successor on every build; it is no build warning.
    quiet = {"NO_MKDOCS_2_WARNING": "1"}
    session.run("mkdocs", "build", "--strict", *session.posargs, env=quiet)


@nox.session(venv_backend="none")
def lock(session: nox.Session) -> None:
    """Refresh constraints.txt: the newest releases pyproject.toml admits, resolved by uv for
    this Python on manylinux x86_64, with torch held at the nox sessions' requirement."""
    command = ["uv", "pip", "compile", "pyproject.toml", "--upgrade", "--quiet"]
    command += [f"--extra={extra}" for extra in LOCKED_EXTRAS]
    command += ["--python-version", f"{sys.version_info.major}.{sys.version_info.minor}"]
    command += ["--python-platform", "x86_64-manylinux_2_28", "--no-header"]
    with tempfile.TemporaryDirectory() as folder:
        torch = Path(folder, "torch.txt")
        torch.write_text(TORCH + "\n")
        resolved = Path(folder, "lock.txt")
        session.run(*command, "--constraint", str(torch), "-o", str(resolved), external=True)
        header = (
            "# The lock: exact releases for the tests, CI and the backend environments.\n"
            "# Refreshed on purpose with `nox -s lock` (uv pip compile of pyproject.toml's\n"
            f"# extras {', '.join(LOCKED_EXTRAS)}); pyproject.toml keeps the ranges users get.\n"
        )
        LOCK.write_text(header + resolved.read_text())
    session.log(f"wrote {LOCK}")


def backend_environments(session: nox.Session, backends: list[str]) -> dict[str, Path]:
    """The virtual environments of ``backends`` (each with only that framework) that are
    ready, by backend; one that fails to install is reported and left out.

    accuracy(backend), timing(backend) and report share them, so a framework of several
    hundred MB is installed once. pip runs only where an environment is new or what it was
    installed from (pyproject.toml, the torch requirement, this Python) changed: the project
    is installed editable, so code changes need no reinstall. Missing ones are installed two
    at a time, without compiling bytecode up front (Python compiles what it imports).
    """
    envs = {backend: environment(backend) for backend in backends}
    stale = [backend for backend, env in envs.items() if not _up_to_date(env, backend)]
    if stale:
        session.log(f"installing environments for {', '.join(stale)} (logs: .nox/backend-*.log)")
        with ThreadPoolExecutor(max_workers=2) as pool:
            failures = dict(zip(stale, pool.map(_install, stale), strict=True))
        for backend, failure in failures.items():
            if failure:
                session.warn(failure)
                del envs[backend]
    return envs


def environment(backend: str) -> Path:
    """Where a backend's virtual environment lives."""
    return Path(".nox", f"backend-{backend}")


def _up_to_date(env: Path, backend: str) -> bool:
    stamp = env / "xentbench-installed"
    python = env / "bin" / "python"
    return python.exists() and stamp.exists() and stamp.read_text() == _fingerprint(backend)


def _fingerprint(backend: str) -> str:
    """What a backend environment's installation depends on, as one hashed line."""
    parts = [backend, TORCH, sys.version, Path("pyproject.toml").read_text(), LOCK.read_text()]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def _install(backend: str) -> str | None:
    """Create or update one backend's environment; None, or what failed with its log's tail."""
    env = environment(backend)
    log = env.with_name(f"{env.name}.log")
    pip = [str(env / "bin" / "python"), "-m", "pip", "install", "--no-compile", "-c", str(LOCK)]
    extras = ",".join(e for e in EXTRAS[backend] if e not in UNLOCKED_EXTRAS)
    unlocked = ",".join(e for e in EXTRAS[backend] if e in UNLOCKED_EXTRAS)
    steps = [[sys.executable, "-m", "venv", str(env)]]
    steps += [[*pip, TORCH]] if TORCH_EXTRAS & set(EXTRAS[backend]) else []
    steps += [[*pip, "-e", f".[{extras}]" if extras else "."]]
    steps += [[*pip[:-2], "-e", f".[{unlocked}]"]] if unlocked else []
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as output:
        for step in steps:
            if subprocess.run(step, stdout=output, stderr=subprocess.STDOUT).returncode:
                tail = "".join(log.read_text().splitlines(keepends=True)[-20:])
                return f"installing the {backend} environment failed: {' '.join(step)}\n{tail}"
    (env / "xentbench-installed").write_text(_fingerprint(backend))
    return None


def run_suites(
    session: nox.Session,
    suite: str,
    backends: list[str],
    *options: str,
    run_args: list[str] | None = None,
) -> list[str]:
    """``xentbench run`` of ``suite`` into RUN_DIR, each backend in its own environment; returns
    the backends left out because their environment failed to install. ``run_args`` go to
    ``xentbench run`` after ``options`` (default: the session's posargs).

    The driving process runs in the NumPy environment (the core dependencies only) and starts
    each backend's workers with that backend's interpreter.
    """
    envs = backend_environments(session, ["numpy", *backends])
    if "numpy" not in envs:
        session.error("the numpy environment, which drives every run, failed to install")
    ready = [backend for backend in backends if backend in envs]
    if ready:
        pythons = [f"{b}={(envs[b] / 'bin' / 'python').absolute()}" for b in ready]
        command = [str(envs["numpy"] / "bin" / "xentbench"), "run", "--suite", suite]
        command += ["--backend", *ready, "--python", *pythons, "--out", str(RUN_DIR), *options]
        extra = session.posargs if run_args is None else run_args
        session.run(*command, *extra, external=True)
    return [backend for backend in backends if backend not in envs]


def fail_if_left_out(session: nox.Session, left_out: list[str]) -> None:
    """End the session as failed when a backend's environment could not be installed."""
    if left_out:
        failed = ", ".join(left_out)
        session.error(f"not run: {failed} (installation failed, see .nox/backend-*.log)")


@nox.session(venv_backend="none")
@nox.parametrize("backend", BACKENDS)
def accuracy(session: nox.Session, backend: str) -> None:
    """Accuracy suite for one backend, in its own environment, into RUN_DIR."""
    fail_if_left_out(session, run_suites(session, "accuracy", [backend]))


@nox.session(venv_backend="none")
@nox.parametrize("backend", BACKENDS)
def timing(session: nox.Session, backend: str) -> None:
    """Timing suite for one backend, in its own environment, into RUN_DIR."""
    fail_if_left_out(session, run_suites(session, "timing", [backend]))


@nox.session(venv_backend="none")
@nox.parametrize("backend", BACKENDS)
def conformance(session: nox.Session, backend: str) -> None:
    """The conformance tests of one backend in its own environment (only its framework, plus the
    test extra): a backend that cannot share a process with another (Keras takes one backend
    per process) is tested where it runs. posargs go to pytest."""
    envs = backend_environments(session, [backend])
    if backend not in envs:
        fail_if_left_out(session, [backend])
    bin_dir = envs[backend] / "bin"
    pip = [str(bin_dir / "python"), "-m", "pip", "install", "--no-compile", "-c", str(LOCK)]
    session.run(*pip, "-e", ".[test]", external=True, silent=True)
    pytest = [str(bin_dir / "pytest"), "-n", "2", "tests/test_conformance.py"]
    session.run(*pytest, "--backend", backend, *session.posargs, external=True)


@nox.session(venv_backend="none")
def report(session: nox.Session) -> None:
    """The main job: accuracy and timing (the default timing profile) of the five built-in
    backends, and of the plugin backends named first among the posargs
    (``nox -s report -- paddle mlx``; the posargs from the first option on go to
    ``xentbench run``), then the report in RUN_DIR.

    One ``xentbench run`` drives the backends, each in its own environment: accuracy
    workers two at a time (this machine has two cores), then timing workers one at a time.
    A backend whose environment fails to install is left out of the run and the report, and
    the session then fails, naming it. Without clang, tinygrad runs on its Python emulator
    (docs/plugin-backends.md): its accuracy on the small cases only, and no timing.
    """
    try:
        added, run_args = report_arguments(session.posargs)
    except ValueError as exc:
        session.error(str(exc))
    main_job(session, "default", [*CORE_BACKENDS, *added], run_args)


@nox.session(venv_backend="none")
def report_full(session: nox.Session) -> None:
    """The main job over every backend, plugins included, with the full timing profile: every
    shape, each of five rounds in a fresh process per backend (the grid and rounds a timing
    change is gated with). posargs go to ``xentbench run``."""
    main_job(session, "full", BACKENDS, list(session.posargs))


def report_arguments(posargs: list[str]) -> tuple[list[str], list[str]]:
    """``report``'s posargs split: the backends named before the first option (each once,
    beyond the built-in ones), and the rest for ``xentbench run``. A ValueError names an
    unknown backend and the valid ones."""
    names: list[str] = []
    for position, word in enumerate(posargs):
        if word.startswith("-"):
            return names, list(posargs[position:])
        if word not in BACKENDS:
            valid, core = ", ".join(PLUGIN_BACKENDS), ", ".join(CORE_BACKENDS)
            raise ValueError(
                f"unknown backend {word!r} for nox -s report; valid: {valid} "
                f"(the built-in {core} always run)"
            )
        if word not in CORE_BACKENDS and word not in names:
            names.append(word)
    return names, []


def run_dir_of(run_args: list[str]) -> Path:
    """The run directory ``xentbench run`` writes given ``run_args``: the last ``--out``
    among them (argparse keeps the last), else RUN_DIR."""
    out = RUN_DIR
    for position, arg in enumerate(run_args):
        if arg == "--out" and position + 1 < len(run_args):
            out = Path(run_args[position + 1])
        elif arg.startswith("--out="):
            out = Path(arg.removeprefix("--out="))
    return out


# Longest accuracy run first (JAX eager lowers every primitive per shape and dtype; its tasks
# are split over two workers, ``run --split``), so the other backends fill the cores after.
LONGEST_FIRST = ["jax", "torch", "keras_jax", "tinygrad", "paddle", "keras_torch", "mlx"]
LONGEST_FIRST += ["tensorflow", "onnxruntime", "numpy"]


def main_job(session: nox.Session, profile: str, backends: list[str], run_args: list[str]) -> None:
    """The main job's run of ``backends`` with timing profile ``profile`` (``run_args`` to
    ``xentbench run``), then the report in its run directory (RUN_DIR unless they name one)."""
    emulated = "tinygrad" in backends and not shutil.which("clang")
    ordered = [b for b in LONGEST_FIRST if b in backends and not (emulated and b == "tinygrad")]
    options = ("--jobs", "2", "--profile", profile, "--split", "jax=2")
    left_out = run_suites(session, "all", ordered, *options, run_args=run_args)
    if emulated:  # tinygrad on its Python emulator: small cases, no timing
        emulator = TINYGRAD_EMULATOR_RUN
        left_out += run_suites(session, "accuracy", ["tinygrad"], *emulator, run_args=run_args)
    xentbench = environment("numpy") / "bin" / "xentbench"  # run_suites installed it
    session.run(str(xentbench), "report", str(run_dir_of(run_args)), external=True)
    fail_if_left_out(session, left_out)


@nox.session(venv_backend="none")
def gpu(session: nox.Session) -> None:
    """CUDA conformance of torch, JAX and TensorFlow, the triton paths of cut-cross-entropy and
    Liger-Kernel, and the timing grid at language-model shapes, into RUN_DIR (docs/gpu.md).

    ``tests/gpu_session.py --probe`` first: without a GPU nothing is installed and every part is
    recorded unavailable with the reason (exit 0, seconds); with one, the CUDA environments are
    made (once) and the parts run, each under its limit.
    """
    script = [sys.executable, "tests/gpu_session.py"]
    probe = subprocess.run([*script, "--probe"], capture_output=True, text=True)
    pythons = []
    if probe.returncode == 0:
        envs = backend_environments(session, ["gpu-torch", "gpu-jax", "gpu-tensorflow"])
        pythons = [f"{name}={(env / 'bin' / 'python').absolute()}" for name, env in envs.items()]
    else:
        session.log(probe.stdout.strip() or probe.stderr.strip())
    session.run(*script, str(RUN_DIR), *pythons, external=True)


@nox.session(venv_backend="none")
def hunt(session: nox.Session) -> None:
    """The default hunt over every backend, each in its own environment, then the report.

    ``xentbench hunt`` in RUN_DIR, driven from the NumPy environment with each backend's
    workers on that backend's interpreter, two at a time; posargs go to ``xentbench hunt``
    (e.g. ``nox -s hunt -- --from-scratch --budget-s 5``).
    """
    longest_first = ["jax", "tensorflow", "torch", "numpy", "onnxruntime"]
    envs = backend_environments(session, ["numpy", *longest_first])
    if "numpy" not in envs:
        session.error("the numpy environment, which drives every run, failed to install")
    ready = [backend for backend in longest_first if backend in envs]
    pythons = [f"{b}={(envs[b] / 'bin' / 'python').absolute()}" for b in ready]
    xentbench = str(envs["numpy"] / "bin" / "xentbench")
    command = [xentbench, "hunt", "--backend", *ready, "--python", *pythons, "--jobs", "2"]
    session.run(*command, "--out", str(RUN_DIR), *session.posargs, external=True)
    session.run(xentbench, "report", str(RUN_DIR), external=True)
    fail_if_left_out(session, [backend for backend in longest_first if backend not in envs])


@nox.session
def matrix(session: nox.Session) -> None:
    """``xentbench matrix`` (the accuracy suite across a backend's releases, docs/bisect.md)
    from an environment holding uv, which builds one environment per release; posargs go to
    it (e.g. ``nox -s matrix -- --backend onnxruntime --minors 4``)."""
    install(session, "dev")
    session.run("xentbench", "matrix", *(session.posargs or ["--backend", "numpy"]))
