"""The LLM head's options through ``xentbench run`` and ``check``: plugins registered by entry
point; the careful head passes every head case of the catalog, each flawed one is flagged."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from flawed import head as flawed_head
from flawed import head_softmax as flawed_head_softmax
from plugin_helpers import register_plugins

from xentbench.suites.catalog.head_tables import HEAD_CASES
from xentbench.suites.cli import main
from xentbench.suites.findings.tables import findings_of_runs
from xentbench.suites.store.rows import load

SPARSE = "sparse_softmax_cross_entropy"
CASES = [f"{SPARSE}/options/{scenario.name}" for scenario in HEAD_CASES if SPARSE in scenario.ops]
# The case of the catalog that exposes each mistake.
EXPOSED_BY = {
    "backward-without-sech2": "softcap-30-wide",
    "z-loss-grad-without-2": "z-loss-confident",
    "backward-without-1-over-T": "temperature-half",
    "padding-excluded-after-cap": "softcap-padded-saturated",
}


@pytest.fixture
def head_plugins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XENTBENCH_CACHE", str(tmp_path / "cache"))
    register_plugins(tmp_path / "site", monkeypatch, flawed_head.ENTRY_POINTS, "head")


def _run(tmp_path: Path, backend: str, dtypes: tuple[str, ...]):
    out = tmp_path / "run"
    argv = ["run", "--suite", "accuracy", "--backend", backend, "--out", str(out)]
    assert main([*argv, "--cases", *CASES, "--dtype", *dtypes, "--jobs", "1"]) == 0
    rows = load([out], "accuracy")
    return rows[rows["verdict"] != "unsupported"]


def test_the_careful_head_passes_every_head_case(head_plugins, tmp_path):
    measured = _run(tmp_path, "head_careful", ("bfloat16", "float32", "float64"))
    assert set(measured["case_id"]) == set(CASES)
    assert {"value", "grad"} <= set(measured["quantity"])
    assert set(measured["verdict"]) == {"pass"}, measured[measured["verdict"] != "pass"]


def test_each_flawed_head_is_flagged_by_the_catalog(head_plugins, tmp_path):
    measured = _run(tmp_path, "head_flawed", ("float32",))
    for mistake, case in EXPOSED_BY.items():
        mine = measured[
            (measured["implementation"] == f"head_flawed:{mistake}")
            & (measured["case_id"] == f"{SPARSE}/options/{case}")
        ]
        assert set(mine["verdict"]) & {"wrong", "inaccurate"}, (mistake, mine)


def _save(tmp_path: Path) -> list[str]:
    rng = np.random.default_rng(3)
    logits, labels = tmp_path / "x.npy", tmp_path / "k.npy"
    np.save(logits, (rng.normal(size=(6, 40)) * 50).astype(np.float32))
    np.save(labels, rng.integers(0, 40, 6))
    return ["check", "--op", SPARSE, "--logits", str(logits), "--labels", str(labels)]


@pytest.mark.parametrize(
    ("flag", "named"),
    [
        (["--softcap", "-1"], "softcap -1.0"),
        (["--temperature", "0"], "temperature 0.0"),
        (["--z-loss=-0.5"], "z_loss -0.5"),
    ],
)
def test_bad_head_values_exit_2_naming_the_value(tmp_path, capsys, flag, named):
    assert main([*_save(tmp_path), *flag, "--backend", "numpy"]) == 2
    err = capsys.readouterr().err.strip()
    assert named in err and len(err.splitlines()) == 1


def test_check_measures_the_head_on_given_inputs(head_plugins, tmp_path, capsys):
    argv = [*_save(tmp_path), "--softcap", "30", "--temperature", "0.5", "--z-loss", "1e-4"]
    argv += ["--backend", "head_careful", "head_flawed", "--format", "json", "--dtype", "float32"]
    assert main(argv) == 0
    records = json.loads(capsys.readouterr().out)
    verdicts = {(r["implementation"], r["quantity"]): r["verdict"] for r in records}
    assert verdicts[("head_careful:longdouble", "value")] == "pass"
    assert verdicts[("head_careful:longdouble", "grad")] == "pass"
    assert verdicts[("head_flawed:z-loss-grad-without-2", "grad")] in ("wrong", "inaccurate")
    assert verdicts[("head_flawed:backward-without-1-over-T", "grad")] in ("wrong", "inaccurate")


def test_a_torch_head_finding_reproduces_standalone(tmp_path, monkeypatch):
    """bfloat16 runs the composition's tanh backward in bfloat16: the finding's script holds
    the cap and calls the same composition, and exits 1 while the problem lives."""
    pytest.importorskip("torch")
    monkeypatch.setenv("XENTBENCH_CACHE", str(tmp_path / "cache"))
    run, implementation = tmp_path / "run", "torch:F.cross_entropy(softcapped)+z_loss"
    argv = ["run", "--suite", "accuracy", "--backend", "torch", "--dtype", "bfloat16"]
    case = f"{SPARSE}/options/softcap-30-wide"
    assert main([*argv, "--cases", case, "--jobs", "1", "--out", str(run)]) == 0
    found = [
        f
        for f in findings_of_runs([run]).findings
        if f.implementation == implementation and f.quantity == "grad"
    ]
    assert found, "no finding for the bfloat16 composition's gradient"
    out = tmp_path / "repro"
    assert main(["repro", found[0].id, "--run", str(run), "--out", str(out)]) == 0
    script = out / f"{found[0].id}.py"
    text = script.read_text()
    assert "'softcap': 30.0" in text and "def softcapped" in text
    result = subprocess.run(
        [sys.executable, str(script)], cwd=out, capture_output=True, text=True, check=False
    )
    assert result.returncode == 1, result.stdout + result.stderr


def test_the_softmax_head_plugins_through_the_catalog(tmp_path, monkeypatch):
    """The careful softmax-family head passes the head cases of softmax, log_softmax and
    logsumexp; the backward without 1/T is flagged on the temperature cases' gradients."""
    monkeypatch.setenv("XENTBENCH_CACHE", str(tmp_path / "cache"))
    plugins = flawed_head_softmax.ENTRY_POINTS
    register_plugins(tmp_path / "site", monkeypatch, plugins, "head-softmax")
    cases = [
        f"{op}/options/{scenario.name}"
        for scenario in HEAD_CASES
        for op in flawed_head_softmax.OPS
        if op in scenario.ops
    ]
    out = tmp_path / "run"
    argv = ["run", "--suite", "accuracy", "--backend", *plugins, "--out", str(out)]
    assert main([*argv, "--cases", *cases, "--dtype", "float32", "--jobs", "1"]) == 0
    rows = load([out], "accuracy")
    careful = rows[rows["backend"] == "head_softmax_careful"]
    assert set(careful["op"]) == set(flawed_head_softmax.OPS)
    assert set(careful["verdict"]) == {"pass"}, careful[careful["verdict"] != "pass"]
    flawed = rows[rows["backend"] == "head_softmax_flawed"]
    for op in flawed_head_softmax.OPS:
        mine = flawed[(flawed["op"] == op) & flawed["case_id"].str.endswith("temperature-half")]
        assert set(mine[mine["quantity"] == "grad"]["verdict"]) & {"wrong", "inaccurate"}, mine
        assert set(mine[mine["quantity"] == "value"]["verdict"]) == {"pass"}
