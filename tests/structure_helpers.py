"""Reading the project's structure from its source, for ``test_structure``: the modules, the
import graph and its cycles, the rooms and their floors, long modules, package docstrings,
pyproject's package list and the module names that entry points and start-up strings give.

Pure Python over the source (``ast``, ``tomllib``): nothing of xentbench is imported. Each
check is a function of a repository root, so a test can run it on a small synthetic tree too.
"""

from __future__ import annotations

import ast
import re
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

FOLDERS = {"reference": "xentbench.reference", "adapters": "xentbench.adapters"}
FOLDERS["suites"] = "xentbench.suites"
BELOW_EVERY_ROOM = ("xentbench.reference", "xentbench.adapters")


@dataclass(frozen=True)
class Module:
    name: str
    path: Path
    is_package: bool


@dataclass(frozen=True)
class Import:
    """One import of a project module: who, what, where (the line of the statement)."""

    source: str
    target: str
    line: int

    def __str__(self) -> str:
        return f"{self.source} imports {self.target} (line {self.line})"


def modules(root: Path) -> dict[str, Module]:
    """Every module of the three folders by its ``xentbench.`` name (a package by its own)."""
    found = {}
    for folder, package in FOLDERS.items():
        for path in sorted((root / folder).rglob("*.py")):
            parts = list(path.relative_to(root / folder).with_suffix("").parts)
            is_package = parts[-1] == "__init__"
            name = ".".join([package, *(parts[:-1] if is_package else parts)])
            found[name] = Module(name, path, is_package)
    return found


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return getattr(test, "id", getattr(test, "attr", None)) == "TYPE_CHECKING"


def _statements(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement, in functions and classes too (a function-level import is how a
    cycle hides), except those under ``if TYPE_CHECKING:``."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.If) and _type_checking(node):
            for other in node.orelse:
                yield from _statements(ast.Module(body=[other], type_ignores=[]))
        else:
            yield from _statements(node)


def _from_targets(module: Module, node: ast.ImportFrom, table: dict[str, Module]) -> set[str]:
    """``from P import n``: P.n where that is a module, and P itself where n is a name of P's
    or P is a package (the statement reads the package's namespace, its ``__init__``)."""
    if node.level:
        base = module.name.split(".")
        base = base[: len(base) - node.level + (1 if module.is_package else 0)]
        package = ".".join(base + ([node.module] if node.module else []))
    else:
        package = node.module or ""
    targets = {f"{package}.{alias.name}" for alias in node.names} & table.keys()
    if package in table and (len(targets) < len(node.names) or table[package].is_package):
        targets.add(package)
    return targets


def imports(module: Module, table: dict[str, Module]) -> list[Import]:
    """The project modules ``module`` imports (``import a.b.c`` names a.b.c; the parent packages
    Python runs first are not counted: any import runs them)."""
    found = []
    for node in _statements(ast.parse(module.path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = {alias.name for alias in node.names} & table.keys()
        else:
            targets = _from_targets(module, node, table)
        found += [Import(module.name, target, node.lineno) for target in sorted(targets)]
    return [found_import for found_import in found if found_import.target != module.name]


def import_graph(root: Path) -> dict[str, list[Import]]:
    table = modules(root)
    return {name: imports(module, table) for name, module in table.items()}


def cycles(graph: dict[str, list[Import]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(name: str) -> None:
        index[name] = low[name] = len(index)
        stack.append(name)
        for target in {edge.target for edge in graph[name]}:
            if target not in index:
                visit(target)
                low[name] = min(low[name], low[target])
            elif target in stack:
                low[name] = min(low[name], index[target])
        if low[name] == index[name]:
            component = [stack.pop()]
            while component[-1] != name:
                component.append(stack.pop())
            if len(component) > 1:
                found.append(sorted(component))

    for name in sorted(graph):
        if name not in index:
            visit(name)
    return sorted(found)


def cycle_text(component: list[str], graph: dict[str, list[Import]]) -> str:
    inside = [str(edge) for name in component for edge in graph[name] if edge.target in component]
    return " <-> ".join(component) + ":\n    " + "\n    ".join(inside)


def room_of(name: str) -> str:
    """``xentbench.suites.<room>`` for a module of a room, else the package it belongs to."""
    parts = name.split(".")
    return ".".join(parts[:3]) if parts[1] == "suites" and len(parts) > 2 else ".".join(parts[:2])


@dataclass(frozen=True)
class Contract:
    """The floors of the rooms of xentbench.suites, lowest first (a room imports rooms on lower
    floors and itself, and the packages below every room), and what each package outside the
    rooms may import of the project besides itself."""

    floors: tuple[tuple[str, ...], ...]
    outside_rooms: dict[str, tuple[str, ...]]

    def floor(self, room: str) -> int | None:
        short = room.removeprefix("xentbench.suites.")
        return next((n for n, rooms in enumerate(self.floors) if short in rooms), None)

    def allows(self, source_room: str, target_room: str) -> bool:
        if source_room == target_room:
            return True
        if source_room in self.outside_rooms:
            return target_room in self.outside_rooms[source_room]
        if target_room in BELOW_EVERY_ROOM:
            return True
        source, target = self.floor(source_room), self.floor(target_room)
        return source is not None and target is not None and target < source


def layer_violations(
    graph: dict[str, list[Import]], table: dict[str, Module], contract: Contract
) -> list[str]:
    """Each import the contract forbids, named, and each module of suites outside a room."""
    rooms = {room for room in map(room_of, graph) if room not in contract.outside_rooms}
    problems = [
        f"{room} is on no floor: add it to FLOORS"
        if table[room].is_package
        else f"{room} lies loose in xentbench.suites: move it into a room"
        for room in rooms
        if not table[room].is_package or contract.floor(room) is None
    ]
    for name in graph:
        room = room_of(name)
        for edge in graph[name]:
            if not contract.allows(room, room_of(edge.target)):
                problems.append(f"{edge}: {room} may not import {room_of(edge.target)}")
    return sorted(problems)


def long_modules(root: Path, max_lines: int) -> list[str]:
    table = modules(root).values()
    lengths = {
        module.path: len(module.path.read_text(encoding="utf-8").splitlines()) for module in table
    }
    return [f"{path.relative_to(root)}: {n} lines" for path, n in lengths.items() if n > max_lines]


def undocumented_packages(root: Path) -> list[str]:
    """Packages whose ``__init__`` does not open with a one-line docstring (a sentence on one
    line, alone or followed by a blank line and more)."""
    problems = []
    for module in modules(root).values():
        if not module.is_package:
            continue
        docstring = ast.get_docstring(ast.parse(module.path.read_text(encoding="utf-8")))
        lines = (docstring or "").splitlines()
        one_line = bool(lines) and lines[0].endswith(".") and (len(lines) == 1 or not lines[1])
        if not one_line:
            problems.append(f"{module.path.relative_to(root)}: {lines[:2] or 'no docstring'}")
    return problems


def package_list_mismatch(root: Path) -> tuple[set[str], set[str]]:
    """(packages pyproject misses, packages it lists that are not folders with __init__.py)."""
    setuptools = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = set()
    for package, folder in setuptools["package-dir"].items():
        for init in (root / folder).rglob("__init__.py"):
            parts = init.parent.relative_to(root / folder).parts
            folders.add(".".join([package, *parts]))
    listed = set(setuptools["packages"])
    return folders - listed, listed - folders


def _defines(module: Module, name: str) -> bool:
    """Whether ``module`` binds ``name`` at its top level (def, class, assignment, import)."""
    for node in ast.parse(module.path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.FunctionDef | ast.ClassDef) and node.name == name:
            return True
        imported = node.names if isinstance(node, ast.Import | ast.ImportFrom) else []
        if any((alias.asname or alias.name) == name for alias in imported):
            return True
        targets = node.targets if isinstance(node, ast.Assign) else []
        if any(getattr(target, "id", None) == name for target in targets):
            return True
    return False


def dangling_targets(root: Path) -> list[str]:
    """Console scripts, entry points and the start-up strings of worker processes
    (``"from xentbench.x import f; f()"``) that name no module, or a name it lacks (nor a
    module of that name in it)."""
    table = modules(root)
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    named = list(project.get("scripts", {}).values())
    named += [t for group in project.get("entry-points", {}).values() for t in group.values()]
    pairs = [tuple(target.split(":")) for target in named]
    pattern = re.compile(r"from (xentbench(?:\.\w+)+) import (\w+)")
    for module in table.values():
        for node in ast.walk(ast.parse(module.path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                pairs += pattern.findall(node.value)
    return sorted(
        f"{module}:{name}"
        for module, name in set(pairs)
        if f"{module}.{name}" not in table
        and (module not in table or not _defines(table[module], name))
    )
