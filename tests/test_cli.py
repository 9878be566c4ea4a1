"""The command line: exit statuses and one-line messages naming the bad value and valid ones."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from xentbench.suites.cli import main


def _xentbench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "xentbench.suites.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_unknown_backend_exits_2_naming_it_and_the_valid_ones(capsys, tmp_path):
    assert main(["run", "--backend", "nosuch", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "'nosuch'" in err[0] and "numpy" in err[0] and "torch" in err[0]


def test_unknown_dtype_exits_2_listing_the_choices():
    result = _xentbench("run", "--dtype", "float8")
    assert result.returncode == 2
    assert "'float8'" in result.stderr and "bfloat16" in result.stderr


_STARTUP = """
import sys
from xentbench.suites.cli.main import main
try:
    main(["run", "--dtype", "float8"])
except SystemExit:
    pass
print(" ".join(sorted(name for name in sys.argv[1:] if name in sys.modules)))
"""


def test_a_usage_error_imports_no_pandas_plotting_or_framework():
    """Every invocation pays for what the command line imports before parsing: seconds for
    pandas, matplotlib or a framework, which only the commands that use them import."""
    heavy = ["pandas", "matplotlib", "torch", "jax", "tensorflow", "keras", "onnxruntime"]
    result = subprocess.run(
        [sys.executable, "-c", _STARTUP, *heavy], capture_output=True, text=True, timeout=300
    )
    assert "invalid choice: 'float8'" in result.stderr
    assert result.stdout.strip() == "", result.stdout


def test_bad_shape_exits_2():
    result = _xentbench("run", "--suite", "timing", "--shapes", "64by1000")
    assert result.returncode == 2
    assert "64by1000" in result.stderr


def test_report_of_a_missing_run_exits_2(capsys, tmp_path):
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert "missing" in capsys.readouterr().err


def test_check_with_an_unreadable_file_exits_2(capsys, tmp_path):
    bad = tmp_path / "logits.npy"
    bad.write_text("not an array")
    assert main(["check", "--op", "softmax", "--logits", str(bad)]) == 2
    assert "cannot read array" in capsys.readouterr().err


def test_check_reports_verdicts_as_json_for_values_and_gradients(capsys, tmp_path):
    logits = tmp_path / "logits.npy"
    labels = tmp_path / "labels.npy"
    np.save(logits, np.array([[1e4, 0.0, -1e4], [0.5, 0.25, 0.0]], dtype=np.float32))
    np.save(labels, np.array([0, 2]))
    args = ["check", "--op", "sparse_softmax_cross_entropy", "--logits", str(logits)]
    assert main([*args, "--labels", str(labels), "--backend", "numpy", "--format", "json"]) == 0
    records = json.loads(capsys.readouterr().out)
    by_name = {r["implementation"]: r for r in records}
    required = {"backend", "implementation", "op", "quantity", "dtype", "device", "max_ulp_error"}
    assert all(required <= set(r) | {"max_rel_error"} for r in records)
    stable = by_name["numpy:stable.sparse_softmax_cross_entropy"]
    assert stable["verdict"] == "pass" and stable["tier"] in ("correctly rounded", "faithful")
    # the verdict's measure and, at the same element, its ULP error and budget
    assert stable["worst_ratio"] <= 1
    assert stable["worst_ratio"] == pytest.approx(stable["ulp_error"] / stable["budget_ulps"])
    # exp(1e4) overflows float32: the hand-written formula cannot be right here.
    assert by_name["numpy:naive.sparse_softmax_cross_entropy"]["verdict"] == "wrong"
    assert {r["dtype"] for r in records} == {"float32"}


def test_check_table_shows_the_error_measure_columns(capsys, tmp_path):
    logits = tmp_path / "logits.npy"
    np.save(logits, np.array([[0.5, 0.25, 0.0]], dtype=np.float32))
    assert main(["check", "--op", "softmax", "--logits", str(logits), "--backend", "numpy"]) == 0
    out = capsys.readouterr().out
    assert all(column in out for column in ("tier", "error/allowance", "ULPs (budget)"))


def test_check_out_of_range_label_silent_number_is_wrong(capsys, tmp_path):
    logits, labels = tmp_path / "x.npy", tmp_path / "y.npy"
    np.save(logits, np.zeros((2, 3)))
    np.save(labels, np.array([0, -1]))
    args = ["check", "--op", "sparse_softmax_cross_entropy", "--logits", str(logits)]
    assert main([*args, "--labels", str(labels), "--backend", "numpy", "--format", "json"]) == 0
    records = {r["implementation"]: r for r in json.loads(capsys.readouterr().out)}
    # NumPy indexing wraps label -1 around to the last class: a silent number for invalid input,
    # which the naive formula returns; the stable one checks its labels and raises (a pass).
    assert records["numpy:naive.sparse_softmax_cross_entropy"]["verdict"] == "wrong"
    assert records["numpy:stable.sparse_softmax_cross_entropy"]["verdict"] == "pass"


@pytest.mark.parametrize("level, expected", [("wrong", 1), ("inaccurate", 1)])
def test_fail_on_gates_the_exit_status(tmp_path: Path, level: str, expected: int):
    args = ["run", "--suite", "accuracy", "--backend", "numpy", "--dtype", "float32"]
    args += ["--impl", "numpy:naive.logsumexp", "--cases", "logsumexp/extreme/*"]
    assert main([*args, "--out", str(tmp_path / level), "--fail-on", level]) == expected


def test_fail_on_passes_when_everything_passes(tmp_path: Path):
    args = ["run", "--suite", "accuracy", "--backend", "numpy", "--dtype", "float64"]
    args += ["--impl", "numpy:stable.softmax", "--cases", "softmax/benign/*"]
    assert main([*args, "--out", str(tmp_path), "--fail-on", "inaccurate"]) == 0


@pytest.mark.slow
def test_list_json_names_every_backend_with_availability():
    result = _xentbench("list", "--format", "json")
    assert result.returncode == 0
    entries = {entry["backend"]: entry for entry in json.loads(result.stdout)}
    assert {"numpy", "torch", "tensorflow", "jax", "onnxruntime"} <= set(entries)
    numpy_entry = entries["numpy"]
    assert numpy_entry["available"] and numpy_entry["version"]
    impl = numpy_entry["implementations"][0]
    assert {"name", "op", "dtypes", "devices", "modes", "quantities"} <= set(impl)


def test_compare_exits_1_on_a_regression_and_0_without(tmp_path: Path, capsys):
    from xentbench.suites.store.rows import RowWriter, load

    base = tmp_path / "base"
    args = ["run", "--suite", "accuracy", "--backend", "numpy", "--dtype", "float64"]
    assert (
        main(
            [
                *args,
                "--impl",
                "numpy:stable.softmax",
                "--cases",
                "softmax/benign/*",
                "--out",
                str(base),
            ]
        )
        == 0
    )
    assert main(["compare", str(base), str(base)]) == 0
    # The same run, except that one evaluation went from pass to wrong.
    rows = load([base], "accuracy")
    new = tmp_path / "new"
    writer = RowWriter(new, "accuracy", "numpy")
    for index, row in enumerate(rows.to_dict("records")):
        writer.write({**row, "verdict": "wrong"} if index == 0 else row)
    writer.close()
    capsys.readouterr()
    assert main(["compare", str(base), str(new), "--format", "json"]) == 1
    assert rows.iloc[0]["case_id"] in capsys.readouterr().out


@pytest.mark.parametrize(
    ("pair", "named"),
    [("nosuch=/usr/bin/python3", "nosuch"), ("numpy", "'numpy'"), ("numpy=/no/such/python", "")],
)
def test_a_bad_python_for_a_backend_exits_2(capsys, tmp_path, pair, named):
    code = main(["run", "--backend", "numpy", "--python", pair, "--out", str(tmp_path / "r")])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and named in err[0] and "--python" in err[0]


def test_a_run_of_a_newer_schema_is_refused_with_exit_2(tmp_path, capsys):
    from xentbench.suites.store.rows import RowWriter
    from xentbench.suites.store.run_json import update_run_info
    from xentbench.suites.store.schema import SCHEMA_VERSION

    writer = RowWriter(tmp_path, "accuracy", "numpy")
    writer.write({"implementation": "numpy:x", "case_id": "c", "verdict": "pass"})
    writer.close()
    update_run_info(tmp_path, {"schema_version": SCHEMA_VERSION + 1})
    assert main(["report", str(tmp_path)]) == 2
    assert f"schema version {SCHEMA_VERSION + 1}" in capsys.readouterr().err


def test_parquet_files_carry_the_schema_version(tmp_path):
    import pyarrow.parquet as pq

    from xentbench.suites.store.rows import RowWriter
    from xentbench.suites.store.schema import SCHEMA_VERSION

    writer = RowWriter(tmp_path, "accuracy", "numpy")
    writer.write({"implementation": "numpy:x", "case_id": "c", "verdict": "pass"})
    path = writer.close()
    metadata = pq.read_schema(path).metadata
    assert int(metadata[b"xentbench.schema_version"]) == SCHEMA_VERSION


def test_repeat_runs_below_one_exits_2(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--suite", "timing", "--repeat-runs", "0"])
    assert exit_info.value.code == 2
    assert "invalid count '0'" in capsys.readouterr().err


def test_compare_with_a_significance_outside_0_1_exits_2(capsys, tmp_path):
    for run in ("a", "b"):
        (tmp_path / run).mkdir()
    args = ["compare", str(tmp_path / "a"), str(tmp_path / "b"), "--significance", "1.5"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--significance 1.5" in err[0]


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        (["--suite", "accuracy", "--against", "{tmp}/b"], "--suite accuracy"),
        (["--suite", "timing", "--against", "{tmp}/a"], "is --out itself"),
        (["--suite", "timing", "--against-python", "numpy=/usr/bin/python3"], "needs --against"),
        (
            ["--suite", "timing", "--against", "{tmp}/b", "--against-python", "numpy"],
            "invalid --against-python 'numpy'",
        ),
    ],
)
def test_a_bad_against_exits_2_naming_it(capsys, tmp_path, extra, named):
    args = [part.replace("{tmp}", str(tmp_path)) for part in extra]
    code = main(["run", "--backend", "numpy", "--out", str(tmp_path / "a"), *args])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and named in err[0]
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()  # nothing created


def test_against_a_directory_another_run_writes_exits_2_naming_the_holder(capsys, tmp_path):
    from xentbench.suites.run.lock import hold

    (tmp_path / "b").mkdir()
    argv = ["run", "--suite", "timing", "--backend", "numpy", "--out", str(tmp_path / "a")]
    with hold(tmp_path / "b"):
        code = main([*argv, "--against", str(tmp_path / "b")])
    assert code == 2
    assert "being written by another xentbench run (pid" in capsys.readouterr().err


def test_a_worker_that_fails_to_start_says_so_and_new_moves_its_log_aside(tmp_path, capsys):
    out = tmp_path / "r"
    argv = ["run", "--suite", "accuracy", "--backend", "numpy", "--dtype", "float32"]
    argv += ["--cases", "softmax/benign/*", "--python", "numpy=/bin/false", "--out", str(out)]
    assert main(argv) == 1
    err = " ".join(capsys.readouterr().err.split())
    assert "numpy (accuracy): the worker failed to start" in err, err
    assert "logs/accuracy-numpy.log" in err and "matches no evaluation" not in err
    assert (out / "logs" / "accuracy-numpy.log").is_file()
    assert main([*argv, "--new"]) == 1
    assert len(list(out.glob("previous-*/logs/accuracy-numpy.log"))) == 1
