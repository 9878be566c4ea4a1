"""The tests of one ``xdist_group`` run on one worker under ``--dist loadgroup``: expensive
module fixtures and process-wide warm-ups are shared only then (``tests/conftest.py``)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

GROUPED = """
import os
from pathlib import Path

import pytest


@pytest.mark.xdist_group("together")
@pytest.mark.parametrize("i", range(8))
def test_grouped(i):
    Path(f"worker-{i}").write_text(os.environ["PYTEST_XDIST_WORKER"])
"""


def test_the_tests_of_one_group_run_on_one_worker(tmp_path: Path):
    shutil.copy(Path(__file__).with_name("conftest.py"), tmp_path / "conftest.py")
    (tmp_path / "test_grouped.py").write_text(GROUPED)
    argv = [sys.executable, "-m", "pytest", "-n", "2", "--dist", "loadgroup", "-q"]
    argv += ["-p", "no:cacheprovider", "-o", "addopts=", "test_grouped.py"]
    result = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    workers = {path.read_text() for path in tmp_path.glob("worker-*")}
    assert len(list(tmp_path.glob("worker-*"))) == 8 and len(workers) == 1, workers
