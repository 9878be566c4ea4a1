"""TensorFlow and Keras compositions of the LLM head (adapters/tensorflow_head.py): they pass
the catalog's head cases in float32 and float64, declare what they take, and the other
TensorFlow implementations are unsupported for the head's options."""

from __future__ import annotations

import pytest

from xentbench.suites.catalog.cases import catalog
from xentbench.suites.catalog.head_tables import HEAD_CASES
from xentbench.suites.cli import main
from xentbench.suites.store.rows import load

OPS = ("sparse_softmax_cross_entropy", "softmax_cross_entropy", "log_softmax")
NAMES = {s.name for s in HEAD_CASES} - {"softcap-padded-vocabulary"}  # 50304 classes: slow
CASES = [c.id for c in catalog() if c.name in NAMES and c.op in OPS]


def test_the_tensorflow_compositions_pass_the_head_cases(tmp_path, monkeypatch):
    pytest.importorskip("tensorflow")
    monkeypatch.setenv("XENTBENCH_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "run"
    argv = ["run", "--suite", "accuracy", "--backend", "tensorflow", "--out", str(out)]
    assert main([*argv, "--cases", *CASES, "--dtype", "float32", "float64", "--jobs", "1"]) == 0
    rows = load([out], "accuracy")
    mine = rows[rows["implementation"].str.contains("softcapped")]
    assert set(mine["implementation"].str.partition("(softcapped")[0]) == {
        "tensorflow:tf.nn.sparse_softmax_cross_entropy_with_logits",
        "tensorflow:keras.losses.categorical_crossentropy",
        "tensorflow:tf.nn.log_softmax",
    }
    measured = mine[mine["verdict"] != "unsupported"]
    assert {"value", "grad"} <= set(measured["quantity"])
    assert set(measured["verdict"]) == {"pass"}, measured[measured["verdict"] != "pass"]
    others = rows[~rows["implementation"].str.contains("softcapped")]
    assert set(others["verdict"]) == {"unsupported"}


def test_the_tensorflow_compositions_declare_what_they_take():
    pytest.importorskip("tensorflow")
    from xentbench.adapters.tensorflow_head import head_entries

    declared = {impl.api: set(impl.options) for impl, _ in head_entries()}
    assert declared["tf.nn.log_softmax(softcapped)"] == {
        "softcap",
        "temperature",
        "cotangent",
        "tangent",
    }
    losses = [api for api in declared if api.endswith("+z_loss")]
    assert len(losses) == 2 and all("z_loss" in declared[api] for api in losses)
