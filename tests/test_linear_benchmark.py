"""tests/bench/linear_ce_benchmark.py without timing anything: its parent lists every backend's
linear implementations in child processes and imports no framework (triton's LLVM, loaded after
TensorFlow's, aborts a process); its rows carry the first call's peak; older files without it
still read.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from plugin_helpers import register_plugins

from xentbench.adapters.base import LINEAR_OP
from xentbench.suites.report.linear import BENCHMARK_FILE, benchmark_rows, cost_cells, with_costs

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tests" / "bench" / "linear_ce_benchmark.py"
FRAMEWORKS = ("torch", "jax", "jaxlib", "tensorflow", "triton", "cut_cross_entropy")


def _benchmark():
    spec = importlib.util.spec_from_file_location("linear_ce_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _python(code: str, site: Path) -> dict:
    """``code`` in a fresh interpreter (the plugin site and tests/ on its path); its JSON."""
    paths = [str(site), str(ROOT / "tests"), str(ROOT), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _flawed_site(tmp_path, monkeypatch) -> Path:
    from flawed.linear import ENTRY_POINTS

    register_plugins(tmp_path / "site", monkeypatch, ENTRY_POINTS, "xentbench-flawed-linear")
    return tmp_path / "site"


PARENT = f"""
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("bench", {str(SCRIPT)!r})
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)
found = bench.implementations(None, backends=("torch", "flawed-linear", "no-such-backend"))
loaded = [m for m in {FRAMEWORKS!r} if m in sys.modules]
print(json.dumps({{"found": found, "loaded": loaded}}))
"""


def test_the_parent_lists_implementations_in_children_and_imports_no_framework(
    tmp_path, monkeypatch
):
    pytest.importorskip("torch")
    result = _python(PARENT, _flawed_site(tmp_path, monkeypatch))
    assert result["loaded"] == []
    modes = {impl["name"]: impl["modes"] for impl in result["found"]}
    assert modes["torch:F.linear+F.cross_entropy"] == ["eager"]
    assert modes["flawed-linear:careful"] == ["eager"]
    assert not any(name.startswith("torch:F.softmax") for name in modes)  # linear op only


def test_a_child_loading_one_backend_imports_no_other_framework(tmp_path, monkeypatch):
    pytest.importorskip("torch")
    code = f"""
import contextlib, importlib.util, io, json, sys
spec = importlib.util.spec_from_file_location("bench", {str(SCRIPT)!r})
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)
with contextlib.redirect_stdout(io.StringIO()) as listed:
    bench.main(["--list", "torch"])
from xentbench.adapters.registry import LOAD_FIRST  # imported before any backend, see there
loaded = [m for m in {FRAMEWORKS!r} if m in sys.modules and m not in LOAD_FIRST]
print(json.dumps({{"listed": json.loads(listed.getvalue()), "loaded": loaded}}))
"""
    result = _python(code, _flawed_site(tmp_path, monkeypatch))
    assert result["loaded"] == ["torch"]
    assert result["listed"]["backend"] == "torch" and result["listed"]["implementations"]


def test_triton_after_tensorflow_does_not_abort_the_process(tmp_path):
    """Loaded after TensorFlow, triton's LLVM aborts the process; the registry loads it first.
    F.linear_cross_entropy's chunked path imports torch._dynamo, which imports triton."""
    missing = [m for m in ("triton", "tensorflow", "torch") if importlib.util.find_spec(m) is None]
    if missing:  # not imported here: this process must not meet the clash itself
        pytest.skip(f"not installed: {', '.join(missing)}")
    code = """
import json
from xentbench.adapters import registry
registry.load("tensorflow")
import torch._dynamo
print(json.dumps({"ok": True}))
"""
    assert _python(code, tmp_path)["ok"]


def test_an_unregistered_backend_is_listed_as_unavailable():
    assert _benchmark().list_backend("no-such-backend")["unavailable"] == "not registered"


def test_rows_carry_the_first_calls_peak(tmp_path, monkeypatch, capsys):
    """A tiny end-to-end run of the careful NumPy plugin: nothing here asserts on time."""
    _flawed_site(tmp_path, monkeypatch)
    out = tmp_path / "rows.json"
    arguments = ["--backends", "flawed-linear", "--impl", "careful", "--shapes", "8x8x16"]
    arguments += ["--dtypes", "float32", "--max-total-s", "0.01", "--json", str(out)]
    assert _benchmark().main(arguments) == 0
    rows = json.loads(out.read_text())
    assert [(r["implementation"], r["mode"], r["pass"]) for r in rows] == [
        ("flawed-linear:careful", "eager", "forward"),
        ("flawed-linear:careful", "eager", "forward+backward"),
    ]
    for row in rows:
        assert "first_call_peak_mib" in row and "peak_mib" in row, row
        assert row["first_call_ms"] > 0
    header = capsys.readouterr().out.splitlines()[0]
    assert "| peak MiB | first-call peak MiB |" in header


OLD_ROW = {
    "implementation": "jax:x@w.T+optax.softmax_cross_entropy_with_integer_labels",
    "shape": [1024, 1024, 32000],
    "dtype": "float32",
    "device": "cpu",
    "median_ms": 500.0,
    "iqr_ms": 5.0,
    "peak_mib": 250.0,
}


def test_an_older_file_without_first_call_peaks_still_reads(tmp_path):
    rows = [{**OLD_ROW, "pass": p} for p in ("forward", "forward+backward")]
    (tmp_path / BENCHMARK_FILE).write_text(json.dumps(rows))
    frame = benchmark_rows([tmp_path])
    assert frame["first_call_peak_bytes"].isna().all() and set(frame["mode"]) == {"eager"}
    cells = cost_cells(frame, "float32")
    assert "first-call peak" not in cells.columns  # not measured: no column of dashes
    assert cells.iloc[0]["peak memory"] == "250 MiB / 250 MiB"
    line = _benchmark().table_lines(rows)[2]
    assert line.endswith("| 250 | — |")  # peak, then the first call's: not measured


def test_first_call_peaks_show_beside_the_steady_peaks(tmp_path):
    rows = [
        {**OLD_ROW, "pass": p, "peak_mib": None, "first_call_peak_mib": first}
        for p, first in (("forward", 390.0), ("forward+backward", 640.0))
    ]
    (tmp_path / BENCHMARK_FILE).write_text(json.dumps(rows))
    cells = cost_cells(benchmark_rows([tmp_path]), "float32").iloc[0]
    assert cells["peak memory"] == "— / —"  # the pool: below what VmHWM resolves
    assert cells["first-call peak"] == "390 MiB / 640 MiB"
    assert _benchmark().table_lines(rows)[2].endswith("| <1 | 390 |")


def test_costs_match_the_verdict_rows_by_mode():
    timing = pd.DataFrame(
        [
            {"op": LINEAR_OP, "implementation": "torch:f", "dtype": "float32", "mode": mode,
             "pass": "forward", "shape": "1x2x3", "median_s": seconds, "verdict": "ok"}
            for mode, seconds in (("eager", 0.002), ("compiled", 0.001))
        ]
    )  # fmt: skip
    table = pd.DataFrame({"implementation": ["torch:f", "torch:f"], "mode": ["eager", "compiled"]})
    merged = with_costs(table, timing, "float32").set_index("mode")
    assert merged.loc["eager", "time"] == "2 ms (1x2x3)"
    assert merged.loc["compiled", "time"] == "1 ms (1x2x3)"
    alone = with_costs(table[["implementation"]].iloc[:1], timing, "float32", "compiled")
    assert alone.iloc[0]["time"] == "1 ms (1x2x3)"


def test_an_implementation_only_the_benchmark_timed_gets_a_row():
    """A plugin timed by the benchmark but not part of the run (cut_cross_entropy is an
    optional extra) still shows its time, its verdicts marked as not run."""
    timing = pd.DataFrame(
        [
            {"op": LINEAR_OP, "implementation": name, "dtype": "float32", "mode": "eager",
             "pass": "forward", "shape": "1x2x3", "median_s": 0.002, "verdict": "ok"}
            for name in ("torch:f", "plugin:g")
        ]
    )  # fmt: skip
    table = pd.DataFrame({"implementation": ["torch:f"], "loss": ["pass 0.50"]})
    merged = with_costs(table, timing, "float32").set_index("implementation")
    assert merged.loc["plugin:g", "time"] == "2 ms (1x2x3)"
    assert merged.loc["plugin:g", "loss"] == "not in this run"
    assert merged.loc["torch:f", "loss"] == "pass 0.50"


def test_only_declared_modes_and_devices_are_measured():
    bench = _benchmark()
    impls = [
        {"name": "a:both", "modes": ["eager", "compiled"], "devices": ["cpu", "cuda"]},
        {"name": "a:eager", "modes": ["eager"], "devices": ["cpu"]},
        {"name": "a:gpu", "modes": ["eager"], "devices": ["cuda"]},
    ]
    args = bench._parser().parse_args(["--modes", "eager", "compiled", "--dtypes", "float32"])
    planned = {(s["implementation"], s["mode"]) for s in bench.specs(impls, args)}
    assert planned == {("a:both", "eager"), ("a:both", "compiled"), ("a:eager", "eager")}
