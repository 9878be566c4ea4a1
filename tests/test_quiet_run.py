"""A run's terminal shows progress and results only: what a framework prints in a worker (C++
writes to file descriptor 2, Python warnings, stdout) goes to the backend's log in the run
directory, and a crashed worker is reported with that log's last lines.

``noisy`` is a plugin backend (an entry point on ``PYTHONPATH``, as ``reliability_helpers``'
slowpoke) that makes that noise at import and in every call, the way TensorFlow and ONNX
Runtime do; ``xentbench run`` runs it as a real process with its output captured (not a
terminal, so the progress is plain lines).
"""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest
from reliability_helpers import xentbench

from xentbench.adapters.import_noise import quiet_import
from xentbench.suites.store.run_json import read_run_info

NOISY_MODULE = """
import os
import warnings

import numpy as np
import scipy.special

from xentbench.adapters.base import Adapter, Implementation, PreparedCall

os.write(2, b"NOISY C-LEVEL LINE AT IMPORT\\n")
warnings.warn("NOISY PYTHON WARNING AT IMPORT")


class NoisyAdapter(Adapter):
    name = "noisy"

    def version(self):
        return "1.0"

    def implementations(self):
        return tuple(
            Implementation(name=f"noisy:{kind}", op="softmax", dtypes=("float64",))
            for kind in ("talks", "dies")
        )

    def prepare(self, call, logits, labels):
        def run():
            os.write(2, b"NOISY C-LEVEL LINE IN A CALL\\n")
            print("NOISY STDOUT LINE IN A CALL", flush=True)
            warnings.warn("NOISY PYTHON WARNING IN A CALL", RuntimeWarning)
            if call.implementation.name == "noisy:dies":
                os.write(2, b"NOISY LAST WORDS\\n")
                os._exit(3)
            return scipy.special.softmax(logits, axis=-1)

        return PreparedCall(run=run, to_numpy=np.asarray)
"""
NOISE = (
    "NOISY C-LEVEL LINE AT IMPORT",
    "NOISY PYTHON WARNING AT IMPORT",
    "NOISY C-LEVEL LINE IN A CALL",
    "NOISY STDOUT LINE IN A CALL",
    "NOISY PYTHON WARNING IN A CALL",
)
CASES = ("--cases", "softmax/benign/*")
SELECTION = ("--suite", "accuracy", "--dtype", "float64", "--backend", "noisy", *CASES)


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A directory holding the noisy backend and its entry point (put on PYTHONPATH)."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "noisy_backend.py").write_text(textwrap.dedent(NOISY_MODULE))
    info = site / "noisy-0.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: noisy\nVersion: 0.0\n")
    (info / "entry_points.txt").write_text(
        "[xentbench.adapters]\nnoisy = noisy_backend:NoisyAdapter\n"
    )
    return site


def _run(site: Path, out: Path, *extra: str, **environment: str):
    done = xentbench(site, "run", *SELECTION, "--out", str(out), *extra, **environment)
    return done, done.stdout + done.stderr


def test_framework_noise_goes_to_the_run_log_not_the_terminal(site, tmp_path):
    out = tmp_path / "run"
    done, terminal = _run(site, out, "--impl", "noisy:talks")
    assert done.returncode == 0, terminal
    for line in NOISE:
        assert line not in terminal
    log = (out / "logs" / "accuracy-noisy.log").read_text()
    for line in NOISE:
        assert line in log
    assert log.count("RuntimeWarning: NOISY PYTHON WARNING IN A CALL") == 1  # once, not per call
    assert "accuracy noisy 1.0: 3 pass" in terminal  # the results still show


def test_progress_is_plain_lines_when_the_output_is_not_a_terminal(site, tmp_path):
    _, terminal = _run(site, tmp_path / "run", "--impl", "noisy:talks")
    lines = terminal.splitlines()
    assert "accuracy noisy: started, 3 tasks" in lines
    assert any(line.startswith("accuracy noisy: 3/3 done in ") for line in lines), terminal
    assert "\x1b[" not in terminal and "━" not in terminal  # no live bar drawn into a pipe


def test_a_crashed_worker_is_reported_with_the_end_of_its_log(site, tmp_path):
    out = tmp_path / "run"
    done, terminal = _run(site, out, "--impl", "noisy:dies", "--timeout", "60")
    assert done.returncode == 0, terminal
    log = out / "logs" / "accuracy-noisy.log"
    assert "worker process died (exit code 3)" in terminal
    assert f"last lines of {log}:" in terminal
    assert "    NOISY LAST WORDS" in terminal  # what it said before it died, quoted
    # A worker for each of the three tasks it crashed on, then one that found none left.
    assert log.read_text().count("worker started") == 4


def test_a_worker_that_fails_to_start_is_reported_with_what_it_printed(site, tmp_path):
    python = tmp_path / "python-without-xentbench"  # as a backend environment missing xentbench
    python.write_text("#!/bin/sh\necho 'ModuleNotFoundError: NO XENTBENCH HERE' >&2\nexit 1\n")
    python.chmod(0o755)
    out = tmp_path / "run"
    _, terminal = _run(site, out, "--impl", "noisy:talks", "--python", f"noisy={python}")
    assert "worker failed before starting a task: worker process died (exit code 1)" in terminal
    assert "    ModuleNotFoundError: NO XENTBENCH HERE" in terminal
    (crash,) = read_run_info(out)["crashes"]
    assert crash.endswith("(log: logs/accuracy-noisy.log)")


def test_an_in_process_import_drops_absl_info_lines_and_keeps_the_rest(capfd):
    absl = (
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
        "I0000 00:00:1796554575.864593   27941 port.cc:153] oneDNN custom operations are on.\n"
        "W0000 00:00:1796554575.864593   27941 cpu_feature_guard.cc:1] a warning line\n"
    )
    kept = "E0000 00:00:1796554575.864593   27941 op.cc:1] an error line\nplain text\n"
    with quiet_import():
        os.write(2, (absl + kept).encode())
    assert capfd.readouterr().err == kept
