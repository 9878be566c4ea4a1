"""``xentbench check``: the user's own arrays through every matching implementation."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from xentbench.adapters import registry
from xentbench.adapters.base import DTYPES, GRADIENT_OPS, LINEAR_OP, Call, numpy_dtype
from xentbench.reference.cache import cached_exact
from xentbench.reference.linear import QUANTITIES as LINEAR_QUANTITIES
from xentbench.reference.options import ARRAY_OPTIONS, canonical, validate
from xentbench.suites.judge.call import call_columns, judge


@dataclass(frozen=True)
class CheckRequest:
    op: str
    logits: np.ndarray
    labels: np.ndarray | None
    backends: tuple[str, ...]
    dtypes: tuple[str, ...]
    devices: tuple[str, ...] = ("cpu",)
    modes: tuple[str, ...] = ("eager",)
    # Call options (reference.options; arrays as float64, cast to each dtype) and the
    # quantities asked for (empty: every quantity the implementation offers, as before).
    options: dict[str, Any] = field(default_factory=dict)
    quantities: tuple[str, ...] = ()


def dtype_name(array: np.ndarray) -> str:
    name = array.dtype.name
    if name not in DTYPES:
        raise ValueError(f"logits dtype {name} is not one of {', '.join(DTYPES)}")
    return name


def _cast(request: CheckRequest, dtype: str) -> tuple[np.ndarray, np.ndarray | None]:
    logits = request.logits.astype(numpy_dtype(dtype))
    labels = request.labels
    if labels is not None and request.op not in ("sparse_softmax_cross_entropy", LINEAR_OP):
        labels = labels.astype(numpy_dtype(dtype))
    return logits, labels


def run_check(request: CheckRequest) -> list[dict[str, Any]]:
    """One record per (implementation, dtype, device, mode, quantity) that applies; a
    ValueError names an option the op or a quantity cannot take."""
    if request.op == LINEAR_OP:
        _check_linear_quantities(request.quantities, "bias" in request.options)
    for quantity in request.quantities if request.op != LINEAR_OP else ():
        validate(request.op, quantity, _options(request, "float64", quantity))
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
                        for quantity in _quantities(request, impl):
                            options = _options(request, dtype, quantity)
                            call = Call(impl, dtype, device, mode, quantity, options)
                            records.append(_evaluate(adapter, call, logits, labels))
    return records


def _quantities(request: CheckRequest, impl) -> tuple[str, ...]:
    """The quantities asked for; by default those the implementation offers without a
    direction (value, and grad for the ops with a plain gradient), as before options existed."""
    if request.quantities:
        return request.quantities
    if impl.op == LINEAR_OP:
        return _linear_quantities(impl.quantities, "bias" in request.options)
    plain = ("value", "grad") if impl.op in GRADIENT_OPS else ("value",)
    return tuple(q for q in plain if q in impl.quantities)


def _options(request: CheckRequest, dtype: str, quantity: str) -> dict[str, Any]:
    """The request's options for one call: arrays in ``dtype``; the cotangent for grad only,
    the tangent for jvp only."""
    if request.op == LINEAR_OP:
        return _linear_options(request.options, numpy_dtype(dtype))
    options = {}
    for name, value in request.options.items():
        if (name, quantity) in (("cotangent", "value"), ("cotangent", "jvp")):
            continue
        if (name, quantity) in (("tangent", "value"), ("tangent", "grad")):
            continue
        is_array = name in ARRAY_OPTIONS and isinstance(value, np.ndarray)  # a scalar T stays
        options[name] = value.astype(numpy_dtype(dtype)) if is_array else value
    return options


def _evaluate(adapter, call: Call, logits, labels) -> dict[str, Any]:
    impl = call.implementation
    record = {
        **call_columns(adapter, call),
        **dict.fromkeys(_MEASURED[1:-1]),
        "options": canonical(call.options),
    }
    try:
        exact = cached_exact(impl.op, logits, labels, call.quantity, options=call.options)
    except ValueError as exc:
        exact = exc
    judged, got = judge(adapter, call, logits, labels, exact)
    if got is None:
        return {**record, "verdict": judged["verdict"], "message": judged["message"]}
    return {**record, **{column: judged[column] for column in _MEASURED}}


def _check_linear_quantities(quantities: tuple[str, ...], has_bias: bool) -> None:
    """A ValueError naming a quantity the linear op does not have, or grad_bias without a bias."""
    for quantity in quantities:
        if quantity not in LINEAR_QUANTITIES:
            valid = ", ".join(LINEAR_QUANTITIES)
            raise ValueError(f"quantity {quantity!r} is not one of {LINEAR_OP}'s; valid: {valid}")
        if quantity == "grad_bias" and not has_bias:
            raise ValueError("quantity grad_bias needs --bias B.npy; none given")


def _linear_quantities(offered: tuple[str, ...], has_bias: bool) -> tuple[str, ...]:
    """Every linear quantity the implementation offers (grad_bias only with a bias)."""
    return tuple(q for q in LINEAR_QUANTITIES if q in offered and (has_bias or q != "grad_bias"))


def _linear_options(options: dict, dtype: np.dtype) -> dict:
    """The classifier and bias in the call's dtype (the hidden is cast alongside)."""
    return {k: v.astype(dtype) if k in ("weight", "bias") else v for k, v in options.items()}


# The judged columns a check record carries for a measured result.
_MEASURED = (
    "verdict",
    "tier",
    "worst_ratio",
    "ulp_error",
    "budget_ulps",
    "abs_error",
    "allowance",
    "nats_error",
    "max_ulp_error",
    "max_rel_error",
    "worst_index",
    "expected",
    "got",
    "message",
)
