"""cut-cross-entropy's ``softcap`` in its plugin: declared (and only it of the LLM head's
options), passed through to ``linear_cross_entropy(..., softcap=cap)``. The declaration and
the argument mapping are tested with a stand-in module wherever the package is missing; with
the ``cut-cross-entropy`` extra installed its CPU path (``impl="torch_compile"``) runs the
catalog's cap case; the CUDA path (``impl="cce"``) runs the same case in ``nox -s gpu``'s
plugins-accuracy part (tests/gpu_session.py), which runs the plugin's whole catalog."""

from __future__ import annotations

import importlib
import sys
import types

import numpy as np
import pytest
from plugin_helpers import register_plugins

from xentbench.adapters.base import Call
from xentbench.suites.cli import main
from xentbench.suites.store.rows import load

torch = pytest.importorskip("torch")
ADAPTER = "xentbench.adapters.cut_cross_entropy_adapter"
CASE = "linear_cross_entropy/linear/softcap-30"


@pytest.fixture
def stand_in(monkeypatch):
    """The plugin module loaded against a stand-in ``cut_cross_entropy`` that records each
    call's keywords and computes the capped loss as the package documents it."""
    calls = []

    def linear_cross_entropy(e, c, targets, **keywords):
        calls.append(keywords)
        logits = e @ c.T
        cap = keywords.get("softcap")
        if cap is not None:
            logits = torch.tanh(logits / cap) * cap
        return torch.nn.functional.cross_entropy(
            logits.float(), targets, ignore_index=keywords["ignore_index"], reduction="none"
        )

    module = types.ModuleType("cut_cross_entropy")
    module.linear_cross_entropy = linear_cross_entropy
    monkeypatch.setitem(sys.modules, "cut_cross_entropy", module)
    monkeypatch.delitem(sys.modules, ADAPTER, raising=False)
    adapter = importlib.import_module(ADAPTER).CutCrossEntropyAdapter()
    yield adapter, calls
    sys.modules.pop(ADAPTER, None)  # not kept bound to the stand-in


def test_the_plugin_declares_softcap_and_no_other_head_option(stand_in):
    adapter, _ = stand_in
    for impl in adapter.implementations():
        assert "softcap" in impl.options
        assert not {"temperature", "z_loss", "shards"} & set(impl.options)
    impl = next(i for i in adapter.implementations() if "torch_compile" in i.name)
    call = Call(impl, "float32", "cpu", "eager", "value", options={"temperature": 2.0})
    assert "takes no option temperature" in adapter.unsupported_reason(call)
    capped = Call(impl, "float32", "cpu", "eager", "value", options={"softcap": 30.0})
    assert adapter.unsupported_reason(capped) is None


@pytest.mark.parametrize(("options", "passed"), [({"softcap": 30.0}, 30.0), ({}, None)])
def test_the_cap_reaches_linear_cross_entropy(stand_in, options, passed):
    adapter, calls = stand_in
    impl = next(i for i in adapter.implementations() if "torch_compile" in i.name)
    rng = np.random.default_rng(0)
    hidden = (rng.normal(size=(4, 8)) * 20).astype(np.float32)
    weight = rng.normal(size=(10, 8)).astype(np.float32)
    labels = np.array([0, 3, -100, 9])
    options = {"weight": weight, "ignore_index": -100, **options}
    call = Call(impl, "float32", "cpu", "eager", "value", options=options)
    prepared = adapter.prepare(call, hidden, labels)
    got = prepared.to_numpy(prepared.run())
    assert calls[-1]["softcap"] == passed
    assert calls[-1]["impl"] == "torch_compile" and calls[-1]["reduction"] == "none"
    logits = hidden.astype(np.float64) @ weight.T.astype(np.float64)
    if passed is not None:
        logits = passed * np.tanh(logits / passed)
    lse = np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1)) + logits.max(1)
    kept = labels != -100
    expected = lse[kept] - logits[kept, labels[kept]]
    np.testing.assert_allclose(got[kept], expected, rtol=1e-5)


@pytest.mark.slow
def test_the_cpu_path_passes_the_cap_case(tmp_path, monkeypatch):
    pytest.importorskip("cut_cross_entropy")
    entry = {"cut_cross_entropy": f"{ADAPTER}:CutCrossEntropyAdapter"}
    register_plugins(tmp_path / "site", monkeypatch, entry, "xentbench-cce-softcap")
    out = tmp_path / "run"
    args = ["run", "--suite", "accuracy", "--backend", "cut_cross_entropy", "--dtype", "float32"]
    assert main([*args, "--cases", CASE, "--out", str(out)]) == 0
    rows = load([out], "accuracy")
    cpu = rows[rows["implementation"].str.contains("torch_compile")]
    assert cpu["options"].str.contains("softcap=30.0").all()
    assert set(cpu["quantity"]) == {"value", "grad_hidden", "grad_weight"}
    assert set(cpu["verdict"]) == {"pass"}, cpu[["quantity", "verdict", "message"]]
