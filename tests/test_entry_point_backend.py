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
# A framework the distribution offers as an optional extra (its METADATA says so), not installed.
OPTIONAL_FRAMEWORK = "xentbench_optional_framework"
METADATA = f"""\
Metadata-Version: 2.1
Name: {DISTRIBUTION}
Version: 1.0
Provides-Extra: docs
Provides-Extra: optional
Provides-Extra: everything
Requires-Dist: numpy>=1.26
Requires-Dist: sphinx; extra == "docs"
Requires-Dist: xentbench-optional-framework>=2.0; extra == "everything"
Requires-Dist: xentbench-optional-framework>=2.0; python_version >= "3.8" and extra == "optional"
"""

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

OPTIONAL_SOURCE = f"""
import {OPTIONAL_FRAMEWORK}  # the framework of an extra of this distribution, not installed
"""


@pytest.fixture
def fake_distribution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """Modules and a ``*.dist-info`` on sys.path registering backends in ``xentbench.adapters``."""
    suffix = tmp_path.name.replace("-", "_")
    sources = {"fake": ADAPTER_SOURCE, "broken": BROKEN_SOURCE, "optional": OPTIONAL_SOURCE}
    modules = {kind: f"{kind}_adapter_{suffix}" for kind in sources}
    for kind, source in sources.items():
        (tmp_path / f"{modules[kind]}.py").write_text(source)
    dist_info = tmp_path / f"{DISTRIBUTION.replace('-', '_')}-1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(METADATA)
    (dist_info / "entry_points.txt").write_text(
        textwrap.dedent(f"""\
            [xentbench.adapters]
            fake = {modules["fake"]}:FakeAdapter
            broken = {modules["broken"]}:BrokenAdapter
            optional = {modules["optional"]}:OptionalAdapter
            everything = {modules["broken"]}:BrokenAdapter
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


def test_backend_missing_a_module_named_unlike_any_distribution_reads_its_own_extra(
    fake_distribution,
):
    # As paddle (the module) from paddlepaddle: no extra names the module, one names the backend.
    status = registry.status("everything")
    assert MISSING_FRAMEWORK in status.reason
    assert status.summary == f"not installed: pip install '{DISTRIBUTION}[everything]'"


def test_discover_reports_every_backend_without_raising(fake_distribution, monkeypatch):
    monkeypatch.setattr(registry, "BUILTIN_ADAPTERS", {})
    statuses = {status.name: status for status in registry.discover()}
    assert statuses["fake"].available
    assert not statuses["broken"].available


def test_entry_point_cannot_shadow_a_builtin_backend(fake_distribution):
    assert registry.registered()["numpy"] == (registry.BUILTIN_ADAPTERS["numpy"], "builtin")


def test_backend_whose_framework_is_an_extra_of_its_distribution_reads_not_installed(
    fake_distribution,
):
    status = registry.status("optional")
    assert not status.available
    assert OPTIONAL_FRAMEWORK in status.reason  # the reason stays as Python gave it
    # Two extras provide the module; the one named like the backend is the one to install.
    assert status.install == f"pip install '{DISTRIBUTION}[optional]'"
    assert status.summary == f"not installed: pip install '{DISTRIBUTION}[optional]'"
    with pytest.raises(registry.BackendUnavailable) as raised:
        registry.load("optional")
    assert raised.value.summary == status.summary


def test_missing_module_that_no_extra_provides_stays_unavailable_with_its_reason(
    fake_distribution,
):
    status = registry.status("broken")
    assert status.install is None
    assert status.summary == f"unavailable: {status.reason}"
    assert registry.status("fake").summary == "available"


def test_the_extra_is_read_from_requires_dist_markers(fake_distribution):
    from importlib.metadata import distribution

    dist = distribution(DISTRIBUTION)
    assert registry.extra_providing(dist, OPTIONAL_FRAMEWORK) == "everything"  # first declared
    assert registry.extra_providing(dist, OPTIONAL_FRAMEWORK, prefer="optional") == "optional"
    assert registry.extra_providing(dist, "sphinx") == "docs"
    assert registry.extra_providing(dist, "numpy") is None  # required, not an extra
    assert registry.extra_providing(dist, MISSING_FRAMEWORK) is None


def test_list_shows_a_missing_extra_as_not_installed_with_its_install_command(
    fake_distribution, monkeypatch
):
    import io

    from rich.console import Console

    from xentbench.suites.cli.listing import backend_listing, render_listing

    monkeypatch.setattr(registry, "BUILTIN_ADAPTERS", {})
    entries = {entry["backend"]: entry for entry in backend_listing()}
    assert entries["optional"]["install"] == f"pip install '{DISTRIBUTION}[optional]'"
    out = io.StringIO()
    Console(file=out, width=300).print(render_listing(list(entries.values())))
    text = out.getvalue()
    assert f"optional not installed: pip install '{DISTRIBUTION}[optional]'" in text
    assert f"broken unavailable: ModuleNotFoundError: No module named '{MISSING_FRAMEWORK}'" in text
    assert "optional unavailable" not in text


def test_the_shipped_cut_cross_entropy_plugin_reads_not_installed_without_its_extra():
    import importlib.util

    if importlib.util.find_spec("cut_cross_entropy") is not None:
        pytest.skip("cut_cross_entropy is installed here")
    status = registry.status("cut_cross_entropy")
    assert status.summary == "not installed: pip install 'xentbench[cut-cross-entropy]'"
