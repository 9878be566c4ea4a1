"""Options through the public interfaces: plugins registered by entry point, judged by
``xentbench check`` and ``xentbench run``; careful implementations pass, wrong ones are flagged."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from flawed import options as flawed_options
from plugin_helpers import register_plugins

from xentbench.suites.cli import main
from xentbench.suites.store.rows import load

CAREFUL = "options_careful:longdouble"


@pytest.fixture
def option_plugins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XENTBENCH_CACHE", str(tmp_path / "cache"))
    register_plugins(tmp_path / "site", monkeypatch, flawed_options.ENTRY_POINTS, "options")


def _padded_batch(tmp_path: Path, dtype=np.float32) -> tuple[Path, Path, Path]:
    """Logits, labels with a third ignored (-100), and class weights of spread magnitudes."""
    rng = np.random.default_rng(7)
    logits = rng.normal(size=(24, 10)).astype(dtype)
    labels = rng.integers(0, 10, 24)
    labels[::3] = -100
    weights = (10.0 ** rng.uniform(-2, 2, 10)).astype(dtype)
    paths = tmp_path / "logits.npy", tmp_path / "labels.npy", tmp_path / "weights.npy"
    for path, array in zip(paths, (logits, labels, weights), strict=True):
        np.save(path, array)
    return paths


def _check(capsys, paths, *flags: str) -> dict[str, list[str]]:
    logits, labels, _ = paths
    argv = ["check", "--op", "sparse_softmax_cross_entropy", "--logits", str(logits)]
    argv += ["--labels", str(labels), "--backend", "options_careful", "options_flawed"]
    assert main([*argv, "--format", "json", *flags]) == 0
    verdicts: dict[str, list[str]] = {}
    for record in json.loads(capsys.readouterr().out):
        verdicts.setdefault(record["implementation"], []).append(record["verdict"])
    return verdicts


def test_mean_over_kept_rows_flags_a_mean_over_all_rows(option_plugins, tmp_path, capsys):
    paths = _padded_batch(tmp_path)
    flags = ("--reduction", "mean", "--ignore-index", "-100", "--quantity", "value", "grad")
    verdicts = _check(capsys, paths, *flags)
    assert verdicts[CAREFUL] == ["pass", "pass"]
    assert set(verdicts["options_flawed:mean-over-all-rows"]) == {"inaccurate"}


def test_smoothing_by_the_wrong_class_count_is_flagged(option_plugins, tmp_path, capsys):
    paths = _padded_batch(tmp_path)
    flags = ("--label-smoothing", "0.1", "--ignore-index", "-100", "--quantity", "value", "jvp")
    tangent = tmp_path / "tangent.npy"
    np.save(tangent, np.random.default_rng(1).normal(size=(24, 10)).astype(np.float32))
    verdicts = _check(capsys, paths, *flags, "--tangent", str(tangent))
    assert verdicts[CAREFUL] == ["pass", "pass"]
    assert set(verdicts["options_flawed:smoothing-over-c-minus-1"]) == {"inaccurate"}


def test_a_weighted_mean_divided_by_n_is_flagged(option_plugins, tmp_path, capsys):
    paths = _padded_batch(tmp_path)
    flags = ("--reduction", "mean", "--ignore-index", "-100", "--weights", str(paths[2]))
    verdicts = _check(capsys, paths, *flags, "--quantity", "value")
    assert verdicts[CAREFUL] == ["pass"]
    assert verdicts["options_flawed:weighted-mean-over-n"] == ["inaccurate"]
    # Without class weights the two normalisations agree: nothing to flag.
    verdicts = _check(capsys, paths, "--reduction", "mean", "--ignore-index", "-100")
    assert verdicts["options_flawed:weighted-mean-over-n"] == ["pass", "pass"]


@pytest.mark.slow
def test_careful_options_pass_every_option_case_of_the_catalog(option_plugins, tmp_path):
    out = tmp_path / "run"
    argv = ["run", "--suite", "accuracy", "--backend", "options_careful", "--out", str(out)]
    cases = ["sparse_softmax_cross_entropy/options/*"]
    assert main([*argv, "--cases", *cases, "--dtype", "float16", "float32", "--jobs", "1"]) == 0
    rows = load([out], "accuracy")
    measured = rows[rows["verdict"] != "unsupported"]
    assert len(measured) > 30
    assert set(measured["verdict"]) == {"pass"}, measured[measured["verdict"] != "pass"]
    assert measured["options"].str.len().gt(0).all()
    assert {"value", "grad", "jvp"} <= set(measured["quantity"])


def test_flawed_means_are_flagged_by_the_catalog(option_plugins, tmp_path):
    out = tmp_path / "run"
    argv = ["run", "--suite", "accuracy", "--backend", "options_flawed", "--out", str(out)]
    cases = ["*/options/ignore-90pct", "*/options/class-weights-spread-mean"]
    assert main([*argv, "--cases", *cases, "--dtype", "float32", "--jobs", "1"]) == 0
    rows = load([out], "accuracy").set_index(["implementation", "case_id", "quantity"])
    ignore = "sparse_softmax_cross_entropy/options/ignore-90pct"
    weighted = "sparse_softmax_cross_entropy/options/class-weights-spread-mean"
    assert rows.loc[("options_flawed:mean-over-all-rows", ignore, "value"), "verdict"] != "pass"
    assert rows.loc[("options_flawed:weighted-mean-over-n", weighted, "value"), "verdict"] != (
        "pass"
    )


def test_list_json_shows_the_options_each_implementation_takes(option_plugins, capsys):
    assert main(["list", "--format", "json"]) == 0
    entries = {entry["backend"]: entry for entry in json.loads(capsys.readouterr().out)}
    (careful,) = entries["options_careful"]["implementations"]
    assert "ignore_index" in careful["options"] and "jvp" in careful["quantities"]
    torch = {impl["name"]: impl for impl in entries["torch"]["implementations"]}
    assert torch["torch:F.cross_entropy"]["option_values"]["reduction"] == ["none", "sum", "mean"]


def test_an_unknown_reduction_is_a_usage_error(tmp_path, capsys):
    paths = _padded_batch(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        main(["check", "--op", "softmax", "--logits", str(paths[0]), "--reduction", "avg"])
    assert exit_.value.code == 2
    argv = ["check", "--op", "softmax", "--logits", str(paths[0]), "--backend", "numpy"]
    assert main([*argv, "--reduction", "mean", "--quantity", "value"]) == 2
    assert "takes no option 'reduction'" in capsys.readouterr().err
