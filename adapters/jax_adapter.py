"""JAX and optax adapter: ``jax.nn``/``jax.scipy`` ops and optax losses, eager and ``jax.jit``.

float64 needs JAX's 64-bit mode, so constructing the adapter turns on ``jax_enable_x64`` for
the process (each backend runs in its own process). Every input is created from a NumPy array
of an explicit dtype, so nothing else changes: float32 stays float32, and int64 labels stay
int64 instead of being truncated to int32.

Every op and dtype was checked to run eagerly and under ``jax.jit`` on the CPU (jax 0.10,
optax 0.2.8). Note that "eager" JAX still compiles: ``jax.nn.softmax`` and friends are jitted
internally, and each eager ``jax.grad`` call traces the function again. optax's top-level loss
names (``optax.softmax_cross_entropy``) are the same objects as ``optax.losses.*`` and are
not deprecated, so implementations are named after the shorter spelling users write.

Because eager JAX compiles every primitive for every new shape and dtype, the adapter points
JAX's persistent compilation cache at ``.xentbench-cache/jax`` (``$XENTBENCH_JAX_CACHE``
overrides it): a second run reuses the compiled kernels instead of spending minutes compiling.
Caching compiled programs does not change what they compute.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import jaxlib
import numpy as np
import optax

from adapters._table import SIGMOID_CE, SOFT_CE, SPARSE_CE, TableAdapter
from adapters.base import DEVICES, DTYPES, LINEAR_OP, MODES, Call, Implementation, PreparedCall

_CACHE = str(Path(__file__).resolve().parent.parent / ".xentbench-cache" / "jax")

OpFunction = Callable[[jax.Array, jax.Array | None], jax.Array]

_JAX_PLATFORMS = {"cpu": "cpu", "cuda": "gpu"}


def _implementation(name: str, op: str, gradient: bool) -> Implementation:
    return Implementation(
        name=f"jax:{name}", op=op, dtypes=DTYPES, modes=MODES, devices=DEVICES, gradient=gradient
    )


def _entries() -> list[tuple[Implementation, OpFunction]]:
    """Every implementation with the function that calls it."""
    return [
        (_implementation("jax.nn.softmax", "softmax", False), lambda x, y: jax.nn.softmax(x)),
        (
            _implementation("jax.nn.log_softmax", "log_softmax", False),
            lambda x, y: jax.nn.log_softmax(x),
        ),
        (
            _implementation("jax.nn.logsumexp", "logsumexp", True),
            lambda x, y: jax.nn.logsumexp(x, axis=-1),
        ),
        (
            _implementation("jax.scipy.special.logsumexp", "logsumexp", True),
            lambda x, y: jax.scipy.special.logsumexp(x, axis=-1),
        ),
        (
            _implementation("optax.softmax_cross_entropy", SOFT_CE, True),
            lambda x, y: optax.softmax_cross_entropy(x, y),
        ),
        (
            _implementation("optax.softmax_cross_entropy_with_integer_labels", SPARSE_CE, True),
            lambda x, y: optax.softmax_cross_entropy_with_integer_labels(x, y),
        ),
        (
            _implementation("optax.sigmoid_binary_cross_entropy", SIGMOID_CE, True),
            lambda x, y: optax.sigmoid_binary_cross_entropy(x, y),
        ),
    ]


def _with_quantity(function: OpFunction, quantity: str) -> OpFunction:
    """The op itself, or ``jax.grad`` of the sum of its outputs with respect to the logits."""
    if quantity == "value":
        return function
    return jax.grad(lambda logits, labels: jnp.sum(function(logits, labels)))


class JaxAdapter(TableAdapter):
    """JAX ``jax.nn`` and ``jax.scipy.special`` ops and optax losses."""

    name = "jax"

    def __init__(self) -> None:
        jax.config.update("jax_enable_x64", True)
        jax.config.update(
            "jax_compilation_cache_dir", os.environ.get("XENTBENCH_JAX_CACHE", _CACHE)
        )
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        super().__init__()
        self._devices = ("cpu", "cuda") if _gpu_devices() else ("cpu",)

    def version(self) -> str:
        return f"jax {jax.__version__}, jaxlib {jaxlib.__version__}, optax {optax.__version__}"

    def devices(self) -> tuple[str, ...]:
        return self._devices

    def entries(self) -> list[tuple[Implementation, OpFunction]]:
        return _entries() + _linear_entries()

    def _function(self, call: Call) -> OpFunction:
        """The eager function, or its ``jax.jit`` (cached; jit keys shapes and dtypes itself)."""
        function = _with_quantity(self.function(call), call.quantity)
        if call.mode == "eager":
            return function
        return self.compiled((call.implementation.name, call.quantity), function, jax.jit)

    def prepare(self, call: Call, logits: np.ndarray, labels: np.ndarray | None) -> PreparedCall:
        if call.implementation.op == LINEAR_OP:
            return _prepare_linear(call, logits, labels)
        function = self._function(call)
        device = jax.devices(_JAX_PLATFORMS[call.device])[0]
        logits_array = jax.device_put(logits, device)
        labels_array = None if labels is None else jax.device_put(labels, device)

        def run() -> Any:
            return jax.block_until_ready(function(logits_array, labels_array))

        return PreparedCall(run=run, to_numpy=np.asarray)


def _gpu_devices() -> list[Any]:
    """JAX's GPU devices, or an empty list when no GPU backend is present."""
    try:
        return jax.devices("gpu")
    except RuntimeError:  # JAX's documented answer when the platform is absent
        return []


# --------------------------------------------------------------- linear_cross_entropy
_LINEAR_ADAPTATION = (
    "logits = hidden @ weight.T (+ bias) in the input dtype; padding rows (label ignore_index) "
    "get label 0 and loss 0 through jnp.where, as optax has no ignore_index; gradients by "
    "jax.grad of the summed loss"
)


def _linear_loss(x, w, b, y, ignore_index):
    """optax's integer-label cross-entropy of the composed logits (the plain composition)."""
    logits = x @ w.T if b is None else x @ w.T + b
    if ignore_index is None:
        return optax.softmax_cross_entropy_with_integer_labels(logits, y)
    padded = y == ignore_index
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, jnp.where(padded, 0, y))
    return jnp.where(padded, jnp.zeros_like(loss), loss)


def _linear_entries() -> list[tuple[Implementation, OpFunction]]:
    impl = Implementation(
        name="jax:x@w.T+optax.softmax_cross_entropy_with_integer_labels",
        op=LINEAR_OP,
        dtypes=DTYPES,
        devices=DEVICES,
        gradient=True,
        options=("weight", "bias", "ignore_index"),
        adaptation=_LINEAR_ADAPTATION,
    )
    return [(impl, _linear_loss)]


def _prepare_linear(call: Call, hidden: np.ndarray, labels: np.ndarray) -> PreparedCall:
    """The loss, or jax.grad of its sum w.r.t. the hidden, the weight or the bias."""
    device = jax.devices(_JAX_PLATFORMS[call.device])[0]
    bias = call.options.get("bias")
    arrays = [
        None if a is None else jax.device_put(np.asarray(a), device)
        for a in (hidden, call.options["weight"], bias)
    ]
    y = jax.device_put(np.asarray(labels), device)
    ignore = call.options.get("ignore_index")
    wanted = {"grad_hidden": 0, "grad_weight": 1, "grad_bias": 2}.get(call.quantity)
    if wanted is None:
        function = functools.partial(_linear_loss, y=y, ignore_index=ignore)
    else:
        total = lambda x, w, b: jnp.sum(_linear_loss(x, w, b, y, ignore))  # noqa: E731
        function = jax.grad(total, argnums=wanted)

    def run() -> Any:
        return jax.block_until_ready(function(*arrays))

    return PreparedCall(run=run, to_numpy=np.asarray)
