"""Test-session options: which backends to test (``--backend``), the header, slow tests.

As in data-apis/array-api-tests, the backends under test are chosen on the command line and
printed in the pytest header with their versions, or the reason they cannot be used. When the
run includes the conformance tests, the header loads each selected backend (importing its
framework, seconds each) and the registry caches the adapters for collection.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from xentbench.adapters import registry

CONFORMANCE_TESTS = Path(__file__).resolve().with_name("test_conformance.py")


def pytest_addoption(parser: pytest.Parser) -> None:
    """``--backend NAME`` (repeatable) and ``--run-slow``."""
    group = parser.getgroup("xentbench")
    group.addoption(
        "--backend",
        action="append",
        default=[],
        metavar="NAME",
        choices=registry.backend_names(),
        help="backend to run the conformance tests against (repeatable; default: every "
        f"registered backend: {', '.join(registry.backend_names())})",
    )
    group.addoption(
        "--run-slow",
        action="store_true",
        help="also run tests marked slow (they are skipped unless this or -m names 'slow')",
    )


def selected_backends(config: pytest.Config) -> tuple[str, ...]:
    """The backends chosen with ``--backend``, in order without repeats, or every registered one."""
    return tuple(dict.fromkeys(config.getoption("backend"))) or registry.backend_names()


def collects_conformance(config: pytest.Config) -> bool:
    """Whether this run's paths include the conformance tests (the only ones needing backends)."""
    paths = (config.invocation_params.dir / arg.split("::", 1)[0] for arg in config.args)
    return any(CONFORMANCE_TESTS.is_relative_to(path.resolve()) for path in paths)


def pytest_report_header(config: pytest.Config) -> list[str]:
    """One line per registered backend: version and devices, or why it is not tested."""
    names = registry.backend_names()
    if not collects_conformance(config):
        return [f"xentbench backends: {', '.join(names)} (not loaded: no conformance tests run)"]
    selected = selected_backends(config)
    width = max(map(len, names), default=0)
    lines = ["xentbench backends (choose with --backend NAME):"]
    for name in names:
        described = _describe(name) if name in selected else "not selected (--backend)"
        lines.append(f"  {name:<{width}}  {described}")
    return lines


def _describe(name: str) -> str:
    status = registry.status(name)
    if status.adapter is None:
        return status.summary
    try:
        version = status.adapter.version()
    except Exception as exc:  # a broken adapter must not break the header; its test says why
        version = f"version() raised {type(exc).__name__}: {exc}"
    return f"{version} | devices: {', '.join(status.adapter.devices())} | {status.source}"


@pytest.hookimpl(trylast=True)  # after -k and -m have deselected
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip tests marked ``slow`` unless ``--run-slow`` is given or ``-m`` mentions ``slow``;
    on an xdist worker, name each test's ``xdist_group`` in its id."""
    _name_xdist_groups(config, items)
    if config.getoption("run_slow") or "slow" in (config.getoption("markexpr") or ""):
        return
    skip_slow = pytest.mark.skip(reason="slow: run with --run-slow or -m slow")
    for item in items:
        if item.get_closest_marker("slow") is not None:
            item.add_marker(skip_slow)


def _name_xdist_groups(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``--dist loadgroup`` sends the tests whose ids end in ``@<group>`` to one worker;
    pytest-xdist appends the suffix to ``item._nodeid``, which pytest 9.2 no longer reads (its
    ids live in ``item._id``), so the groups would silently spread over both workers."""
    if not getattr(config.option, "loadgroup", False):  # set on xdist workers only
        return
    try:
        from _pytest.nodeid import NodeId  # pytest >= 9.2; before, xdist's own suffix works
    except ImportError:
        return
    for item in items:
        groups = {
            str(mark.args[0] if mark.args else mark.kwargs.get("name", "default"))
            for mark in item.iter_markers("xdist_group")
        }
        if groups and "@" not in item.nodeid:
            item._id = NodeId.parse(f"{item.nodeid}@{'_'.join(sorted(groups))}")
