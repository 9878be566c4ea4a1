"""The adapter protocol's declarations: validated on construction, checked in one place."""

from __future__ import annotations

import numpy as np
import pytest

from xentbench.adapters.base import Adapter, Call, Implementation, PreparedCall


class _Declared(Adapter):
    name = "declared"

    def __init__(self, impl: Implementation, devices: tuple[str, ...] = ("cpu", "cuda")):
        self._impl, self._devices = impl, devices

    def version(self) -> str:
        return "0"

    def devices(self) -> tuple[str, ...]:
        return self._devices

    def implementations(self) -> tuple[Implementation, ...]:
        return (self._impl,)

    def prepare(self, call, logits, labels) -> PreparedCall:
        return PreparedCall(run=lambda: logits, to_numpy=np.asarray)


SPARSE = Implementation(
    "declared:sparse",
    "sparse_softmax_cross_entropy",
    dtypes=("float32", "float64"),
    modes=("eager", "compiled"),
    devices=("cpu", "cuda"),
    gradient=True,
    gaps=(("cuda", "eager", "float64"),),
)


@pytest.mark.parametrize(
    "call, reason",
    [
        (Call(SPARSE, "float64", "cuda", "eager", "value"), "no eager float64 kernel on cuda"),
        (Call(SPARSE, "float16", "cpu", "eager", "value"), "does not support dtype float16"),
        (Call(SPARSE, "float64", "cuda", "compiled", "grad"), None),
        (Call(SPARSE, "float64", "cpu", "eager", "grad"), None),
    ],
)
def test_unsupported_reason_applies_declared_capabilities_and_gaps(call, reason):
    got = _Declared(SPARSE).unsupported_reason(call)
    assert got is None if reason is None else reason in got


def test_a_device_the_process_cannot_see_is_unsupported():
    call = Call(SPARSE, "float32", "cuda", "eager", "value")
    assert "no cuda device visible" in _Declared(SPARSE, devices=("cpu",)).unsupported_reason(call)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"op": "softmax_xent"}, "unknown op 'softmax_xent'"),
        ({"dtypes": ("float8",)}, "unknown dtype 'float8'"),
        ({"op": "softmax", "gradient": True}, "has no gradient"),
        ({"name": "softmax"}, "must read '<backend>:<api>'"),
    ],
)
def test_implementation_declarations_are_validated(kwargs, message):
    fields = {"name": "declared:x", "op": "softmax", "dtypes": ("float32",), **kwargs}
    with pytest.raises(ValueError, match=message):
        Implementation(**fields)


def test_an_option_the_implementation_does_not_declare_is_unsupported():
    plain = Implementation("declared:plain", "softmax", ("float32",))
    call = Call(plain, "float32", options={"reduction": "mean"})
    assert "takes no option reduction" in _Declared(plain).unsupported_reason(call)
    takes = Implementation("declared:takes", "softmax", ("float32",), options=("reduction",))
    assert (
        _Declared(takes).unsupported_reason(Call(takes, "float32", options={"reduction": "mean"}))
        is None
    )
