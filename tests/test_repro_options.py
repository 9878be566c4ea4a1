"""Reproducers of findings whose calls take options, a tangent, the linear op's weight, or a
hunted input: each finding is produced by a deliberately flawed plugin through the public CLI,
and its generated script must exit 1 for the flawed implementation and 0 for a careful one
(the same script, pointed at the careful implementation)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from flawed import hunt as flawed_hunt
from flawed import linear as flawed_linear
from flawed import options as flawed_options
from plugin_helpers import register_plugins

from xentbench.suites.cli import main
from xentbench.suites.findings.tables import findings_of_runs

REPO = Path(__file__).resolve().parent.parent
TESTS = Path(__file__).resolve().parent
PLUGINS = {**flawed_options.ENTRY_POINTS, **flawed_linear.ENTRY_POINTS, **flawed_hunt.ENTRY_POINTS}


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    site = tmp_path / "site"
    site.mkdir()
    register_plugins(site, monkeypatch, PLUGINS, "xentbench-flawed-repro")
    return site


def _run(out: Path, backend: str, *cases: str) -> None:
    argv = ["run", "--suite", "accuracy", "--backend", backend, "--dtype", "float32"]
    assert main([*argv, "--cases", *cases, "--jobs", "1", "--out", str(out)]) == 0


def _finding(run: Path, implementation: str, quantity: str):
    found = [
        f
        for f in findings_of_runs([run]).findings
        if f.implementation == implementation and f.quantity == quantity
    ]
    assert found, f"no {implementation} {quantity} finding"
    return found[0]


def _script(run: Path, finding_id: str, out: Path) -> Path:
    assert main(["repro", finding_id, "--run", str(run), "--out", str(out)]) == 0
    return out / f"{finding_id}.py"


def _exit_status(script: Path, site: Path, swap: dict[str, str] | None = None) -> int:
    """The script's exit status, run in a subprocess from an empty directory; ``swap``
    rewrites it first (to call a careful implementation instead)."""
    text = script.read_text()
    for old, new in (swap or {}).items():
        assert old in text
        text = text.replace(old, new)
    work = script.parent / f"run-{len(swap or {})}"
    work.mkdir(exist_ok=True)
    path = work / script.name
    path.write_text(text)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(TESTS), str(REPO)])}
    result = subprocess.run(
        [sys.executable, str(path)], cwd=work, env=env, capture_output=True, text=True
    )
    assert result.returncode in (0, 1), result.stdout + result.stderr
    return result.returncode


def _careful_options(implementation: str) -> dict[str, str]:
    return {
        f"IMPLEMENTATION = {implementation!r}": "IMPLEMENTATION = 'options_careful:longdouble'",
        "registry.load('options_flawed')": "registry.load('options_careful')",
    }


def test_an_options_finding_reproduces_with_its_options(site, tmp_path):
    run, implementation = tmp_path / "run", "options_flawed:mean-over-all-rows"
    _run(run, "options_flawed", "sparse_softmax_cross_entropy/options/ignore-90pct")
    finding = _finding(run, implementation, "value")
    script = _script(run, finding.id, tmp_path / "repro")
    text = script.read_text()
    assert "'reduction': 'mean'" in text and "'ignore_index': -100" in text
    assert _exit_status(script, site) == 1
    assert _exit_status(script, site, _careful_options(implementation)) == 0


def test_a_jvp_finding_reproduces_along_its_tangent(site, tmp_path):
    run, implementation = tmp_path / "run", "options_flawed:mean-over-all-rows"
    case = "sparse_softmax_cross_entropy/options/tangent-mean-ignore-smoothing"
    _run(run, "options_flawed", case)
    finding = _finding(run, implementation, "jvp")
    script = _script(run, finding.id, tmp_path / "repro")
    assert "'tangent': _floats(" in script.read_text()
    assert _exit_status(script, site) == 1
    assert _exit_status(script, site, _careful_options(implementation)) == 0


def test_a_linear_finding_reproduces_with_its_weight(site, tmp_path):
    run, implementation = tmp_path / "run", "flawed-linear:bf16-true-class-grad"
    _run(run, "flawed-linear", "linear_cross_entropy/linear/confident")
    finding = _finding(run, implementation, "grad_hidden")
    script = _script(run, finding.id, tmp_path / "repro")
    assert "'weight': " in script.read_text()
    assert _exit_status(script, site) == 1
    careful = {f"IMPLEMENTATION = {implementation!r}": "IMPLEMENTATION = 'flawed-linear:careful'"}
    assert _exit_status(script, site, careful) == 0


@pytest.mark.slow
def test_a_hunted_finding_reproduces_from_its_saved_input(site, tmp_path):
    run, implementation = tmp_path / "run", "flawed-hunt:float32-exp-softmax"
    argv = ["hunt", "--backend", "flawed-hunt", "--from-scratch", "--dtype", "float32"]
    assert main([*argv, "--quantity", "value", "--budget-s", "2", "--out", str(run)]) == 0
    finding = _finding(run, implementation, "value")
    assert finding.sample.case_id.startswith("hunt/")
    script = _script(run, finding.id, tmp_path / "repro")
    assert _exit_status(script, site) == 1
    careful = {
        f"IMPLEMENTATION = {implementation!r}": "IMPLEMENTATION = 'careful-hunt:softmax'",
        "registry.load('flawed-hunt')": "registry.load('careful-hunt')",
    }
    assert _exit_status(script, site, careful) == 0


def test_a_hunted_options_finding_reproduces_with_its_saved_options(site, tmp_path):
    run, implementation = tmp_path / "run", "options_flawed:mean-over-all-rows"
    argv = ["hunt", "--backend", "options_flawed", "--impl", implementation, "--from-scratch"]
    argv += ["--dtype", "float32", "--quantity", "value", "--budget-s", "1", "--out", str(run)]
    assert main(argv) == 0
    found = findings_of_runs([run]).findings
    finding = next(f for f in found if f.failure_mode == "over-budget")  # the 90%-ignored mean
    assert finding.sample.case_id.startswith("hunt/")
    script = _script(run, finding.id, tmp_path / "repro")
    assert "'reduction': 'mean'" in script.read_text()
    assert _exit_status(script, site) == 1
    assert _exit_status(script, site, _careful_options(implementation)) == 0
