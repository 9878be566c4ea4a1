"""The front door stays honest: a one-screen README, a map for ARCHITECTURE, every docs page
reachable, the plugin example that the README and the docs show installs and passes, the CLI
reference generated from the parser, and no tracked file that speaks of the project's own
tracker by number or of documents outside the repository."""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from plugin_helpers import register_plugins

from xentbench.adapters import registry
from xentbench.suites.cli import main
from xentbench.suites.cli.parser import build_parser

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
README_MAX_LINES = 200
ARCHITECTURE_MAX_LINES = 150
# The word "issue" followed by a number (with an optional space and "#"), not an upstream URL's
# ".../issues/123"; and the name of a design document that lives outside the repository. Both
# are spelled here so that they do not match themselves.
TRACKER_NUMBER = re.compile(r"\bissue\s*#?\d+", re.IGNORECASE)
OUTSIDE_DOCUMENT = re.compile(re.escape("DESIGN" + ".md"))
PLUGIN_PAGES = ("README.md", "docs/adding-a-backend.md")


def tracked_text_files() -> Iterator[tuple[str, str]]:
    """(path, text) of every tracked text file; run data under reports/ is skipped, the
    READMEs there are not."""
    names = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    for name in names:
        if name.startswith("reports/") and not name.endswith("README.md"):
            continue
        path = ROOT / name
        if not path.is_file():
            continue
        data = path.read_bytes()
        if b"\0" in data:
            continue
        try:
            yield name, data.decode("utf-8")
        except UnicodeDecodeError:
            continue


def test_no_tracked_file_cites_the_tracker_by_number_or_an_outside_document():
    offending = [
        f"{name}:{number}: {line.strip()}"
        for name, text in tracked_text_files()
        for number, line in enumerate(text.splitlines(), start=1)
        if TRACKER_NUMBER.search(line) or OUTSIDE_DOCUMENT.search(line)
    ]
    assert not offending, "say what is meant instead:\n" + "\n".join(offending)


def test_the_tracker_pattern_spares_upstream_references():
    for upstream in (
        "pytorch#85791",
        "optax PR #1762",
        "https://github.com/jax-ml/jax/issues/6811",
    ):
        assert not TRACKER_NUMBER.search(upstream)
    for word, number in (("issue", " 11"), ("Issue", " #13"), ("(issue", "#14)")):
        assert TRACKER_NUMBER.search(word + number)  # joined here, so this file stays clean


def test_readme_fits_one_screen_of_a_front_door():
    lines = len((ROOT / "README.md").read_text().splitlines())
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; move detail into docs/"


def test_the_readme_result_is_the_committed_sample_summary_verbatim():
    """The README's one real result is copied from the committed run's summary.txt (rebuilt with
    ``xentbench report reports/sample``), so its figures trace to stored rows."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## One real result")[1].split("\n## ")[0]
    block = code_block(section, "text", "evaluations fail").rstrip("\n").removesuffix("\n  ...")
    summary = (ROOT / "reports" / "sample" / "summary.txt").read_text()
    assert block.strip() and block in summary


def test_architecture_is_a_map():
    lines = len((ROOT / "ARCHITECTURE.md").read_text().splitlines())
    assert lines <= ARCHITECTURE_MAX_LINES, f"ARCHITECTURE.md has {lines} lines; details: docs/"


def nav_pages() -> list[str]:
    """The pages mkdocs.yml's nav names, relative to docs/."""
    text = (ROOT / "mkdocs.yml").read_text()
    nav = text.split("\nnav:\n", 1)[1]
    return re.findall(r":\s*(\S+\.md)\s*$", nav, flags=re.MULTILINE)


def test_every_page_in_the_nav_exists():
    pages = nav_pages()
    assert pages, "mkdocs.yml has no nav"
    missing = [page for page in pages if not (DOCS / page).is_file()]
    assert not missing, f"in mkdocs.yml's nav but not in docs/: {missing}"


def test_every_docs_page_is_in_the_nav_or_linked_from_the_readme():
    readme_links = set(re.findall(r"\]\(docs/([^)#]+\.md)", (ROOT / "README.md").read_text()))
    reachable = set(nav_pages()) | readme_links
    pages = {str(path.relative_to(DOCS)) for path in DOCS.rglob("*.md")}
    assert pages - reachable == set(), f"unreachable docs pages: {sorted(pages - reachable)}"


def code_block(text: str, language: str, containing: str) -> str:
    """The first fenced ``language`` block of ``text`` that contains ``containing``."""
    blocks = re.findall(rf"^```{language}\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)
    matching = [block for block in blocks if containing in block]
    assert matching, f"no ```{language} block containing {containing!r}"
    return matching[0]


@pytest.fixture
def plugin_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A site folder for an example plugin; its modules are forgotten before and after."""
    monkeypatch.setenv("XENTBENCH_CACHE", str(tmp_path / "cache"))
    site = tmp_path / "site"
    site.mkdir()
    yield site
    for package in site.iterdir():
        forget_package(package.name)


def forget_package(package: str) -> None:
    """Drop an example's package and its modules from sys.modules (each test imports its own)."""
    for name in [name for name in sys.modules if name.split(".")[0] == package]:
        del sys.modules[name]


def install_example(page: str, site: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Write the page's plugin module where its entry point says and register the entry point
    as an installed distribution does; returns the entry points {backend: "module:Class"}."""
    text = (ROOT / page).read_text()
    source = code_block(text, "python", "from xentbench.adapters.base import")
    declaration = tomllib.loads(code_block(text, "toml", "xentbench.adapters"))
    entry_points = declaration["project"]["entry-points"]["xentbench.adapters"]
    for target in entry_points.values():
        module = target.split(":")[0]
        forget_package(module.split(".")[0])
        path = site.joinpath(*module.split(".")).with_suffix(".py")
        path.parent.mkdir(parents=True, exist_ok=True)
        for package in (path.parent, *path.parent.parents):
            if package == site:
                break
            (package / "__init__.py").touch()
        path.write_text(source)
    register_plugins(site, monkeypatch, entry_points, dist="docs-example-plugin")
    return entry_points


@pytest.mark.parametrize("page", PLUGIN_PAGES)
def test_the_plugin_example_installs_and_passes(page, plugin_site, monkeypatch, capsys):
    entry_points = install_example(page, plugin_site, monkeypatch)
    logits = plugin_site.parent / "logits.npy"
    np.save(logits, np.random.default_rng(0).normal(scale=8.0, size=(4, 16)))
    for backend in entry_points:
        status = registry.status(backend)
        assert status.available, status.reason
        for implementation in status.adapter.implementations():
            argv = ["check", "--op", implementation.op, "--logits", str(logits)]
            argv += ["--backend", backend, "--dtype", *implementation.dtypes, "--format", "json"]
            assert main(argv) == 0
            records = json.loads(capsys.readouterr().out)
            assert {r["dtype"] for r in records} == set(implementation.dtypes)
            assert {r["verdict"] for r in records} == {"pass"}, records


def load_cli_hook():
    """docs/hooks/cli_reference.py, the MkDocs hook, imported as a module."""
    spec = importlib.util.spec_from_file_location("cli_reference", DOCS / "hooks/cli_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_cli_reference_is_generated_from_the_parser_with_every_command():
    hook = load_cli_hook()
    page = (DOCS / "cli.md").read_text()
    assert hook.MARKER in page
    rendered = hook.on_page_markdown(page, page=None, config=None, files=None)
    assert hook.MARKER not in rendered
    parser_actions = build_parser()._actions
    (commands,) = (a for a in parser_actions if isinstance(a, argparse._SubParsersAction))
    for name, parser in commands.choices.items():
        assert f"## xentbench {name}\n" in rendered
        assert f"usage: xentbench {name}" in rendered
        for action in parser._actions:
            assert all(flag in rendered for flag in action.option_strings)


def test_the_cli_hook_leaves_other_pages_alone():
    hook = load_cli_hook()
    assert hook.on_page_markdown("# Usage\n", page=None) == "# Usage\n"
