"""A run directory's pinned provenance: a different commit is refused, an unknown one is not."""

from __future__ import annotations

from pathlib import Path

import pytest

from xentbench.suites.cli import params
from xentbench.suites.cli.usage import UsageError


@pytest.fixture
def stored(tmp_path: Path, monkeypatch) -> Path:
    """A directory that holds rows of commit ``aaa`` (the stored rows stubbed)."""
    monkeypatch.setattr(params, "has_results", lambda run_dir: True)
    monkeypatch.setattr(params, "read_run_info", lambda run_dir: {"seed": 0, "git_commit": "aaa"})
    return tmp_path


def test_another_commit_is_refused_naming_both(stored):
    with pytest.raises(UsageError, match=r"'aaa'.*'bbb'"):
        params.check_same_run(stored, {"seed": 0, "git_commit": "bbb"})


def test_an_unknown_commit_is_no_evidence_of_another_version(stored, monkeypatch):
    params.check_same_run(stored, {"seed": 0, "git_commit": "unknown"})
    monkeypatch.setattr(
        params, "read_run_info", lambda run_dir: {"seed": 0, "git_commit": "unknown"}
    )
    params.check_same_run(stored, {"seed": 0, "git_commit": "bbb"})
    with pytest.raises(UsageError, match="seed"):
        params.check_same_run(stored, {"seed": 1, "git_commit": "bbb"})
