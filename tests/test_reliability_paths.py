"""Nothing is read, written or deleted through a symlink in a run or report directory, and a
merge deletes only the part files it merged (real symlinks and files in tmp_path)."""

from __future__ import annotations

from pathlib import Path

import pytest

from xentbench.suites.cli import main
from xentbench.suites.store import rows as store_rows
from xentbench.suites.store.rows import RowWriter, load
from xentbench.suites.store.run_json import update_run_info
from xentbench.suites.store.schema import KEYS

NUMPY_RUN = ["run", "--suite", "accuracy", "--backend", "numpy", "--dtype", "float64"]
NUMPY_RUN += ["--impl", "numpy:stable.softmax", "--cases", "softmax/benign/*"]


def _row(case: str) -> dict:
    return {"implementation": "numpy:x", "case_id": case, "verdict": "pass", "quantity": "value"}


def _one_error_line(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_a_run_lock_symlink_is_refused_and_its_target_kept(tmp_path, capsys):
    precious = tmp_path / "precious.txt"
    precious.write_text("keep me")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "run.lock").symlink_to(precious)
    assert main([*NUMPY_RUN, "--out", str(run_dir)]) == 2
    assert "symlink" in _one_error_line(capsys)
    assert precious.read_text() == "keep me"


def test_a_parts_symlink_is_refused_and_the_foreign_file_neither_read_nor_deleted(tmp_path, capsys):
    foreign = tmp_path / "foreign" / "accuracy-numpy"
    writer = RowWriter(tmp_path / "elsewhere", "accuracy", "numpy")
    writer.write(_row("softmax/benign/x"))
    writer.flush()
    foreign.parent.mkdir()
    (tmp_path / "elsewhere" / "parts" / "accuracy-numpy").rename(foreign)
    planted = sorted(foreign.iterdir())
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "parts").symlink_to(foreign.parent, target_is_directory=True)
    assert main([*NUMPY_RUN, "--out", str(run_dir)]) == 2
    assert "symlink" in _one_error_line(capsys)
    assert sorted(foreign.iterdir()) == planted
    assert main(["report", str(run_dir)]) == 2
    assert main(["compare", str(run_dir), str(run_dir)]) == 2


@pytest.mark.parametrize("name", ["run.json", "accuracy-numpy.parquet"])
def test_a_symlinked_run_file_is_refused(tmp_path, capsys, name):
    run_dir = tmp_path / "run"
    assert main([*NUMPY_RUN, "--out", str(run_dir)]) == 0
    moved = tmp_path / name
    (run_dir / name).rename(moved)
    (run_dir / name).symlink_to(moved)
    capsys.readouterr()
    assert main([*NUMPY_RUN, "--out", str(run_dir)]) == 2
    assert "symlink" in _one_error_line(capsys)
    assert main(["report", str(run_dir)]) == 2
    assert "symlink" in _one_error_line(capsys)


@pytest.mark.parametrize("planted", ["logs", "logs/accuracy-numpy.log"])
def test_a_symlinked_worker_log_is_refused_and_its_target_kept(tmp_path, capsys, planted):
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "accuracy-numpy.log").write_text("keep me")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    if planted == "logs":
        (run_dir / "logs").symlink_to(precious, target_is_directory=True)
    else:
        (run_dir / "logs").mkdir()
        (run_dir / planted).symlink_to(precious / "accuracy-numpy.log")
    assert main([*NUMPY_RUN, "--out", str(run_dir)]) == 2
    *_, last = capsys.readouterr().err.strip().splitlines()  # after "run directory: ..."
    assert last.startswith("xentbench run: error: ") and "symlink" in last
    assert [path.read_text() for path in precious.iterdir()] == ["keep me"]


def test_report_replaces_symlinked_outputs_instead_of_writing_through_them(tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert main([*NUMPY_RUN, "--out", str(run_dir)]) == 0
    out = tmp_path / "report"
    out.mkdir()
    victims = {}
    for name in ("report.md", "report.html", "accuracy.csv"):
        victim = tmp_path / f"victim-{name}"
        victim.write_text("keep me")
        (out / name).symlink_to(victim)
        victims[name] = victim
    assert main(["report", str(run_dir), "--out", str(out)]) == 0
    for name, victim in victims.items():
        assert victim.read_text() == "keep me"
        assert not (out / name).is_symlink() and (out / name).stat().st_size > 0
    assert not list(out.glob(".report-*")) and not list(out.glob(".tmp-*"))


def test_close_deletes_only_the_parts_it_merged(tmp_path, monkeypatch):
    """A part written while a merge reads (here: by another writer, mid-merge) survives it and
    is merged next time; the old merge deleted every part-* by wildcard and lost such rows."""
    first = RowWriter(tmp_path, "accuracy", "numpy")
    first.write(_row("a"))
    read = store_rows._read
    late = RowWriter(tmp_path, "accuracy", "numpy")

    def read_then_write_a_part(path, suite):
        if late._pending == [] and not getattr(late, "_wrote", False):
            late._wrote = True
            late.write(_row("b"))
            late.flush()
        return read(path, suite)

    monkeypatch.setattr(store_rows, "_read", read_then_write_a_part)
    first.close()
    monkeypatch.setattr(store_rows, "_read", read)
    assert sorted(load([tmp_path], "accuracy")["case_id"]) == ["a", "b"]
    RowWriter(tmp_path, "accuracy", "numpy").close()
    assert sorted(load([tmp_path], "accuracy")["case_id"]) == ["a", "b"]


@pytest.mark.slow
def test_runs_one_after_another_into_one_directory_keep_every_row(tmp_path):
    """A wide run, then narrow ones (overlapping and new) into the same directory: the union."""
    run_dir = tmp_path / "run"
    base = ["run", "--suite", "accuracy", "--backend", "numpy", "--dtype", "float64"]
    base += ["--out", str(run_dir)]
    assert main([*base, "--impl", "numpy:stable.*", "--cases", "softmax/benign/*"]) == 0
    wide = len(load([run_dir], "accuracy"))
    for impl in ("numpy:naive.softmax", "numpy:stable.softmax", "numpy:naive.log_softmax"):
        assert main([*base, "--impl", impl, "--cases", "*/benign/*"]) == 0
    rows = load([run_dir], "accuracy")
    assert not rows.duplicated(list(KEYS["accuracy"])).any()
    narrow = rows[rows["implementation"].isin(["numpy:naive.softmax", "numpy:naive.log_softmax"])]
    assert len(rows) >= wide + len(narrow) and len(narrow) > 0


def test_writes_leave_no_temporary_files(tmp_path):
    writer = RowWriter(tmp_path, "accuracy", "numpy")
    writer.write(_row("a"))
    writer.close()
    update_run_info(tmp_path, {"seed": 0})
    assert sorted(p.name for p in Path(tmp_path).iterdir() if p.name.startswith(".tmp")) == []
