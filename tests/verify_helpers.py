"""Running ``xentbench verify`` on the kernels of ``tests/kernels`` as a CI step would, and
reading what it prints."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

KERNELS = Path(__file__).resolve().parent / "kernels"
SPARSE = "sparse_softmax_cross_entropy"


def verify(tmp_path: Path, target: str, *args: str) -> subprocess.CompletedProcess:
    """``xentbench verify`` on a kernel of ``tests/kernels`` in a fresh process, into tmp_path."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "xentbench.suites.cli",
            "verify",
            f"{KERNELS / target}",
            *args,
            "--out",
            str(tmp_path / "run"),
        ],
        capture_output=True,
        text=True,
        timeout=400,
        cwd=tmp_path,
        env={**os.environ, "COLUMNS": "200"},
    )


def finding_line(output: str, quantity: str, mode: str) -> str:
    """The printed finding of this quantity and failure mode (fails the test if absent)."""
    lines = [line for line in output.splitlines() if line.startswith("xf-")]
    found = [line for line in lines if f" {quantity} {mode} " in line]
    assert found, f"no {quantity} {mode} finding in {lines}"
    return found[0]
