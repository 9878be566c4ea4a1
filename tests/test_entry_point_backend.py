"""A backend registered only through an entry point is found, loaded and reported as such."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from xentbench.adapters import registry
from xentbench.adapters.base import Call

DISTRIBUTION = "xentbench-fake-backend"
MISSING_FRAMEWORK = "xentbench_framework_that_is_not_installed"

ADAPTER_SOURCE = """
import numpy as np

from xentbench.adapters.base import Adapter, Implementation, PreparedCall


class FakeAdapter(Adapter):
    name = "fake"

    def version(self):
        return "fake 1.0"

    def implementations(self):
        return (Implementation("fake:double", "softmax", ("float64",)),)

    def prepare(self, call, logits, labels):
        return PreparedCall(run=lambda: 2 * logits, to_numpy=np.asarray)
"""

BROKEN_SOURCE = f"""
import {MISSING_FRAMEWORK}  # the framework this backend wraps is not installed
"""


@pytest.fixture
def fake_distribution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """Modules and a ``*.dist-info`` on sys.path registering backends in ``xentbench.adapters``."""
    suffix = tmp_path.name.replace("-", "_")
    modules = {"fake": f"fake_adapter_{suffix}", "broken": f"broken_adapter_{suffix}"}
    (tmp_path / f"{modules['fake']}.py").write_text(ADAPTER_SOURCE)
    (tmp_path / f"{modules['broken']}.py").write_text(BROKEN_SOURCE)
    dist_info = tmp_path / f"{DISTRIBUTION.replace('-', '_')}-1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {DISTRIBUTION}\nVersion: 1.0\n"
    )
    (dist_info / "entry_points.txt").write_text(
        textwrap.dedent(f"""\
            [xentbench.adapters]
            fake = {modules["fake"]}:FakeAdapter
            broken = {modules["broken"]}:BrokenAdapter
            numpy = {modules["fake"]}:FakeAdapter
            """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry, "_loaded", {})
    yield modules
    for module in modules.values():
        sys.modules.pop(module, None)


def test_entry_point_backend_is_registered_with_its_distribution(fake_distribution):
    assert "fake" in registry.backend_names()
    target, source = registry.registered()["fake"]
    assert target == f"{fake_distribution['fake']}:FakeAdapter"
    assert source == f"entry point ({DISTRIBUTION})"


def test_entry_point_backend_loads_and_runs(fake_distribution):
    adapter = registry.load("fake")
    assert type(adapter).__module__ == fake_distribution["fake"]
    assert registry.load("fake") is adapter
    implementation = adapter.implementation("fake:double")
    logits = np.array([[1.0, -2.0, 3.0]])
    prepared = adapter.prepare(Call(implementation, "float64"), logits, None)
    np.testing.assert_array_equal(prepared(), [[2.0, -4.0, 6.0]])


def test_entry_point_backend_status_is_available(fake_distribution):
    status = registry.status("fake")
    assert status.available
    assert status.reason is None
    assert status.adapter.version() == "fake 1.0"


def test_backend_with_missing_framework_is_unavailable_with_reason(fake_distribution):
    status = registry.status("broken")
    assert not status.available
    assert MISSING_FRAMEWORK in status.reason
    assert "ModuleNotFoundError" in status.reason
    with pytest.raises(registry.BackendUnavailable, match=MISSING_FRAMEWORK):
        registry.load("broken")


def test_discover_reports_every_backend_without_raising(fake_distribution, monkeypatch):
    monkeypatch.setattr(registry, "BUILTIN_ADAPTERS", {})
    statuses = {status.name: status for status in registry.discover()}
    assert statuses["fake"].available
    assert not statuses["broken"].available


def test_entry_point_cannot_shadow_a_builtin_backend(fake_distribution):
    assert registry.registered()["numpy"] == (registry.BUILTIN_ADAPTERS["numpy"], "builtin")
