"""The adapter protocol: what every backend declares and how the suites call it.

An adapter wraps one framework. It declares its implementations (each a real API of the
framework, computing one canonical op) with their capabilities as data, and turns a
``Call`` plus NumPy inputs into a ``PreparedCall``: inputs already converted and on the
device, a ``run`` that executes the op and synchronises, and a ``to_numpy`` for the output.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from xentbench.reference import evaluate as reference_ops
from xentbench.reference.dtypes import DTYPES, numpy_dtype

__all__ = [
    "DEVICES",
    "DTYPES",
    "MODES",
    "OPS",
    "QUANTITIES",
    "Adapter",
    "Call",
    "Implementation",
    "PreparedCall",
    "backend_and_api",
    "numpy_dtype",
]

# The canonical ops are defined once, by the reference (the definition of each op).
OPS: tuple[str, ...] = reference_ops.OPS
GRADIENT_OPS: frozenset[str] = frozenset(reference_ops.GRADIENT_OPS)
LABELLED_OPS: frozenset[str] = frozenset(
    {"softmax_cross_entropy", "sparse_softmax_cross_entropy", "sigmoid_cross_entropy"}
)
DEVICES: tuple[str, ...] = ("cpu", "cuda")
MODES: tuple[str, ...] = ("eager", "compiled")
QUANTITIES: tuple[str, ...] = ("value", "grad", "jvp", "grad_hidden", "grad_weight", "grad_bias")
# Ops whose gradient exists only as a VJP with a given cotangent (the gradient of the plain sum
# of a softmax is 0, of a log_softmax 1 - C p): an implementation offers it by declaring the
# "cotangent" option.
COTANGENT_ONLY_OPS: frozenset[str] = frozenset({"softmax", "log_softmax"})
# Ops with a forward-mode derivative (quantity "jvp", option "tangent").
FORWARD_OPS: frozenset[str] = frozenset(reference_ops.OPS[:5])
# The language-model head; its gradients are w.r.t. each input (grad_hidden, grad_weight,
# grad_bias), ``reference.evaluate.quantities(op)`` says which an op defines.
LINEAR_OP: str = reference_ops.LINEAR_OP
# How an implementation's ``adaptation`` begins when it composes the LLM head (soft-capping,
# temperature, z-loss) around another implementation's API: called with none of those options
# it is that API, so the timing suite times it only with them (``suites.timing.configs``).
HEAD_COMPOSITION = "a composition: "


def backend_and_api(name: str) -> tuple[str, str]:
    """An implementation name ``"<backend>:<api>"`` read as (backend, api): the one place a name
    is taken apart (api is "" for a name without ":", which ``Implementation`` refuses)."""
    backend, _, api = name.partition(":")
    return backend, api


@dataclass(frozen=True)
class Implementation:
    """One real API of a framework that computes one canonical op.

    ``name`` is ``"<backend>:<api>"`` and says which API is called, for example
    ``"torch:F.cross_entropy"``. ``adaptation`` records anything the adapter does around the
    call (moving the class axis, building a graph, applying softmax first) so reports can
    show it; it is empty when the API is called as a user would call it.
    """

    name: str
    op: str
    dtypes: tuple[str, ...]
    modes: tuple[str, ...] = ("eager",)
    devices: tuple[str, ...] = ("cpu",)
    gradient: bool = False
    adaptation: str = ""
    # (device, mode, dtype) combinations missing although each part is declared, e.g. a
    # framework with no GPU float64 kernel for one op.
    gaps: tuple[tuple[str, str, str], ...] = ()
    # Call options this API takes (``Call.options`` keys, e.g. "reduction", "ignore_index");
    # a call with an option not declared here is unsupported, never emulated.
    options: tuple[str, ...] = ()
    # A baseline exists to demonstrate a lesson (a naive formula, probabilities where logits
    # belong); reports count it apart from the implementations people rely on.
    baseline: bool = False
    # Forward mode: quantity "jvp" with the "tangent" option (jax.jvp, torch.func.jvp,
    # tf.autodiff.ForwardAccumulator). Off by default: an old plugin is never asked for it.
    forward: bool = False
    # Values an option is limited to, e.g. (("reduction", ("none", "sum", "mean")),): a call
    # with another value is unsupported (torch's "mean" with probability targets divides by N,
    # which is the reference's "sum_over_batch_size", not its weighted "mean").
    option_values: tuple[tuple[str, tuple[Any, ...]], ...] = ()

    def __post_init__(self) -> None:
        if ":" not in self.name:
            raise ValueError(f"implementation name {self.name!r} must read '<backend>:<api>'")
        if self.op not in OPS:
            raise ValueError(f"{self.name}: unknown op {self.op!r}; valid: {', '.join(OPS)}")
        for value, valid, what in (
            (self.dtypes, DTYPES, "dtype"),
            (self.modes, MODES, "mode"),
            (self.devices, DEVICES, "device"),
        ):
            for item in value:
                if item not in valid:
                    raise ValueError(f"{self.name}: unknown {what} {item!r}; valid: {valid}")
        vjp_only = self.op in COTANGENT_ONLY_OPS and "cotangent" in self.options
        if self.gradient and self.op not in GRADIENT_OPS and not vjp_only:
            raise ValueError(f"{self.name}: op {self.op} has no gradient quantity")
        if self.forward and (self.op not in FORWARD_OPS or "tangent" not in self.options):
            raise ValueError(f"{self.name}: forward mode needs a softmax-family op and 'tangent'")

    @property
    def api(self) -> str:
        """The API after ``"<backend>:"``, the key of the adapter's own table."""
        return backend_and_api(self.name)[1]

    @property
    def quantities(self) -> tuple[str, ...]:
        """value, plus the gradient(s) and forward mode the implementation declares (the linear
        op's grad_bias only with a "bias" option)."""
        if self.op == LINEAR_OP:
            if not self.gradient:
                return ("value",)
            defined = reference_ops.quantities(self.op)
            return tuple(q for q in defined if q != "grad_bias" or "bias" in self.options)
        return ("value",) + ("grad",) * self.gradient + ("jvp",) * self.forward


@dataclass(frozen=True)
class Call:
    """One way to evaluate an implementation: dtype, device, mode and quantity, plus the
    options the caller passes (``Implementation.options`` lists which an API takes; values
    may be arrays, already in the call's dtype, so options take no part in equality)."""

    implementation: Implementation
    dtype: str
    device: str = "cpu"
    mode: str = "eager"
    quantity: str = "value"
    options: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


@dataclass
class PreparedCall:
    """A call with its inputs converted and resident on the device.

    ``run()`` executes the op (for ``grad`` the vector-Jacobian product with
    ``call.options["cotangent"]``, ones when absent: the gradient of the summed outputs; for
    ``jvp`` the derivative along ``call.options["tangent"]``) with respect to the logits, or
    for the linear op its gradient w.r.t. the hidden, weight or bias (``grad_hidden``,
    ``grad_weight``, ``grad_bias``), and returns only after the device has finished.
    ``to_numpy(output)`` converts what ``run`` returned; it is never part of a timing.
    """

    run: Callable[[], Any]
    to_numpy: Callable[[Any], np.ndarray]

    def __call__(self) -> np.ndarray:
        return self.to_numpy(self.run())


class Adapter(ABC):
    """One backend: its version, devices and implementations, and how to prepare a call."""

    name: ClassVar[str]

    @abstractmethod
    def version(self) -> str:
        """The framework's version string(s), e.g. ``"2.13.0"`` or ``"jax 0.10.2, optax 0.2.8"``."""

    def devices(self) -> tuple[str, ...]:
        """Devices usable in this process now (``cpu`` always; ``cuda`` when a GPU is seen)."""
        return ("cpu",)

    @abstractmethod
    def implementations(self) -> tuple[Implementation, ...]:
        """Every implementation this backend offers, with its declared capabilities."""

    @abstractmethod
    def prepare(self, call: Call, logits: np.ndarray, labels: np.ndarray | None) -> PreparedCall:
        """Convert inputs for ``call`` and return the prepared call.

        ``logits`` has the NumPy dtype of ``call.dtype`` (ml_dtypes.bfloat16 for bfloat16);
        ``labels`` is ``None`` for unlabelled ops, int64 class ids for the sparse and linear
        ops, and of the logits' dtype otherwise. For ``linear_cross_entropy`` ``logits`` is the
        hidden [N, d] and ``call.options`` holds "weight" [C, d] (and "bias" [C],
        "ignore_index") in the call's dtype. Only called for calls that
        ``unsupported_reason`` accepts.
        """

    def implementation(self, name: str) -> Implementation:
        for impl in self.implementations():
            if impl.name == name:
                return impl
        valid = ", ".join(i.name for i in self.implementations())
        raise KeyError(f"no implementation {name!r} in backend {self.name}; valid: {valid}")

    def unsupported_reason(self, call: Call) -> str | None:
        """Why ``call`` cannot run here, or ``None``: the one place capabilities are checked."""
        impl = call.implementation
        if call.dtype not in impl.dtypes:
            return f"{impl.name} does not support dtype {call.dtype}"
        if call.mode not in impl.modes:
            return f"{impl.name} has no {call.mode} mode"
        if call.device not in impl.devices:
            return f"{impl.name} does not run on {call.device}"
        if call.device not in self.devices():
            return f"no {call.device} device visible to {self.name}"
        if call.quantity not in impl.quantities:
            return f"{impl.name} offers no {call.quantity}"
        if (call.device, call.mode, call.dtype) in impl.gaps:
            return f"{impl.name} has no {call.mode} {call.dtype} kernel on {call.device}"
        undeclared = sorted(set(call.options) - set(impl.options))
        if undeclared:
            return f"{impl.name} takes no option {', '.join(undeclared)}"
        for option, values in impl.option_values:
            if option in call.options and call.options[option] not in values:
                valid = ", ".join(map(str, values))
                return f"{impl.name} takes no {option}={call.options[option]} (only {valid})"
        return None
