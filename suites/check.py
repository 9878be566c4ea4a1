"""``xentbench check``: the user's own arrays through every matching implementation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from adapters import registry
from adapters.base import DTYPES, Call, numpy_dtype
from reference.cache import cached_exact
from suites.judge.call import judge


@dataclass(frozen=True)
class CheckRequest:
    op: str
    logits: np.ndarray
    labels: np.ndarray | None
    backends: tuple[str, ...]
    dtypes: tuple[str, ...]
    devices: tuple[str, ...] = ("cpu",)
    modes: tuple[str, ...] = ("eager",)


def dtype_name(array: np.ndarray) -> str:
    name = array.dtype.name
    if name not in DTYPES:
        raise ValueError(f"logits dtype {name} is not one of {', '.join(DTYPES)}")
    return name


def _cast(request: CheckRequest, dtype: str) -> tuple[np.ndarray, np.ndarray | None]:
    logits = request.logits.astype(numpy_dtype(dtype))
    labels = request.labels
    if labels is not None and request.op != "sparse_softmax_cross_entropy":
        labels = labels.astype(numpy_dtype(dtype))
    return logits, labels


def run_check(request: CheckRequest) -> list[dict[str, Any]]:
    """One record per (implementation, dtype, device, mode, quantity) that applies."""
    if request.op == "linear_cross_entropy":
        raise ValueError(
            "check takes logits; linear_cross_entropy takes hidden states and a weight: "
            "evaluate it with 'xentbench run --op linear_cross_entropy'"
        )
    records = []
    for name in request.backends:
        status = registry.status(name)
        if not status.available:
            records.append({"backend": name, "verdict": "unavailable", "message": status.reason})
            continue
        adapter = status.adapter
        for impl in adapter.implementations():
            if impl.op != request.op:
                continue
            for dtype in request.dtypes:
                logits, labels = _cast(request, dtype)
                for device in request.devices:
                    for mode in request.modes:
                        for quantity in impl.quantities:
                            call = Call(impl, dtype, device, mode, quantity)
                            records.append(_evaluate(adapter, call, logits, labels))
    return records


def _evaluate(adapter, call: Call, logits, labels) -> dict[str, Any]:
    impl = call.implementation
    record = {
        "backend": adapter.name,
        "implementation": impl.name,
        "op": impl.op,
        "quantity": call.quantity,
        "dtype": call.dtype,
        "device": call.device,
        "mode": call.mode,
        "max_ulp_error": None,
        "max_rel_error": None,
    }
    try:
        exact = cached_exact(impl.op, logits, labels, call.quantity)
    except ValueError as exc:
        exact = exc
    judged, got = judge(adapter, call, logits, labels, exact)
    if got is None:
        return {**record, "verdict": judged["verdict"], "message": judged["message"]}
    return {**record, **{column: judged[column] for column in _MEASURED}}


# The judged columns a check record carries for a measured result.
_MEASURED = (
    "verdict",
    "max_ulp_error",
    "max_rel_error",
    "budget_ulps",
    "worst_index",
    "expected",
    "got",
    "message",
)
