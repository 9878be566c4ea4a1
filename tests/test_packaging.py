"""The wheel installs one import package, ``xentbench``, beside any other distribution.

The repository's folders ``reference/``, ``adapters/`` and ``suites/`` install as
``xentbench.reference``, ``xentbench.adapters`` and ``xentbench.suites`` (pyproject.toml's
``package-dir``); a package list that misses a subpackage, or data the code reads, shows here.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("reference", "adapters", "suites")
DATA_SUFFIXES = (".py", ".toml", ".npy")


def tracked(*paths: str) -> list[str]:
    """The files git tracks under ``paths``."""
    command = ["git", "ls-files", *paths]
    return subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project's wheel, built without build isolation from a copy of the files it is made
    of (a build in the tree would leave a build/ folder that later builds reuse)."""
    source, out = tmp_path_factory.mktemp("source"), tmp_path_factory.mktemp("wheel")
    for name in tracked("pyproject.toml", "README.md", *FOLDERS):
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ROOT / name, source / name)
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"]
    subprocess.run([*command, "-q", "-w", str(out), str(source)], check=True, timeout=300)
    (built,) = out.glob("xentbench-*.whl")
    return built


def tracked_files() -> set[str]:
    """The package files in the repository, as their paths inside the wheel."""
    return {f"xentbench/{name}" for name in tracked(*FOLDERS) if name.endswith(DATA_SUFFIXES)}


def test_wheel_has_xentbench_as_its_only_top_level_package(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {
        name.split("/", 1)[0]
        for name in names
        if not name.split("/")[0].endswith((".dist-info", ".data"))
    }
    assert top_level == {"xentbench"}


def test_wheel_carries_every_module_and_data_file_of_the_tree(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = sorted(tracked_files() - names)
    assert not missing, f"not in the wheel (pyproject.toml's packages or package-data): {missing}"


def test_wheel_installs_beside_a_distribution_that_owns_a_top_level_adapters(wheel, tmp_path):
    site = tmp_path / "site"
    (site / "adapters").mkdir(parents=True)  # another distribution's top-level `adapters`
    (site / "adapters" / "__init__.py").write_text("OWNER = 'another distribution'\n")
    command = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site)]
    subprocess.run([*command, str(wheel)], check=True, timeout=300)
    # The check runs in a folder holding a user's own `adapters/` too, with the editable
    # install's finder removed so the wheel's copy is the one imported.
    workdir = tmp_path / "work"
    (workdir / "adapters").mkdir(parents=True)
    (workdir / "adapters" / "__init__.py").write_text("OWNER = 'the user'\n")
    script = (
        "import sys; sys.meta_path[:] = [f for f in sys.meta_path if 'editable' not in repr(f)]; "
        f"sys.path.insert(1, {str(site)!r}); "
        "import adapters; from xentbench.adapters import registry; "
        "print(adapters.OWNER); print(registry.__file__); "
        "print(sorted(registry.backend_names()))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=workdir, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    owner, registry_file, backends = result.stdout.splitlines()
    assert owner == "the user"  # the working directory comes first, as Python puts it
    assert Path(registry_file).is_relative_to(site)
    assert "numpy" in backends
