"""``xentbench verify --shards K``: a user's vocabulary-parallel kernel (``tests/kernels/
sharded.py``) called with ``shards=K`` on every case that has K classes or more, judged against
the unsharded loss; the catalog's shard cases keep their own counts. The careful kernel passes;
each flawed one (smoothing over the local V, the sum reduced twice, a label on a shard
boundary read from the neighbour) exits 1 naming its finding; bad values exit 2 in one line."""

from __future__ import annotations

import sys

import pyarrow.parquet as pq
import pytest
from verify_helpers import KERNELS, SPARSE, finding_line, verify

from xentbench.suites.cli import main
from xentbench.suites.judge.verdicts import FAILURES

SHARD_CASES = ("*/options/shards-*",)


def test_a_careful_sharded_kernel_passes(tmp_path):
    result = verify(
        tmp_path,
        "sharded.py:vocab_parallel",
        *("--op", SPARSE, "--shards", "3", "--options", "label_smoothing"),
        *("--grad-fn", "vocab_parallel_grad", "--dtype", "float32"),
        *("--cases", "*/benign/*", "*/special/*", *SHARD_CASES),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    rows = pq.read_table(tmp_path / "run" / "accuracy-verify.parquet").to_pylist()
    plain = [row for row in rows if "/benign/" in row["case_id"]]
    assert plain and all(row["options"] == "shards=3" for row in plain)
    assert all(row["n_classes"] >= 3 for row in rows)  # fewer classes than shards: not run
    eight = [row for row in rows if row["case_id"].endswith("shards-8-smoothing")]
    assert eight and all("shards=8" in row["options"] for row in eight)  # the case's own count
    assert {row["quantity"] for row in rows} == {"value", "grad"}
    skipped = {row["case_id"] for row in rows if row["verdict"] == "unsupported"}
    assert skipped == {f"{SPARSE}/options/shards-3-offset-cap-z-loss"}  # the head: not taken
    assert all(row["verdict"] == "pass" for row in rows if row["case_id"] not in skipped)


@pytest.mark.parametrize(
    ("kernel", "case"),
    [
        ("smoothing_over_local_v", "smoothing"),  # Megatron-LM #7452
        ("sum_reduced_twice", ""),  # the loss off by +log(k): every case
        ("boundary_off_by_one", ""),  # the first class of a shard read from its neighbour
    ],
)
def test_a_flawed_sharded_kernel_exits_1_naming_its_finding(tmp_path, kernel, case):
    result = verify(
        tmp_path,
        f"sharded.py:{kernel}",
        *("--op", SPARSE, "--shards", "3", "--options", "label_smoothing", "--dtype", "float32"),
        *("--cases", "*/benign/normal-4x16", *SHARD_CASES, "--no-repro"),
    )
    assert result.returncode == 1, result.stdout + result.stderr
    line = finding_line(result.stdout, "value", "over-budget")
    assert "shards" in result.stdout.split("again:")[1].split("\n")[1]  # its command repeats it
    last = result.stdout.strip().splitlines()[-1]
    assert "FAIL" in last and line.split()[0] in last
    rows = pq.read_table(tmp_path / "run" / "accuracy-verify.parquet").to_pylist()
    failing = [row for row in rows if row["verdict"] in FAILURES]
    assert failing and all(case in row["case_id"] for row in failing)


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["--shards", "0"], ["--shards 0", "from 1 to 256000"]),
        (["--shards", "256001"], ["--shards 256001", "from 1 to 256000"]),
        (["--shards", "17", "--cases", "*/benign/normal-4x16"], ["--shards 17", "from 1 to 16"]),
        (["--softcap", "0"], ["softcap 0.0", "positive number"]),
        (["--softcap", "-30"], ["softcap -30.0", "positive number"]),
        (["--temperature", "-2"], ["temperature -2.0", "> 0"]),
    ],
)
def test_a_bad_shard_count_or_head_value_exits_2_in_one_line(
    tmp_path, capsys, monkeypatch, argv, named
):
    monkeypatch.setattr(sys, "path", list(sys.path))  # a loaded kernel's folder goes on it
    target = f"{KERNELS}/sharded.py:vocab_parallel"
    status = main(["verify", target, "--op", SPARSE, *argv, "--out", str(tmp_path / "run")])
    assert status == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and all(word in lines[0] for word in named), lines
    assert not (tmp_path / "run").exists()


def test_shards_on_an_op_without_them_exits_2(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(sys, "path", list(sys.path))
    target = f"{KERNELS}/careful.py:softmax"
    argv = ["verify", target, "--op", "softmax", "--shards", "2", "--out", str(tmp_path / "run")]
    assert main(argv) == 2
    line = capsys.readouterr().err.strip()
    assert "softmax takes no option 'shards'" in line and SPARSE in line
