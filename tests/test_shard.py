"""``xentbench run --shard I/N``: N parts of one run, each in its own directory, merged by
``xentbench report``, hold exactly the rows of the unsharded run, key by key."""

from __future__ import annotations

import pandas as pd
import pytest

from xentbench.suites.catalog.selection import Selection
from xentbench.suites.cli import main
from xentbench.suites.store.rows import load
from xentbench.suites.store.schema import KEYS

SELECTION = [
    *("run", "--suite", "accuracy", "--backend", "numpy", "--dtype", "float32", "--jobs", "1"),
    *("--cases", "*/benign/*", "*/special/*"),
]
# Columns that say where and when a row was computed, not what it holds.
PROVENANCE = ("run_id", "host", "elapsed_s")


def _rows(run_dirs) -> pd.DataFrame:
    rows = load(run_dirs, "accuracy")
    return rows.set_index(list(KEYS["accuracy"])).sort_index()


def test_three_shards_merged_equal_the_unsharded_run_key_by_key(tmp_path):
    assert main([*SELECTION, "--out", str(tmp_path / "whole")]) == 0
    shards = [tmp_path / f"shard-{index}" for index in (1, 2, 3)]
    for index, shard in enumerate(shards, start=1):
        assert main([*SELECTION, "--shard", f"{index}/3", "--out", str(shard)]) == 0
    whole = _rows([tmp_path / "whole"])
    parts = [_rows([shard]) for shard in shards]
    assert all(0 < len(part) < len(whole) for part in parts), [len(p) for p in parts]
    merged = _rows(shards)
    assert not merged.index.duplicated().any()  # the parts are disjoint
    assert merged.index.equals(whole.index)
    columns = [c for c in whole.columns if c not in PROVENANCE]
    pd.testing.assert_frame_equal(merged[columns], whole[columns])
    # report merges the three directories, naming each run and its part
    assert main(["report", *map(str, shards), "--out", str(tmp_path / "merged")]) == 0
    text = (tmp_path / "merged" / "report.md").read_text()
    assert all(f"shard {index}/3" in text for index in (1, 2, 3))


def test_a_task_lands_in_exactly_one_shard_whatever_the_order():
    keys = [("numpy:softmax", f"softmax/benign/c{i}", "float32", "cpu", "eager", "value")
            for i in range(300)]  # fmt: skip
    shards = [Selection(shard=(index, 4)) for index in range(1, 5)]
    owners = [[s.shard[0] for s in shards if s.in_shard(key)] for key in keys]
    assert all(len(owner) == 1 for owner in owners)
    assert owners == [[s.shard[0] for s in shards if s.in_shard(k)] for k in reversed(keys)][::-1]
    assert {owner[0] for owner in owners} == {1, 2, 3, 4}


@pytest.mark.parametrize("value", ["0/3", "4/3", "x", "1/0", "2", "1/3/5"])
def test_a_bad_shard_exits_2_naming_the_value_and_the_valid_form(tmp_path, capsys, value):
    with pytest.raises(SystemExit) as exited:
        main(["run", "--shard", value, "--out", str(tmp_path / "run")])
    assert exited.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and repr(value) in lines[0] and "I/N" in lines[0], lines
    assert not (tmp_path / "run").exists()


def test_a_backend_split_over_workers_side_by_side_equals_the_whole_run_key_by_key(tmp_path):
    """``--split numpy=3`` with ``--jobs 3``: three workers of one backend write and merge into
    one run directory at once, and hold exactly the rows of one worker's run."""
    assert main([*SELECTION, "--out", str(tmp_path / "whole")]) == 0
    split = [*SELECTION, "--jobs", "3", "--split", "numpy=3"]  # the last --jobs counts
    assert main([*split, "--out", str(tmp_path / "split")]) == 0
    whole, parts = _rows([tmp_path / "whole"]), _rows([tmp_path / "split"])
    assert not parts.index.duplicated().any()
    assert parts.index.equals(whole.index)
    columns = [c for c in whole.columns if c not in PROVENANCE]
    pd.testing.assert_frame_equal(parts[columns], whole[columns])
    assert not (tmp_path / "split" / "parts").exists()  # every part file merged
    # each part's worker writes a log of its own, so a crash report quotes only its lines
    logs = sorted(path.name for path in (tmp_path / "split" / "logs").iterdir())
    assert logs == [f"accuracy-numpy-part{i}of3.log" for i in (1, 2, 3)], logs
    for i in (1, 2, 3):
        log = (tmp_path / "split" / "logs" / f"accuracy-numpy-part{i}of3.log").read_text()
        assert log.count("worker started") == 1 and f"part {i}/3" in log, log


@pytest.mark.parametrize("value", ["numpy", "numpy=0", "numpy=x", "nopy=2", "numpy=65"])
def test_a_bad_split_exits_2_naming_the_value_and_the_valid_form(tmp_path, capsys, value):
    assert main([*SELECTION, "--split", value, "--out", str(tmp_path / "run")]) == 2
    error = capsys.readouterr().err
    assert f"--split {value!r}" in error and "B=K" in error and "\n" not in error.strip()


def test_a_split_keeps_every_implementation_of_a_case_and_dtype_in_one_worker():
    """JAX lowers per input shape: a case's implementations and quantities share a part."""
    from xentbench.suites.run.worker import WorkerJob, _mine

    jobs = [WorkerJob("jax", "accuracy", Selection(), "", "", "", part=(i, 3)) for i in (1, 2, 3)]
    owners = set()
    for case in (f"softmax/benign/c{i}" for i in range(60)):
        calls = [(impl, q) for impl in ("jax:a", "jax:b", "jax:c") for q in ("value", "grad")]
        keys = [(impl, case, "float32", "cpu", "eager", q) for impl, q in calls]
        parts = {tuple(job.part for job in jobs if _mine(job, key)) for key in keys}
        assert len(parts) == 1 and len(next(iter(parts))) == 1, parts
        owners |= parts
    assert len(owners) == 3  # and the cases spread over every part
