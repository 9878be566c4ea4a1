"""Real ``xentbench`` processes against a plugin backend whose speed a test controls.

``slowpoke`` is registered like a third-party plugin (an entry point on ``PYTHONPATH``): its one
softmax sleeps ``SLOWPOKE_SLEEP`` seconds per call, then computes the softmax exactly as SciPy
does, so a run can be made to last long enough to be locked, interrupted or killed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd

from xentbench.suites.catalog.cases import catalog
from xentbench.suites.catalog.selection import Selection
from xentbench.suites.store.rows import load
from xentbench.suites.store.schema import KEYS

ROOT = Path(__file__).resolve().parents[1]
SLOWPOKE_MODULE = """
import os
import time

import numpy as np
import scipy.special

from xentbench.adapters.base import Adapter, Implementation, PreparedCall


class SlowpokeAdapter(Adapter):
    name = "slowpoke"

    def version(self):
        return os.environ.get("SLOWPOKE_VERSION", "1.0")

    def implementations(self):
        return (Implementation(name="slowpoke:softmax", op="softmax", dtypes=("float64",)),)

    def prepare(self, call, logits, labels):
        def run():
            time.sleep(float(os.environ.get("SLOWPOKE_SLEEP", "0")))
            return scipy.special.softmax(logits, axis=-1)

        return PreparedCall(run=run, to_numpy=np.asarray)
"""
# About twenty softmax cases in float64: enough tasks to interrupt, small enough to stay quick.
SELECTION = ("--suite", "accuracy", "--dtype", "float64", "--backend", "slowpoke")
CASES = ("--cases", "softmax/benign/*", "softmax/extreme/*", "softmax/special/*")
# One task per case: the slowpoke softmax takes float64 only, every case here has a float64.
TASKS = sum(
    Selection(cases=CASES[1:]).wants_case(case.id) and "float64" in case.dtypes
    for case in catalog()
)
# The columns an evaluation's result is made of (not when or where it ran, nor its duration).
RESULT_COLUMNS = ["verdict", "worst_ratio", "max_ulp_error", "expected", "got", "worst_index"]


def install_slowpoke(site: Path) -> Path:
    """Write the slowpoke module and its entry point into ``site``; return ``site``."""
    site.mkdir(parents=True, exist_ok=True)
    (site / "slowpoke_backend.py").write_text(textwrap.dedent(SLOWPOKE_MODULE))
    info = site / "slowpoke-0.0.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: slowpoke\nVersion: 0.0\n")
    (info / "entry_points.txt").write_text(
        "[xentbench.adapters]\nslowpoke = slowpoke_backend:SlowpokeAdapter\n"
    )
    return site


def environment(site: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(site), str(ROOT), env.get("PYTHONPATH", "")])
    env.setdefault("XENTBENCH_CACHE", str(site.parent / "cache"))
    env.update(extra)
    return env


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "xentbench.suites.cli", *args]


def start(site: Path, *args: str, **extra: str) -> subprocess.Popen:
    """A ``xentbench`` process, its output captured as text."""
    return subprocess.Popen(
        command(*args),
        cwd=ROOT,
        env=environment(site, **extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def xentbench(site: Path, *args: str, timeout: float = 600, **extra) -> subprocess.CompletedProcess:
    return subprocess.run(
        command(*args),
        cwd=ROOT,
        env=environment(site, **extra),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def results(run_dir: Path) -> pd.DataFrame:
    """The stored accuracy rows, one per key, sorted by key, with the result columns."""
    keys = list(KEYS["accuracy"])
    rows = load([run_dir], "accuracy")
    assert not rows.duplicated(keys).any(), "a key is stored twice"
    return rows[[*keys, *RESULT_COLUMNS]].sort_values(keys).reset_index(drop=True)


def stored_count(run_dir: Path) -> int:
    try:
        return len(load([run_dir], "accuracy"))
    except Exception:  # a part being renamed: count again later
        return -1
