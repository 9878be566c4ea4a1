"""The version environments: one virtual environment per (package, release), built by uv on
demand in a cache directory, reused while what it was built from is unchanged.

Each holds the stepped release (``scipy==1.14.1``), its companions at the same release where
they must move together (jaxlib with jax), the rest of the backend's extra and xentbench's own
dependencies as the resolver picks them against that release (numpy and scipy bounds
included: xentbench's lower bounds are dropped so an older release is not refused for them),
and this checkout installed editable without dependencies, so the worker is this code. A
release that fails to build leaves its log and a record (``<name>.failed.json``), not a
half-built environment; the search that asked goes on without it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CACHE = Path(".nox", "versions")
# Dependencies whose bounds the resolver sets from the stepped release, not from xentbench.
UNBOUNDED = {"numpy", "scipy"}
# Requirements a release needs at import but does not declare, so no resolver can see them:
# (package, versions of it in the environment, what to install then, the evidence).
UNDECLARED = (
    (
        "numpy",
        "<2",
        "pyarrow<26",
        "pyarrow 26 imports only with NumPy >= 2 (apache/arrow pull 50769), undeclared",
    ),
)
# Bounds a pinned release needs but does not declare, given to the resolver with it:
# (pinned package, its releases concerned, the bound, the evidence).
UNDECLARED_BOUNDS = (
    (
        "jaxlib",
        "<0.4.26",
        "numpy<2",
        "jaxlib 0.4.26's changelog: 'JAX now supports NumPy 2.0'; older wheels import NumPy 1 "
        "only, and declare no upper bound",
    ),
    (
        "jax",
        "<0.4.24",
        "scipy<1.13",
        "jax before 0.4.24 wraps scipy.linalg.tril and triu at import (its 0.4.24 changelog "
        "removes them); SciPy 1.13 removed those functions",
    ),
)
# What a built environment must import (the worker and the store), checked before it counts.
SMOKE = "import xentbench.suites.run.worker, xentbench.suites.store.rows"


@dataclass(frozen=True)
class Stack:
    """What a backend's version environment steps through and takes along."""

    backend: str
    packages: tuple[str, ...]  # the packages that can be stepped; the first is the default
    extra: str  # xentbench's extra holding the backend's requirements ("" for none)
    # installed at the same release as the default stepped package (jaxlib with jax, not
    # with optax: another package's release numbers say nothing of them)
    companions: tuple[str, ...] = ()
    cost: str = ""  # why it is opt-in (torch): needs an index of its own


STACKS = {
    "numpy": Stack("numpy", ("scipy", "numpy"), ""),
    "jax": Stack("jax", ("jax", "optax"), "jax", companions=("jaxlib",)),
    "onnxruntime": Stack("onnxruntime", ("onnxruntime",), "onnxruntime"),
    "tensorflow": Stack("tensorflow", ("tensorflow-cpu",), "tensorflow"),
    "torch": Stack(
        "torch",
        ("torch",),
        "torch",
        cost="PyPI's torch wheels are CUDA builds that pull 2.2-2.5 GB of nvidia-* and triton "
        "wheels per release; give --index https://download.pytorch.org/whl/cpu or set "
        "XENTBENCH_INDEX_TORCH to it (CPU builds, ~190 MB)",
    ),
}
# The environment variable naming a backend's own index, the default of --index for it.
INDEX_VARIABLE = "XENTBENCH_INDEX_{}"


def backend_index(backend: str) -> str:
    """The index configured for ``backend``'s stepped package (``XENTBENCH_INDEX_TORCH`` for
    torch), or "" for pip's own."""
    return os.environ.get(INDEX_VARIABLE.format(backend.upper()), "").strip()


# Runs one command, its output into an open log; returns the exit status (tests fake it).
Runner = Callable[[list[str], object], int]


def _run(command: list[str], log) -> int:
    return subprocess.run(command, stdout=log, stderr=subprocess.STDOUT).returncode


@dataclass(frozen=True)
class Env:
    """A version environment: its name, interpreter, and why it is not there (or "")."""

    name: str
    path: Path
    failure: str = ""
    log: Path | None = None

    @property
    def python(self) -> Path:
        return self.path / "bin" / "python"

    @property
    def ready(self) -> bool:
        return not self.failure


def cache_dir() -> Path:
    """``XENTBENCH_VERSIONS_DIR``, else ``.nox/versions`` under the current directory."""
    return Path(os.environ.get("XENTBENCH_VERSIONS_DIR") or DEFAULT_CACHE)


def env_name(package: str, version: str) -> str:
    return f"{canonicalize_name(package)}-{version}"


def requirements(
    stack: Stack, package: str, version: str, companions: dict[str, bool]
) -> list[str]:
    """What one environment installs: the release, its companions at the same release (where
    ``companions`` says that release exists), the backend's extra and xentbench's own
    dependencies, the stepped package's and numpy's and scipy's bounds left to the resolver."""
    pinned = {canonicalize_name(package): f"{package}=={version}"}
    for companion, released in companions.items():
        if released:
            pinned[canonicalize_name(companion)] = f"{companion}=={version}"
    wanted = list(pinned.values())
    for requirement in _project_requirements(stack.extra):
        name = canonicalize_name(requirement.name)
        if name in pinned:
            continue
        wanted.append(requirement.name if name in UNBOUNDED else _plain(requirement))
    for bounded, releases, bound, _ in UNDECLARED_BOUNDS:
        pin = pinned.get(canonicalize_name(bounded))
        if pin and pin.split("==")[1] in SpecifierSet(releases):
            wanted.append(bound)
    return wanted


def _plain(requirement: Requirement) -> str:
    return f"{requirement.name}{requirement.specifier}"


def _project_requirements(extra: str) -> list[Requirement]:
    """xentbench's core requirements, and those of ``extra`` (read from its own metadata)."""
    found = []
    for text in metadata.requires("xentbench") or []:
        requirement = Requirement(text)
        marker = requirement.marker
        core = marker is None or marker.evaluate({"extra": ""})
        if core or (extra and marker.evaluate({"extra": extra})):
            found.append(requirement)
    return found


def uv_command() -> str:
    """The uv executable: beside this interpreter, else on PATH."""
    beside = Path(sys.executable).with_name("uv")
    found = str(beside) if beside.exists() else shutil.which("uv")
    if not found:
        raise FileNotFoundError("uv is needed to build version environments: pip install uv")
    return found


def ensure(
    stack: Stack,
    package: str,
    version: str,
    companions: dict[str, bool],
    *,
    cache: Path | None = None,
    index: str = "",
    package_index: str = "",
    runner: Runner = _run,
    uv: str | None = None,
) -> Env:
    """The environment of ``package==version``, built now if missing or stale, from ``index``
    (pip's) with ``package_index`` (``--index``) first; a failed build is recorded (and not
    tried again until pruned) and returned with its reason."""
    cache = cache or cache_dir()
    name = env_name(package, version)
    path = cache / name
    wanted = requirements(stack, package, version, companions)
    stamp = {
        "requirements": wanted,
        "python": sys.version.split()[0],
        "index": index,
        "package_index": package_index,
        "undeclared": [list(rule[:3]) for rule in UNDECLARED],
    }
    record = cache / f"{name}.failed.json"
    if record.exists():
        failed = json.loads(record.read_text())
        return Env(name, path, failed["failure"], Path(failed["log"]))
    marker = path / "xentbench-env.json"
    if marker.exists() and json.loads(marker.read_text()) == stamp:
        return Env(name, path)
    return _build(name, path, stamp, cache, runner, uv or uv_command())


def _build(name, path: Path, stamp: dict, cache: Path, runner: Runner, uv: str) -> Env:
    cache.mkdir(parents=True, exist_ok=True)
    log_path = cache / f"{name}.log"
    shutil.rmtree(path, ignore_errors=True)
    python = str(path / "bin" / "python")
    # The stepped package's index (--index) comes first: uv prefers an extra index to the
    # default one for a package both hold, and pip's index serves the rest.
    index = ["--index-url", stamp["index"]] if stamp["index"] else []
    if stamp.get("package_index") and stamp["package_index"] != stamp["index"]:
        index += ["--extra-index-url", stamp["package_index"]]
    steps = [
        [uv, "venv", "--quiet", "--python", sys.executable, str(path)],
        [uv, "pip", "install", "--python", python, *index, *stamp["requirements"]],
        [uv, "pip", "install", "--python", python, "--no-deps", "-e", str(REPO_ROOT)],
    ]
    with log_path.open("w") as log:
        failure = _steps(steps, python, uv, log, log_path, runner)
        if not failure:
            (path / "xentbench-env.json").write_text(json.dumps(stamp))
            return Env(name, path, log=log_path)
    shutil.rmtree(path, ignore_errors=True)  # no half-built environment is kept
    record = {"failure": failure, "log": str(log_path), "requirements": stamp["requirements"]}
    (cache / f"{name}.failed.json").write_text(json.dumps(record, indent=1))
    return Env(name, path, failure, log_path)


def _steps(steps, python: str, uv: str, log, log_path: Path, runner: Runner) -> str:
    """Run the build steps, then the undeclared requirements' fixes and the smoke import;
    "" when all went well, else what failed."""

    def step(command: list[str]) -> int:
        log.write(f"$ {' '.join(command)}\n")
        log.flush()
        code = runner(command, log)
        log.flush()  # its last line is the reason a failure names
        return code

    for command in steps:
        code = step(command)
        if code:
            return f"`{' '.join(command[:3])} ...` exited {code}: {_last_line(log_path)}"
    for package, versions, needed, _ in UNDECLARED:
        probe = (
            "import sys; from importlib.metadata import version; from packaging.specifiers "
            f"import SpecifierSet; sys.exit(version({package!r}) in SpecifierSet({versions!r}))"
        )
        if step([python, "-c", probe]) and step([uv, "pip", "install", "--python", python, needed]):
            return f"installing {needed} failed: {_last_line(log_path)}"
    if step([python, "-c", SMOKE]):
        return f"the environment does not import xentbench: {_last_line(log_path)}"
    return ""


def _last_line(log_path: Path) -> str:
    """The last meaningful line of a build log (uv's reason for refusing)."""
    lines = [line.strip() for line in log_path.read_text(errors="replace").splitlines()]
    lines = [line for line in lines if line and not line.startswith("$ ")]
    return re.sub(r"\s+", " ", lines[-1])[:300] if lines else "no output"


def disk_usage(path: Path) -> tuple[int, int]:
    """(bytes in ``path``, bytes only it holds): uv hard-links files from its cache, so a file
    shared with the cache or another environment costs no further disk."""
    total = own = 0
    for root, _, files in os.walk(path):
        for file in files:
            with contextlib.suppress(OSError):
                info = os.lstat(os.path.join(root, file))
                total += info.st_blocks * 512
                own += info.st_blocks * 512 if info.st_nlink == 1 else 0
    return total, own


def cached(cache: Path | None = None) -> list[tuple[str, str]]:
    """The cache's entries as (name, state): ready environments and recorded failures."""
    cache = cache or cache_dir()
    if not cache.is_dir():
        return []
    entries = [(p.name, "ready") for p in cache.iterdir() if (p / "xentbench-env.json").exists()]
    entries += [
        (p.name.removesuffix(".failed.json"), "failed") for p in cache.glob("*.failed.json")
    ]
    return sorted(entries)


def prune(names: list[str], cache: Path | None = None) -> list[str]:
    """Delete these environments with their logs and failure records; returns what went."""
    cache = cache or cache_dir()
    gone = []
    for name in names:
        paths = [cache / name, cache / f"{name}.log", cache / f"{name}.failed.json"]
        if any(p.exists() for p in paths):
            shutil.rmtree(cache / name, ignore_errors=True)
            for extra in paths[1:]:
                extra.unlink(missing_ok=True)
            gone.append(name)
    return gone
