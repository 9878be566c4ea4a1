"""Registering backends exactly as a third-party package does: an entry point in the group
``xentbench.adapters``, declared in a ``*.dist-info`` on ``sys.path``.

Worker processes inherit ``sys.path`` (``suites.run.runner``), so a backend registered here is
seen by ``xentbench run``, ``check`` and ``hunt`` like an installed plugin.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from xentbench.adapters import registry

FLAWED_DIR = Path(__file__).resolve().parent / "flawed"


def register_plugins(
    site: Path, monkeypatch: pytest.MonkeyPatch, entry_points: dict[str, str], dist: str
) -> None:
    """Write a distribution ``dist`` whose entry points are ``{backend: "module:Class"}``
    into ``site`` and put ``site`` on ``sys.path`` (the modules must be importable)."""
    info = site / f"{dist.replace('-', '_')}-0.0.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.0\n")
    lines = "".join(f"{name} = {target}\n" for name, target in entry_points.items())
    (info / "entry_points.txt").write_text(f"[xentbench.adapters]\n{lines}")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setattr(registry, "_loaded", {})


def flawed_entry_points() -> dict[str, str]:
    """Every backend of ``tests/flawed``: each module lists its own in ``ENTRY_POINTS``."""
    import importlib

    found: dict[str, str] = {}
    for path in sorted(FLAWED_DIR.glob("*.py")):
        if path.name.startswith("_"):
            continue
        module = importlib.import_module(f"flawed.{path.stem}")
        found.update(getattr(module, "ENTRY_POINTS", {}))
    return found
