"""The floors of the house, kept: no import cycle, the layer contract, short modules, every
package saying which room it is, and pyproject's package list naming every package.

The checks read the source (``structure_helpers``): a broken import graph fails here with the
offending import named, not with an ImportError somewhere else. The tests at the end run each
check on a small synthetic tree, to show it fails.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from structure_helpers import (
    FOLDERS,
    Contract,
    cycle_text,
    cycles,
    dangling_targets,
    import_graph,
    layer_violations,
    long_modules,
    modules,
    package_list_mismatch,
    undocumented_packages,
)

ROOT = Path(__file__).resolve().parents[1]
MAX_LINES = 400
# The rooms of xentbench.suites, floor by floor, lowest first: a room imports rooms on lower
# floors and itself, never one on its own floor or above (and xentbench.reference and
# xentbench.adapters, below every room).
FLOORS: tuple[tuple[str, ...], ...] = (
    ("catalog", "judge", "store"),  # what is evaluated, how a result is judged, where rows live
    ("accuracy", "timing", "hunt"),  # the suites: inputs through implementations, into rows
    ("run", "findings"),  # worker processes driving the suites; findings of stored rows
    ("report", "versions"),  # reports and compare; runs across releases (bisect, matrix)
    ("cli",),  # the command line
)
# What the packages outside the rooms may import of the project, besides themselves (the
# suites package itself: nothing, it is its docstring).
OUTSIDE_ROOMS = {
    "xentbench.reference": (),
    "xentbench.adapters": ("xentbench.reference",),
    "xentbench.suites": (),
}
# Cycles known and on their way out, each listed exactly; the test fails once one is gone, so
# that this list only shrinks.
KNOWN_CYCLES: tuple[frozenset[str], ...] = ()
CONTRACT = Contract(FLOORS, OUTSIDE_ROOMS)


# ---------------------------------------------------------------- the repository


def test_no_import_cycle_among_the_project_modules():
    graph = import_graph(ROOT)
    found = [frozenset(component) for component in cycles(graph)]
    unknown = [sorted(c) for c in found if c not in KNOWN_CYCLES]
    assert not unknown, "import cycles:\n" + "\n".join(cycle_text(c, graph) for c in unknown)
    gone = [sorted(c) for c in KNOWN_CYCLES if c not in found]
    assert not gone, f"no longer a cycle, remove it from KNOWN_CYCLES: {gone}"


def test_imports_keep_the_floors():
    problems = layer_violations(import_graph(ROOT), modules(ROOT), CONTRACT)
    assert not problems, "\n".join(problems)


def test_no_module_is_longer_than_400_lines():
    too_long = long_modules(ROOT, MAX_LINES)
    assert not too_long, "split along a real seam:\n" + "\n".join(too_long)


def test_every_package_opens_with_a_one_line_docstring_naming_its_room():
    undocumented = undocumented_packages(ROOT)
    assert not undocumented, "no one-line docstring:\n" + "\n".join(undocumented)


def test_pyproject_lists_exactly_the_packages_of_the_tree():
    missing, extra = package_list_mismatch(ROOT)
    assert not missing, f"packages not in pyproject.toml's [tool.setuptools] packages: {missing}"
    assert not extra, f"pyproject.toml lists packages that are not in the tree: {extra}"


def test_console_script_entry_points_and_worker_start_up_name_real_modules():
    dangling = dangling_targets(ROOT)
    assert not dangling, f"named, but no such module or name: {dangling}"
    script = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    module = modules(ROOT)[script["xentbench"].split(":")[0]]
    assert not module.is_package or (module.path.parent / "__main__.py").is_file()


# ---------------------------------------------------------------- the checks can fail


def _tree(root: Path, files: dict[str, str]) -> Path:
    """A tiny repository: the three folders, each a documented package, and ``files``."""
    packages = '["xentbench.reference", "xentbench.adapters", "xentbench.suites"]'
    folders = ", ".join(f'"{package}" = "{folder}"' for folder, package in FOLDERS.items())
    (root / "pyproject.toml").write_text(
        '[project]\nname = "x"\n[project.scripts]\nx = "xentbench.suites.cli:main"\n'
        f"[tool.setuptools]\npackage-dir = {{ {folders} }}\npackages = {packages}\n"
    )
    for folder in FOLDERS:
        files.setdefault(f"{folder}/__init__.py", '"""A room."""\n')
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_a_cycle_through_a_function_level_import_is_found(tmp_path):
    root = _tree(
        tmp_path,
        {
            "reference/a.py": "from xentbench.reference.b import f\n",
            "reference/b.py": "def f():\n    from xentbench.reference import a\n",
            "reference/c.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
            "    from xentbench.reference import a\nfrom xentbench.reference.b import f\n",
        },
    )
    assert cycles(import_graph(root)) == [["xentbench.reference.a", "xentbench.reference.b"]]


def test_a_module_reading_its_own_package_back_is_a_cycle(tmp_path):
    root = _tree(
        tmp_path,
        {
            "reference/__init__.py": '"""Truth."""\nfrom xentbench.reference.evaluate import e\n',
            "reference/evaluate.py": "from .dd import add\ne = 1\n",
            "reference/dd.py": "from xentbench.reference import rounding\nadd = 1\n",
            "reference/rounding.py": "",
        },
    )
    names = ["xentbench.reference", "xentbench.reference.dd", "xentbench.reference.evaluate"]
    assert cycles(import_graph(root)) == [names]
    (root / "reference/dd.py").write_text("import xentbench.reference.rounding as r\nadd = 1\n")
    assert cycles(import_graph(root)) == []  # the module by its path: not through the package


def test_an_import_that_climbs_a_floor_is_named(tmp_path):
    root = _tree(
        tmp_path,
        {
            "suites/store/__init__.py": '"""Rows."""\n',
            "suites/store/rows.py": "import numpy\n\nfrom xentbench.suites.cli.usage import E\n",
            "suites/cli/__init__.py": '"""Top."""\n',
            "suites/cli/usage.py": "from xentbench.suites.store import rows\nE = 1\n",
            "suites/loose.py": "",
            "suites/attic/__init__.py": '"""Unplaced."""\n',
            "adapters/base.py": "from xentbench.suites.store.rows import E\n",
        },
    )
    problems = layer_violations(import_graph(root), modules(root), CONTRACT)
    assert problems == [
        "xentbench.adapters.base imports xentbench.suites.store.rows (line 1): "
        "xentbench.adapters may not import xentbench.suites.store",
        "xentbench.suites.attic is on no floor: add it to FLOORS",
        "xentbench.suites.loose lies loose in xentbench.suites: move it into a room",
        "xentbench.suites.store.rows imports xentbench.suites.cli.usage (line 3): "
        "xentbench.suites.store may not import xentbench.suites.cli",
    ]


def test_long_modules_undocumented_packages_and_missing_packages_are_found(tmp_path):
    root = _tree(
        tmp_path,
        {
            "suites/long.py": "x = 1\n" * (MAX_LINES + 1),
            "suites/run/__init__.py": '"""The run machinery, said over\ntwo lines."""\n',
            "suites/cli/__init__.py": "",
            "adapters/__init__.py": '"""Adapters."""\n',
        },
    )
    assert long_modules(root, MAX_LINES) == [f"suites/long.py: {MAX_LINES + 1} lines"]
    assert len(undocumented_packages(root)) == 2
    assert package_list_mismatch(root) == ({"xentbench.suites.run", "xentbench.suites.cli"}, set())


def test_a_start_up_string_or_script_naming_nothing_is_found(tmp_path):
    worker = 'COMMAND = ["-c", "from xentbench.suites.run.worker import main; main()"]\n'
    root = _tree(
        tmp_path,
        {"suites/run/runner.py": worker, "suites/run/worker.py": "def mane():\n    pass\n"},
    )
    expected = ["xentbench.suites.cli:main", "xentbench.suites.run.worker:main"]
    assert dangling_targets(root) == expected


def test_the_floors_name_each_room_once():
    rooms = [room for floor in FLOORS for room in floor]
    assert len(rooms) == len(set(rooms))
