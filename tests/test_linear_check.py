"""``xentbench check --op linear_cross_entropy`` through the public CLI: the user's hidden,
classifier, bias and labels judged per quantity; the bfloat16 true-class-gradient bug of
tests/flawed/linear.py is flagged on a confident batch, the careful composition passes, and bad
input is one line with exit status 2."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from flawed.linear import ENTRY_POINTS
from plugin_helpers import register_plugins

from xentbench.suites.cli import main

QUANTITIES = {"value", "grad_hidden", "grad_weight", "grad_bias"}


@pytest.fixture
def linear_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XENTBENCH_CACHE", str(tmp_path / "cache"))
    register_plugins(tmp_path / "site", monkeypatch, ENTRY_POINTS, "xentbench-flawed-linear")


def _confident_batch(tmp_path: Path) -> dict[str, Path]:
    """Rows whose true-class logit is 12 above the rest: p_y - 1 ~ -1e-3 (lost in bfloat16)."""
    rng = np.random.default_rng(3)
    rows, features, classes = 6, 16, 64
    hidden = rng.normal(size=(rows, features))
    weight = rng.normal(scale=1 / 4, size=(classes, features))
    labels = rng.choice(classes, size=rows, replace=False)
    weight[labels] = hidden * (12.0 / (hidden * hidden).sum(axis=1, keepdims=True))
    arrays = {
        "hidden": hidden.astype(np.float32),
        "classifier": weight.astype(np.float32),
        "bias": rng.normal(scale=0.1, size=classes).astype(np.float32),
        "labels": labels.astype(np.int64),
    }
    paths = {}
    for name, array in arrays.items():
        paths[name] = tmp_path / f"{name}.npy"
        np.save(paths[name], array)
    return paths


def _check(capsys, paths: dict[str, Path], *flags: str) -> list[dict]:
    args = ["check", "--op", "linear_cross_entropy", "--backend", "flawed-linear"]
    for name in ("hidden", "classifier", "labels"):
        args += [f"--{name}", str(paths[name])]
    assert main([*args, *flags, "--format", "json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_check_judges_every_linear_quantity_and_flags_the_bfloat16_true_class(
    linear_plugin, tmp_path, capsys
):
    paths = _confident_batch(tmp_path)
    records = _check(capsys, paths, "--bias", str(paths["bias"]))
    verdicts = {(r["implementation"], r["quantity"]): r["verdict"] for r in records}
    careful = {q: v for (i, q), v in verdicts.items() if i == "flawed-linear:careful"}
    assert careful == dict.fromkeys(QUANTITIES, "pass")
    flawed = {q: v for (i, q), v in verdicts.items() if i == "flawed-linear:bf16-true-class-grad"}
    assert flawed["value"] == "pass"
    assert flawed["grad_hidden"] == flawed["grad_weight"] == "inaccurate"


def test_check_takes_the_quantity_and_ignore_index(linear_plugin, tmp_path, capsys):
    paths = _confident_batch(tmp_path)
    labels = np.load(paths["labels"])
    labels[::2] = -100
    np.save(paths["labels"], labels)
    records = _check(capsys, paths, "--quantity", "grad_weight", "--ignore-index", "-100")
    careful = [r for r in records if r["implementation"] == "flawed-linear:careful"]
    assert [(r["quantity"], r["verdict"]) for r in careful] == [("grad_weight", "pass")]
    assert "ignore_index=-100" in careful[0]["options"]


def _exit_status(args: list[str]) -> int:
    """main's status, whether argparse exits or the command returns it."""
    try:
        return main(args)
    except SystemExit as exited:
        return int(exited.code)


@pytest.mark.parametrize(
    ("change", "flags", "message"),
    [
        ("classifier", (), "--classifier of shape (64, 15) does not match --hidden"),
        ("labels", (), "label 64 is outside [0, 64)"),
        (None, ("--quantity", "grad_bias"), "grad_bias needs --bias"),
        (None, ("--quantity", "grad"), "quantity 'grad' is not one of linear_cross_entropy's"),
        (None, ("--reduction", "sum"), "--reduction is not an option of linear_cross_entropy"),
        (None, ("--logits", "x.npy"), "linear_cross_entropy takes no --logits"),
    ],
)
def test_bad_linear_input_is_one_line_and_exit_2(
    linear_plugin, tmp_path, capsys, change, flags, message
):
    paths = _confident_batch(tmp_path)
    if change == "classifier":
        np.save(paths["classifier"], np.zeros((64, 15), np.float32))
    if change == "labels":
        np.save(paths["labels"], np.array([0, 1, 2, 3, 4, 64]))
    args = ["check", "--op", "linear_cross_entropy", "--backend", "flawed-linear"]
    for name in ("hidden", "classifier", "labels"):
        args += [f"--{name}", str(paths[name])]
    assert _exit_status([*args, *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err


def test_linear_flags_on_another_op_and_missing_classifier_are_refused(tmp_path, capsys):
    paths = _confident_batch(tmp_path)
    for args, message in (
        (
            ["--op", "softmax", "--logits", str(paths["hidden"]), "--hidden", str(paths["hidden"])],
            "--hidden is for --op linear_cross_entropy only",
        ),
        (
            ["--op", "linear_cross_entropy", "--hidden", str(paths["hidden"])],
            "linear_cross_entropy needs --classifier",
        ),
        (["--op", "softmax"], "softmax needs --logits"),
    ):
        assert _exit_status(["check", *args]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message in err, err
