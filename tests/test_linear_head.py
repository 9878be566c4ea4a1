"""The LLM head's options on ``linear_cross_entropy``: the torch and NumPy compositions pass
the catalog's linear head cases, F.linear_cross_entropy (no such options) is unsupported, and
``check --op linear_cross_entropy`` takes --softcap, --temperature and --z-loss."""

from __future__ import annotations

import json

import numpy as np
import pytest

from xentbench.suites.catalog.linear import HEAD_LINEAR
from xentbench.suites.cli import main
from xentbench.suites.store.rows import load

LINEAR = "linear_cross_entropy"
CASES = [f"{LINEAR}/linear/{row[0]}" for row in HEAD_LINEAR]
COMPOSITIONS = {
    "torch:F.linear+F.cross_entropy(softcapped)+z_loss",
    "numpy:head.linear_cross_entropy",
}


def test_the_compositions_pass_the_linear_head_cases(tmp_path, monkeypatch):
    pytest.importorskip("torch")
    monkeypatch.setenv("XENTBENCH_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "run"
    argv = ["run", "--suite", "accuracy", "--backend", "numpy", "torch", "--out", str(out)]
    assert main([*argv, "--cases", *CASES, "--dtype", "float32", "float64", "--jobs", "1"]) == 0
    rows = load([out], "accuracy")
    measured = rows[rows["verdict"] != "unsupported"]
    assert set(measured["implementation"]) == COMPOSITIONS
    assert set(measured["case_id"]) == set(CASES)
    torch_rows = measured[measured["implementation"].str.startswith("torch:")]
    assert {"value", "grad_hidden", "grad_weight", "grad_bias"} == set(torch_rows["quantity"])
    assert set(measured["verdict"]) == {"pass"}, measured[measured["verdict"] != "pass"]
    fused = rows[rows["implementation"].str.startswith("torch:F.linear_cross_entropy")]
    assert set(fused["verdict"]) <= {"unsupported"}


def _save(tmp_path):
    rng = np.random.default_rng(7)
    arrays = {
        "hidden": rng.normal(size=(6, 16)).astype(np.float32),
        "classifier": (rng.normal(size=(40, 16)) * 10).astype(np.float32),
        "labels": rng.integers(0, 40, 6),
    }
    argv = ["check", "--op", LINEAR]
    for name, array in arrays.items():
        np.save(tmp_path / f"{name}.npy", array)
        argv += [f"--{name}", str(tmp_path / f"{name}.npy")]
    return argv


def test_check_judges_the_linear_head(tmp_path, capsys, monkeypatch):
    pytest.importorskip("torch")
    monkeypatch.setenv("XENTBENCH_CACHE", str(tmp_path / "cache"))
    argv = [*_save(tmp_path), "--softcap", "30", "--temperature", "0.5", "--z-loss", "1e-4"]
    assert main([*argv, "--backend", "torch", "numpy", "--format", "json"]) == 0
    records = json.loads(capsys.readouterr().out)
    verdicts = {(r["implementation"], r["quantity"]): r["verdict"] for r in records}
    for composition in COMPOSITIONS:
        assert verdicts[(composition, "value")] == "pass"
    assert verdicts[("torch:F.linear+F.cross_entropy(softcapped)+z_loss", "grad_hidden")] == "pass"
    assert verdicts[("torch:F.linear+F.cross_entropy", "value")] == "unsupported"


@pytest.mark.parametrize(
    ("flag", "named"),
    [(["--softcap", "0"], "softcap 0.0"), (["--shards", "2"], "--shards is not an option")],
)
def test_check_refuses_bad_linear_head_flags(tmp_path, capsys, flag, named):
    assert main([*_save(tmp_path), *flag, "--backend", "numpy"]) == 2
    err = capsys.readouterr().err.strip()
    assert named in err and len(err.splitlines()) == 1
