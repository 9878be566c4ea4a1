"""Every bad input answered: one line, exit 2, naming the bad value (and the valid ones);
compare's exit codes usable as a CI gate; check normalises what frameworks must receive."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from xentbench.suites.cli import main
from xentbench.suites.store.rows import RowWriter, load
from xentbench.suites.store.run_json import update_run_info

NUMPY_RUN = ["run", "--suite", "accuracy", "--backend", "numpy", "--dtype", "float64"]
NUMPY_RUN += ["--impl", "numpy:stable.softmax", "--cases", "softmax/benign/*"]


@pytest.fixture(scope="module")
def base_run(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("base") / "run"
    assert main([*NUMPY_RUN, "--out", str(run_dir)]) == 0
    return run_dir


def _error_line(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert "Traceback" not in lines[0]
    return lines[0]


# ---------------------------------------------------------------- compare as a CI gate


def test_compare_of_a_run_with_itself_exits_0(base_run):
    assert main(["compare", str(base_run), str(base_run)]) == 0


def test_compare_with_vanished_evaluations_exits_1_listing_them(base_run, tmp_path, capsys):
    rows = load([base_run], "accuracy")
    new = tmp_path / "new"
    writer = RowWriter(new, "accuracy", "numpy")
    for row in rows.iloc[1:].to_dict("records"):
        writer.write(row)
    writer.close()
    capsys.readouterr()
    assert main(["compare", str(base_run), str(new), "--format", "json"]) == 1
    removed = json.loads(capsys.readouterr().out)["removed"]
    assert [r["case"] for r in removed] == [rows.iloc[0]["case_id"]]


@pytest.mark.parametrize("content", ["empty", "run.json only"])
def test_compare_against_an_empty_run_exits_2(base_run, tmp_path, capsys, content):
    empty = tmp_path / "empty"
    empty.mkdir()
    if content == "run.json only":
        update_run_info(empty, {"run_id": "x"})
    assert main(["compare", str(base_run), str(empty)]) == 2
    assert "holds no results" in _error_line(capsys)
    assert main(["compare", str(empty), str(base_run)]) == 2


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty file"])
def test_compare_with_a_corrupt_results_file_exits_2(base_run, tmp_path, capsys, damage):
    import shutil

    corrupt = tmp_path / "corrupt"
    shutil.copytree(base_run, corrupt)
    path = corrupt / "accuracy-numpy.parquet"
    data = path.read_bytes()
    path.write_bytes({"truncated": data[: len(data) // 2], "garbage": b"x" * 100}.get(damage, b""))
    assert main(["compare", str(base_run), str(corrupt)]) == 2
    assert "accuracy-numpy.parquet" in _error_line(capsys)
    assert main(["report", str(corrupt)]) == 2


def test_compare_with_a_corrupt_run_json_exits_2(base_run, tmp_path, capsys):
    import shutil

    corrupt = tmp_path / "corrupt"
    shutil.copytree(base_run, corrupt)
    (corrupt / "run.json").write_text("{not json")
    assert main(["compare", str(base_run), str(corrupt)]) == 2
    assert "run.json" in _error_line(capsys)


def test_compare_with_an_incompatible_schema_exits_2(base_run, tmp_path, capsys):
    import shutil

    from xentbench.suites.store.schema import SCHEMA_VERSION

    newer = tmp_path / "newer"
    shutil.copytree(base_run, newer)
    update_run_info(newer, {"schema_version": SCHEMA_VERSION + 1})
    assert main(["compare", str(base_run), str(newer)]) == 2
    assert "schema version" in _error_line(capsys)


@pytest.mark.parametrize("threshold", [["--ulp-threshold", "0.5"], ["--time-threshold", "-1"]])
def test_compare_with_a_bad_threshold_exits_2(base_run, capsys, threshold):
    assert main(["compare", str(base_run), str(base_run), *threshold]) == 2
    assert threshold[0] in _error_line(capsys)


# ---------------------------------------------------------------- report


def test_report_of_a_run_given_twice_counts_it_once(base_run, tmp_path):
    import pandas as pd

    once, twice = tmp_path / "once", tmp_path / "twice"
    assert main(["report", str(base_run), "--out", str(once)]) == 0
    assert main(["report", str(base_run), str(base_run), "--out", str(twice)]) == 0
    assert len(pd.read_csv(twice / "accuracy.csv")) == len(pd.read_csv(once / "accuracy.csv"))


@pytest.mark.parametrize("content", ["empty", "run.json only"])
def test_report_of_a_directory_without_results_exits_2(tmp_path, capsys, content):
    if content == "run.json only":
        update_run_info(tmp_path, {"run_id": "x"})
    assert main(["report", str(tmp_path)]) == 2
    assert "holds no results" in _error_line(capsys)


def test_report_out_that_is_a_file_exits_2(base_run, tmp_path, capsys):
    file = tmp_path / "file"
    file.write_text("")
    assert main(["report", str(base_run), "--out", str(file)]) == 2
    assert "is a file" in _error_line(capsys)


# ---------------------------------------------------------------- run usage


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        (["--jobs", "0"], "--jobs 0"),
        (["--jobs", "-3"], "--jobs -3"),
        (["--timeout", "0"], "--timeout 0"),
        (["--timeout", "-5"], "--timeout -5"),
        (["--timeout", "nan"], "--timeout nan"),
        (["--timeout", "inf"], "--timeout inf"),
        (["--backend", "numpy", "numpy"], "'numpy'"),
        (["--cases", "nosuch/*"], "'nosuch/*'"),
    ],
)
def test_bad_run_usage_exits_2_before_any_work(tmp_path, capsys, extra, named):
    out = tmp_path / "run"
    assert main([*NUMPY_RUN, "--out", str(out), *extra]) == 2
    line = _error_line(capsys)
    assert (named in line and "valid" in line) or "once" in line
    assert not list(out.glob("*.parquet"))


def test_an_implementation_glob_matching_nothing_exits_2(tmp_path, capsys):
    args = [*NUMPY_RUN, "--out", str(tmp_path / "run"), "--impl", "numpy:nosuch*"]
    assert main(args) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert "'numpy:nosuch*'" in line and "numpy:stable.softmax" in line


def test_run_out_that_is_a_file_or_under_a_file_exits_2(tmp_path, capsys):
    file = tmp_path / "file"
    file.write_text("")
    for out in (file, file / "below"):
        assert main([*NUMPY_RUN, "--out", str(out)]) == 2
        assert str(out) in _error_line(capsys)


def test_run_out_on_a_read_only_file_system_exits_2(capsys):
    out = Path("/sys/xentbench-run")
    try:
        out.mkdir()
    except OSError:
        pass
    else:
        out.rmdir()
        pytest.skip("/sys is writable here")
    assert main([*NUMPY_RUN, "--out", str(out)]) == 2
    assert "cannot be created" in _error_line(capsys)


# ---------------------------------------------------------------- check


def _save(tmp_path: Path, name: str, array) -> str:
    path = tmp_path / name
    np.save(path, np.asarray(array))
    return str(path)


def _check(tmp_path, op: str, logits, labels=None, *extra: str) -> list[str]:
    args = ["check", "--op", op, "--logits", _save(tmp_path, "x.npy", logits)]
    if labels is not None:
        args += ["--labels", _save(tmp_path, "y.npy", labels)]
    return [*args, *extra]


SPARSE = "sparse_softmax_cross_entropy"
LOGITS = np.array([[1.0, 2.0, 3.0], [0.5, -1.0, 2.0]], dtype=np.float32)


@pytest.mark.parametrize("width", [np.int8, np.int16, np.int32, np.uint8, np.uint64])
def test_check_casts_integer_labels_of_any_width(tmp_path, capsys, width):
    args = _check(tmp_path, SPARSE, LOGITS, np.array([0, 2], dtype=width))
    assert main([*args, "--backend", "numpy", "torch", "--format", "json"]) == 0
    records = json.loads(capsys.readouterr().out)
    stable = [r for r in records if r.get("implementation", "").endswith("F.cross_entropy")]
    assert stable and all(r["verdict"] == "pass" for r in stable)
    assert not [r for r in records if r["verdict"] == "error"]


def test_check_accepts_3d_logits_with_matching_labels(tmp_path, capsys):
    logits = np.linspace(-3, 3, 24, dtype=np.float32).reshape(2, 4, 3)
    args = _check(tmp_path, SPARSE, logits, np.array([[0, 1, 2, 0], [2, 2, 1, 0]]))
    assert main([*args, "--backend", "numpy", "torch", "--format", "json"]) == 0
    records = json.loads(capsys.readouterr().out)
    assert records and not [r for r in records if r["verdict"] == "error"]


@pytest.mark.parametrize(
    ("op", "logits", "labels", "named"),
    [
        ("softmax", np.float32(1.0), None, "0-d"),
        ("softmax", np.zeros((0, 3), np.float32), None, "no elements"),
        ("softmax", np.zeros((2, 0), np.float32), None, "no elements"),
        ("softmax", np.ones((2, 3), np.complex64), None, "complex"),
        ("softmax", np.ones((2, 3), bool), None, "not numeric"),
        ("softmax", LOGITS, np.array([0, 1]), "takes no labels"),
        (SPARSE, LOGITS, None, "needs --labels"),
        (SPARSE, LOGITS, np.array([0.0, 1.0]), "float64"),
        (SPARSE, LOGITS, np.array([0.0, math.nan]), "float64"),
        (SPARSE, LOGITS, np.array([True, False]), "bool"),
        (SPARSE, LOGITS, np.array([0, 1, 2]), "(3,)"),
        (SPARSE, LOGITS, np.array([[0, 1]]), "(1, 2)"),
        ("softmax_cross_entropy", LOGITS, np.ones((2, 2)), "(2, 2)"),
        ("sigmoid_cross_entropy", LOGITS, np.ones((3, 2)), "(3, 2)"),
        ("softmax_cross_entropy", LOGITS, np.ones((2, 3), np.complex64), "complex"),
    ],
)
def test_check_refuses_input_that_no_op_can_take(tmp_path, capsys, op, logits, labels, named):
    assert main([*_check(tmp_path, op, logits, labels), "--backend", "numpy"]) == 2
    assert named in _error_line(capsys)


def test_check_reads_npz_arrays_by_name_and_refuses_otherwise(tmp_path, capsys):
    archive = tmp_path / "arrays.npz"
    np.savez(archive, logits=LOGITS, labels=np.array([0, 2]))
    args = ["check", "--op", SPARSE, "--backend", "numpy", "--format", "json"]
    named = [*args, "--logits", f"{archive}:logits", "--labels", f"{archive}:labels"]
    assert main(named) == 0
    assert json.loads(capsys.readouterr().out)
    assert main([*args, "--logits", str(archive), "--labels", f"{archive}:labels"]) == 2
    assert f"{archive}:logits" in _error_line(capsys)  # the valid names are listed
    assert main([*args, "--logits", f"{archive}:nosuch", "--labels", f"{archive}:labels"]) == 2
    assert "'nosuch'" in _error_line(capsys)


@pytest.mark.parametrize("content", [b"", b"not an array", b"\x93NUMPY\x01\x00garbage"])
def test_check_refuses_unreadable_files(tmp_path, capsys, content):
    path = tmp_path / "x.npy"
    path.write_bytes(content)
    assert main(["check", "--op", "softmax", "--logits", str(path)]) == 2
    assert "cannot read array" in _error_line(capsys)
