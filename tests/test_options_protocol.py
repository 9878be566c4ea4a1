"""The options extension of the adapter protocol stays backward compatible: a plugin that
declares no options is never asked for one, nor for a cotangent, a tangent or jvp."""

from __future__ import annotations

import numpy as np
import pytest

from xentbench.adapters.base import LINEAR_OP, Adapter, Call, Implementation, PreparedCall
from xentbench.suites.catalog import cases
from xentbench.suites.catalog.selection import Selection


class OldPlugin(Adapter):
    """Written against the protocol before options existed."""

    name = "old"

    def version(self) -> str:
        return "1"

    def implementations(self):
        return (
            Implementation("old:lse", "logsumexp", ("float64",), gradient=True),
            Implementation("old:sparse", "sparse_softmax_cross_entropy", ("float64",)),
        )

    def prepare(self, call, logits, labels):
        raise AssertionError("never prepared in these tests")


def test_an_old_implementation_offers_value_and_grad_only():
    lse, sparse = OldPlugin().implementations()
    assert lse.quantities == ("value", "grad") and sparse.quantities == ("value",)
    assert lse.options == () and not lse.forward


def test_a_call_with_an_option_is_unsupported_for_an_old_plugin():
    adapter = OldPlugin()
    lse, sparse = adapter.implementations()
    cotangent = Call(lse, "float64", quantity="grad", options={"cotangent": np.ones(2)})
    assert "takes no option cotangent" in adapter.unsupported_reason(cotangent)
    assert "offers no jvp" in adapter.unsupported_reason(Call(lse, "float64", quantity="jvp"))
    mean = Call(sparse, "float64", options={"reduction": "mean"})
    assert "takes no option reduction" in adapter.unsupported_reason(mean)
    assert adapter.unsupported_reason(Call(lse, "float64", quantity="grad")) is None


def test_option_values_limit_what_an_implementation_takes():
    impl = Implementation(
        "new:ce",
        "sparse_softmax_cross_entropy",
        ("float64",),
        options=("reduction",),
        option_values=(("reduction", ("none", "mean")),),
    )

    class New(OldPlugin):
        def implementations(self):
            return (impl,)

    reason = New().unsupported_reason(Call(impl, "float64", options={"reduction": "sum"}))
    assert "takes no reduction=sum" in reason
    assert New().unsupported_reason(Call(impl, "float64", options={"reduction": "mean"})) is None


def test_softmax_gradients_and_forward_mode_need_their_directions_declared():
    with pytest.raises(ValueError, match="no gradient"):
        Implementation("new:softmax", "softmax", ("float64",), gradient=True)
    with pytest.raises(ValueError, match="forward mode"):
        Implementation("new:softmax", "softmax", ("float64",), forward=True)
    vjp = Implementation(
        "new:softmax",
        "softmax",
        ("float64",),
        gradient=True,
        forward=True,
        options=("cotangent", "tangent"),
    )
    assert vjp.quantities == ("value", "grad", "jvp")


def test_plain_cases_never_plan_a_direction_for_an_old_plugin():
    """Catalog cases outside the options family keep their quantities and carry no options,
    but the linear op's LLM-head cases (softcap, temperature, z_loss on its logits), which an
    old plugin, declaring none, gets as unsupported (below)."""
    plain = [case for case in cases.catalog() if case.family != "options"]
    head = {"softcap", "temperature", "z_loss"}
    assert all(
        not case.options or (case.op == LINEAR_OP and set(dict(case.options)) <= head)
        for case in plain
    )
    assert all("jvp" not in case.evaluated_quantities for case in plain)
    assert all(
        case.evaluated_quantities == ("value",)
        for case in plain
        if case.op in ("softmax", "log_softmax")
    )
    selection = Selection(dtypes=("float64",))
    from xentbench.suites.accuracy.suite import plan_accuracy

    for task in plan_accuracy(OldPlugin(), selection):
        assert task.call.options == {} or OldPlugin().unsupported_reason(task.call)


def test_prepared_call_protocol_is_unchanged():
    prepared = PreparedCall(run=lambda: np.zeros(2), to_numpy=np.asarray)
    assert prepared().shape == (2,)
