"""``xentbench verify`` with call option values given as ``check`` takes them
(``--label-smoothing 0.1 --temperature 2 --z-loss 1e-4``): passed by keyword to the function on
every call and to the reference, so a kernel that ignores one is caught."""

from __future__ import annotations

import csv
import sys

import pyarrow.parquet as pq
import pytest
from verify_helpers import KERNELS, SPARSE, finding_line, verify

from xentbench.suites.cli import main

HEAD = ("--label-smoothing", "0.25", "--temperature", "2", "--z-loss", "1e-4")


def test_a_kernel_honouring_its_options_passes_with_the_values_given(tmp_path):
    result = verify(
        tmp_path,
        "careful.py:head_cross_entropy",
        *("--op", SPARSE, *HEAD, "--dtype", "float32"),
        *("--cases", "*/benign/*", "*/special/*", "*/options/smoothing-*", "*/temperature-*"),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "PASS" in result.stdout
    rows = pq.read_table(tmp_path / "run" / "accuracy-verify.parquet").to_pylist()
    plain = [row for row in rows if "/benign/" in row["case_id"]]
    assert plain and all(
        row["options"] == "label_smoothing=0.25,temperature=2.0,z_loss=0.0001" for row in plain
    )
    # a case's own value wins over the one given: the smoothing cases keep their 0.1
    smoothing = [row for row in rows if "/smoothing-" in row["case_id"]]
    assert smoothing and all("label_smoothing=0.1," in row["options"] for row in smoothing)
    assert all(row["verdict"] == "pass" for row in rows)
    with (tmp_path / "run" / "verify-trivial.csv").open() as table:
        assert {row["trivial_pass"] for row in csv.DictReader(table)} <= {""}


def test_a_kernel_ignoring_label_smoothing_fails_and_exits_1(tmp_path):
    result = verify(
        tmp_path,
        "ignores_smoothing.py:sparse_cross_entropy",
        *("--op", SPARSE, "--label-smoothing", "0.1", "--dtype", "float32"),
        *("--cases", "*/benign/*", "--no-repro"),
    )
    assert result.returncode == 1, result.stdout + result.stderr
    line = finding_line(result.stdout, "value", "over-budget")
    assert "benign" in line
    assert "--label-smoothing=0.1" in result.stdout  # the command that shows it again
    # without the value the same kernel computes the plain loss: it passes
    (tmp_path / "plain").mkdir()
    again = verify(
        tmp_path / "plain",
        "ignores_smoothing.py:sparse_cross_entropy",
        *("--op", SPARSE, "--dtype", "float32", "--cases", "*/benign/*", "--budget-s", "0"),
    )
    assert again.returncode == 0, again.stdout + again.stderr


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["--op", SPARSE, "--label-smoothing", "1.5"], ["label_smoothing 1.5", "[0, 1]"]),
        (["--op", SPARSE, "--z-loss", "-1e-4"], ["z_loss -0.0001", ">= 0"]),
        (["--op", SPARSE, "--temperature", "0"], ["temperature 0.0", "> 0"]),
        (["--op", "softmax", "--label-smoothing", "0.1"], ["softmax", "'label_smoothing'"]),
        (["--op", SPARSE, "--reduction", "avg"], ["'avg'", "mean"]),
        (["--op", SPARSE, "--weights", "w.npy"], ["--weights"]),
    ],
)
def test_a_bad_option_value_exits_2_in_one_line(tmp_path, capsys, monkeypatch, argv, named):
    monkeypatch.setattr(sys, "path", list(sys.path))  # a loaded kernel's folder goes on it
    target = f"{KERNELS}/careful.py:head_cross_entropy"
    try:
        status = main(["verify", target, *argv, "--out", str(tmp_path / "run")])
    except SystemExit as exc:  # argparse's choices and unknown flags: the parser's one line
        status = exc.code
    assert status == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and all(word in lines[0] for word in named), lines
    assert not (tmp_path / "run").exists()
