"""``xentbench verify file.py:function``: kernels written for the test (``tests/kernels``, plain
files) checked through the CLI as a CI step would run it; exit 0 only for the careful one."""

from __future__ import annotations

import csv
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from verify_helpers import KERNELS, SPARSE, finding_line, verify

from xentbench.adapters import registry
from xentbench.suites.cli import main


def test_the_careful_kernel_passes_values_and_gradients_and_exits_0(tmp_path):
    result = verify(
        tmp_path,
        "careful.py:sparse_cross_entropy",
        *("--op", SPARSE, "--grad-fn", "sparse_cross_entropy_grad"),
        *("--dtype", "float32", "bfloat16", "--budget-s", "0.5"),
        *("--cases", "*/special/*", "*/extreme/*", "*/soft_labels/*", "*/normal-4x16"),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "PASS" in result.stdout and "FAIL" not in result.stdout
    with (tmp_path / "run" / "verify-trivial.csv").open() as table:
        rows = list(csv.DictReader(table))
    assert {row["quantity"] for row in rows} == {"value", "grad"}
    assert {row["dtype"] for row in rows} == {"float32", "bfloat16"}
    # the margin is shown per case: tied logits make the uniform output exactly right there
    tied = [r for r in rows if r["case_id"].endswith("/all-equal") and r["quantity"] == "value"]
    assert tied and all("uniform" in row["trivial_pass"] for row in tied)
    normal = [r for r in rows if r["case_id"].endswith("/normal-4x16")]
    assert normal and all(row["trivial_pass"] == "" for row in normal)


def test_a_kernel_returning_zeros_fails_with_a_finding_and_a_reproducer(tmp_path):
    result = verify(
        tmp_path,
        "zeros.py:softmax",
        "--op",
        "softmax",
        "--dtype",
        "float32",
        "--cases",
        "softmax/benign/*",
        "--budget-s",
        "0",
    )
    assert result.returncode == 1, result.stdout + result.stderr
    line = finding_line(result.stdout, "value", "over-budget")
    finding = line.split()[0]
    assert f"FAIL: 1 findings: {finding} (over-budget)" in result.stdout
    script = tmp_path / "run" / "repro" / f"{finding}.py"
    assert script.is_file()
    alone = {k: v for k, v in os.environ.items() if k != "XENTBENCH_VERIFY"}
    rerun = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, env=alone
    )
    assert rerun.returncode == 1 and "PRESENT" in rerun.stdout, rerun.stdout + rerun.stderr
    # ``xentbench repro`` on the verify run finds the function from its run.json
    command = [sys.executable, "-m", "xentbench.suites.cli", "repro", finding, "--run", "run"]
    again = subprocess.run(
        [*command, "--out", "again"], capture_output=True, text=True, timeout=300, cwd=tmp_path,
        env=alone,
    )  # fmt: skip
    assert again.returncode == 0, again.stdout + again.stderr
    assert (tmp_path / "again" / f"{finding}.py").is_file()
    # the report's trivial-output margins: the zeros column of each case is what the kernel
    # returning zeros scored there, judged on its own path (adapter, worker, store)
    assert main(["report", str(tmp_path / "run"), "--out", str(tmp_path / "report")]) == 0
    assert "## Trivial-output guard" in (tmp_path / "report" / "report.md").read_text()
    margins = pd.read_csv(tmp_path / "report" / "trivial.csv").set_index("case_id")["zeros"]
    stored = pq.read_table(tmp_path / "run" / "accuracy-verify.parquet").to_pandas()
    stored = stored.set_index("case_id")["worst_ratio"]
    assert len(margins) == len(stored) > 0 and (margins > 1).all()
    assert np.allclose(margins.sort_index(), stored.sort_index(), rtol=1e-12)


def test_a_bfloat16_true_class_probability_fails_the_sparse_gradient(tmp_path):
    result = verify(
        tmp_path,
        "bf16_probability.py:sparse_cross_entropy",
        *("--op", SPARSE, "--grad-fn", "sparse_cross_entropy_grad", "--dtype", "float32"),
        *("--cases", "*/benign/*", "--budget-s", "0", "--no-repro"),
    )
    assert result.returncode == 1, result.stdout + result.stderr
    finding_line(result.stdout, "grad", "over-budget")
    findings = [line for line in result.stdout.splitlines() if line.startswith("xf-")]
    assert not any(" value " in line for line in findings), findings


def test_an_online_softmax_with_a_leading_masked_block_returns_nan(tmp_path):
    result = verify(
        tmp_path,
        "online_softmax.py:logsumexp",
        "--op",
        "logsumexp",
        "--dtype",
        "float32",
        "--cases",
        "logsumexp/special/masked-blocks-32000",
        "--budget-s",
        "0",
        "--no-repro",
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "masked-blocks-32000" in finding_line(result.stdout, "value", "nan-for-finite")


def test_a_kernel_wrapping_label_minus_one_answers_invalid_input(tmp_path):
    result = verify(
        tmp_path,
        "wrapping_labels.py:sparse_cross_entropy",
        "--op",
        SPARSE,
        "--dtype",
        "float32",
        "--cases",
        "*/label-minus-one",
        "*/label-first",
        "--budget-s",
        "0",
        "--no-repro",
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "label-minus-one" in finding_line(result.stdout, "value", "answers-invalid-input")


def test_a_raising_kernel_gets_error_verdicts_naming_the_exception(tmp_path):
    result = verify(
        tmp_path,
        "misbehaving.py:raises",
        "--op",
        "softmax",
        "--dtype",
        "float32",
        "--cases",
        "softmax/benign/normal-4x16",
        "--budget-s",
        "0.5",
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "raised RuntimeError: kernel not built for this GPU" in result.stdout
    finding_line(result.stdout, "value", "raises-on-valid-input")
    assert "Traceback" not in result.stdout + result.stderr


def test_a_hanging_kernel_times_out_per_call_and_the_run_finishes(tmp_path):
    result = verify(
        tmp_path,
        "misbehaving.py:hangs",
        "--op",
        "softmax",
        "--dtype",
        "float32",
        "--cases",
        "softmax/benign/normal-4x16",
        "--timeout",
        "1",
        "--budget-s",
        "1",
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "did not return within 1 s" in result.stdout
    assert "hunt skipped" in result.stderr
    finding_line(result.stdout, "value", "raises-on-valid-input")


def test_a_kernel_hanging_on_every_call_is_given_up_on_after_three_timeouts(tmp_path):
    result = verify(
        tmp_path,
        "misbehaving.py:hangs",
        *("--op", "softmax", "--dtype", "float32", "--timeout", "1", "--no-repro"),
        *("--cases", "softmax/benign/*", "softmax/special/*"),
    )
    assert result.returncode == 1, result.stdout + result.stderr
    rows = pq.read_table(tmp_path / "run" / "accuracy-verify.parquet").to_pandas()
    assert len(rows) > 4 and (rows["verdict"] == "error").all()
    messages = rows["message"].tolist()
    # the first calls time out; after three in a row the function is not called again
    assert sum("raised CallTimedOut: the call did not return within 1 s" in m for m in messages)
    assert sum("not called: the function did not return within 1 s on 3 calls" in m
               for m in messages) >= len(rows) - 3  # fmt: skip


@pytest.mark.parametrize(
    ("function", "message"),
    [
        ("returns_list", "the function returned a list, not an array"),
        ("wrong_shape", "output shape (4,), expected (4, 16)"),
        ("wrong_dtype", "the function returned float64 for float32 inputs"),
    ],
)
def test_outputs_of_the_wrong_kind_get_a_verdict_saying_so(tmp_path, function, message):
    result = verify(
        tmp_path,
        f"misbehaving.py:{function}",
        "--op",
        "softmax",
        "--dtype",
        "float32",
        "--cases",
        "softmax/benign/normal-4x16",
        "--budget-s",
        "0",
        "--no-repro",
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert message in result.stdout


def test_torch_autograd_gives_the_gradient_of_a_torch_function(tmp_path):
    pytest.importorskip("torch")
    result = verify(
        tmp_path,
        "framework_ops.py:torch_cross_entropy",
        "--array",
        "torch",
        "--grad",
        "--op",
        SPARSE,
        "--dtype",
        "float32",
        "--cases",
        "*/benign/normal-4x16",
        "--budget-s",
        "0",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    table = [line for line in result.stdout.splitlines() if "float32" in line and "│" in line]
    assert {line.split("│")[2].strip() for line in table} == {"grad", "value"}


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["nocolon", "--op", "softmax"], ["'nocolon'", "file.py:function"]),
        ([f"{KERNELS}/missing.py:f", "--op", "softmax"], ["missing.py"]),
        ([f"{KERNELS}/zeros.py:nosuch", "--op", "softmax"], ["'nosuch'", "valid: softmax"]),
        (["no_such_module:f", "--op", "softmax"], ["no_such_module"]),
        ([f"{KERNELS}/zeros.py:softmax", "--op", "softmaxx"], ["'softmaxx'", "log_softmax"]),
        ([f"{KERNELS}/zeros.py:softmax", "--op", "softmax", "--dtype", "float8"], ["bfloat16"]),
        ([f"{KERNELS}/zeros.py:softmax", "--op", "softmax", "--grad"], ["--grad-fn"]),
        ([f"{KERNELS}/zeros.py:softmax", "--op", "softmax", "--cases", "x*"], ["'x*'"]),
    ],
)
def test_a_bad_target_or_option_exits_2_in_one_line(tmp_path, capsys, monkeypatch, argv, named):
    monkeypatch.setattr(sys, "path", list(sys.path))  # a loaded kernel's folder goes on it
    try:
        status = main(["verify", *argv, "--out", str(tmp_path / "run")])
    except SystemExit as exc:  # argparse's choices: the parser's one-line error
        status = exc.code
    assert status == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and all(word in lines[0] for word in named), lines
    assert not (tmp_path / "run").exists()  # refused before anything started


def test_the_verify_backend_is_reserved_and_never_listed(monkeypatch):
    monkeypatch.delenv("XENTBENCH_VERIFY", raising=False)
    monkeypatch.setattr(registry, "_loaded", {})
    assert "verify" not in registry.backend_names()
    with pytest.raises(registry.BackendUnavailable, match="XENTBENCH_VERIFY"):
        registry.load("verify")


def test_declared_keyword_options_run_the_catalogs_options_cases(tmp_path):
    result = verify(
        tmp_path, "careful.py:smoothed_cross_entropy", "--op", SPARSE,
        "--options", "label_smoothing", "--dtype", "float32",
        "--cases", "*/options/smoothing-*", "--budget-s", "0",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    with (tmp_path / "run" / "verify-trivial.csv").open() as table:
        rows = {row["case_id"]: row["verdict"] for row in csv.DictReader(table)}
    assert rows == {f"{SPARSE}/options/smoothing-{name}": "pass" for name in ("extreme", "masked")}


def test_device_cuda_without_a_cuda_device_exits_2_in_one_line(tmp_path, capsys, monkeypatch):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present: the refusal is for machines without one")
    monkeypatch.setattr(sys, "path", list(sys.path))
    target = f"{KERNELS}/framework_ops.py:torch_cross_entropy"
    argv = ["verify", target, "--op", SPARSE, "--array", "torch", "--device", "cuda"]
    assert main([*argv, "--out", str(tmp_path / "run")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert "--device cuda: torch sees no CUDA device" in lines[0] and "--device cpu" in lines[0]
    assert not (tmp_path / "run").exists()
