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
JAX's persistent compilation cache at ``~/.cache/xentbench/jax`` (``$XENTBENCH_JAX_CACHE``
overrides it): one folder for every clone, since JAX keys entries by the cache's path, so a
second run, or a fresh clone, reuses the compiled kernels instead of spending minutes compiling.
Caching compiled programs does not change what they compute.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import jaxlib
import numpy as np
import optax

from xentbench.adapters._table import SIGMOID_CE, SOFT_CE, SPARSE_CE, TableAdapter, everywhere
from xentbench.adapters.base import LINEAR_OP, Call, Implementation, PreparedCall
from xentbench.adapters.jax_head import ADAPTATION, HEAD_APIS
from xentbench.reference.cache import user_cache_root
from xentbench.reference.options import canonical

_CACHE = str(user_cache_root() / "jax")

OpFunction = Callable[[jax.Array, jax.Array | None], jax.Array]

_JAX_PLATFORMS = {"cpu": "cpu", "cuda": "gpu"}


_DIRECTIONS = ("cotangent", "tangent")
_AXIS_ONLY = ("class_axis", *_DIRECTIONS)
_ALL_REDUCTIONS = ("none", "sum", "sum_over_batch_size", "mean_over_valid")
_USER_REDUCTION = (
    "reductions written as users do: jnp.sum, jnp.mean, jnp.sum(loss) / jnp.sum(where)"
)


def _implementation(
    name: str, op: str, gradient: bool, options: tuple[str, ...] = (), **extra: Any
) -> Implementation:
    return everywhere(
        "jax", name, op, gradient=gradient, options=options, forward=bool(options), **extra
    )


def _reduce(loss: jax.Array, reduction: str, where: jax.Array | None = None) -> jax.Array:
    """The per-row loss reduced as users write it (``_USER_REDUCTION``)."""
    if reduction == "sum":
        return jnp.sum(loss)
    if reduction == "sum_over_batch_size":
        return jnp.mean(loss)
    if reduction == "mean_over_valid":
        return jnp.sum(loss) / (loss.size if where is None else jnp.sum(where))
    return loss


def _optax_soft(x, y, reduction="none", label_smoothing=0.0, class_axis=-1):
    axis = int(class_axis)
    if label_smoothing:
        y = optax.smooth_labels(y, label_smoothing, axis=axis)
    return _reduce(optax.softmax_cross_entropy(x, y, axis=axis), reduction)


def _optax_sparse(x, y, reduction="none", ignore_index=None, class_axis=-1):
    where = None
    if ignore_index is not None:  # optax takes a mask: where=, and safe ids under it
        where = y != int(ignore_index)
        y = jnp.where(where, y, 0)
    loss = optax.softmax_cross_entropy_with_integer_labels(x, y, axis=int(class_axis), where=where)
    return _reduce(loss, reduction, where)


def _optax_safe(x, y, reduction="none"):
    return _reduce(optax.safe_softmax_cross_entropy(x, y), reduction)


def _entries() -> list[tuple[Implementation, OpFunction]]:
    """Every implementation with the function that calls it."""
    soft_reductions = (("reduction", ("none", "sum", "sum_over_batch_size")),)
    return [
        (
            _implementation("jax.nn.softmax", "softmax", True, _AXIS_ONLY),
            lambda x, y, class_axis=-1: jax.nn.softmax(x, axis=int(class_axis)),
        ),
        (
            _implementation("jax.nn.log_softmax", "log_softmax", True, _AXIS_ONLY),
            lambda x, y, class_axis=-1: jax.nn.log_softmax(x, axis=int(class_axis)),
        ),
        (
            _implementation("jax.nn.logsumexp", "logsumexp", True, _AXIS_ONLY),
            lambda x, y, class_axis=-1: jax.nn.logsumexp(x, axis=int(class_axis)),
        ),
        (
            _implementation("jax.scipy.special.logsumexp", "logsumexp", True, _AXIS_ONLY),
            lambda x, y, class_axis=-1: jax.scipy.special.logsumexp(x, axis=int(class_axis)),
        ),
        (
            _implementation(
                "optax.softmax_cross_entropy",
                SOFT_CE,
                True,
                ("reduction", "label_smoothing", *_AXIS_ONLY),
                option_values=soft_reductions,
                adaptation="with label_smoothing: optax.smooth_labels first; " + _USER_REDUCTION,
            ),
            _optax_soft,
        ),
        (
            _implementation(
                "optax.softmax_cross_entropy_with_integer_labels",
                SPARSE_CE,
                True,
                ("reduction", "ignore_index", *_AXIS_ONLY),
                option_values=(("reduction", _ALL_REDUCTIONS),),
                adaptation="ignore_index as where=labels != ignore_index, ignored ids set to 0; "
                + _USER_REDUCTION,
            ),
            _optax_sparse,
        ),
        (
            _implementation(
                "optax.safe_softmax_cross_entropy",
                SOFT_CE,
                True,
                ("reduction", *_DIRECTIONS),
                option_values=soft_reductions,
                adaptation=_USER_REDUCTION,
            ),
            _optax_safe,
        ),
        (
            _implementation("optax.sigmoid_binary_cross_entropy", SIGMOID_CE, True),
            lambda x, y: optax.sigmoid_binary_cross_entropy(x, y),
        ),
    ]


def _with_quantity(function: OpFunction, quantity: str, directed: bool) -> Callable:
    """The op itself; ``jax.grad`` of the sum of its outputs; with a given direction (an extra
    argument), ``jax.vjp`` with the cotangent or ``jax.jvp`` along the tangent."""
    if quantity == "value":
        return function
    if quantity == "jvp":
        return lambda x, y, t: jax.jvp(lambda z: function(z, y), (x,), (t,))[1]
    if directed:
        return lambda x, y, g: jax.vjp(lambda z: function(z, y), x)[1](g)[0]
    return jax.grad(lambda logits, labels: jnp.sum(function(logits, labels)))


class JaxAdapter(TableAdapter):
    """JAX ``jax.nn`` and ``jax.scipy.special`` ops and optax losses."""

    name = "jax"
    # float64 needs JAX's 64-bit mode (a subclass may run without it: adapters.keras_jax_adapter)
    x64: bool = True

    def __init__(self) -> None:
        jax.config.update("jax_enable_x64", self.x64)
        # The persistent compilation cache only saves time; a release without its options
        # (jax 0.4.20, in a version environment) runs without it.
        with contextlib.suppress(AttributeError):
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
        return _entries() + _linear_entries() + _head_entries()

    def _function(self, call: Call, options: dict, directed: bool) -> Callable:
        """The eager function (options bound), or its ``jax.jit`` (cached per options; jit
        keys shapes and dtypes itself)."""
        function = self.function(call)
        if options:
            function = functools.partial(function, **options)
        function = _with_quantity(function, call.quantity, directed)
        if call.mode == "eager":
            return function
        key = (call.implementation.name, call.quantity, canonical(call.options))
        return self.compiled(key, function, jax.jit)

    def prepare(self, call: Call, logits: np.ndarray, labels: np.ndarray | None) -> PreparedCall:
        if call.implementation.op == LINEAR_OP:
            return _prepare_linear(call, logits, labels)
        device = jax.devices(_JAX_PLATFORMS[call.device])[0]
        options = dict(call.options)
        direction = options.pop("cotangent", None)
        direction = options.pop("tangent", direction)
        if call.quantity == "jvp" and direction is None:  # no tangent given: along ones
            direction = np.ones_like(logits)
        function = self._function(call, options, direction is not None)
        logits_array = jax.device_put(logits, device)
        labels_array = None if labels is None else jax.device_put(labels, device)
        extra = () if direction is None else (jax.device_put(np.asarray(direction), device),)

        def run() -> Any:
            return jax.block_until_ready(function(logits_array, labels_array, *extra))

        return PreparedCall(run=run, to_numpy=np.asarray)


def _head_entries() -> list[tuple[Implementation, OpFunction]]:
    """The LLM head's compositions (``adapters.jax_head``)."""
    return [
        (
            _implementation(api, op, True, (*options, *_DIRECTIONS), adaptation=ADAPTATION),
            function,
        )
        for api, (op, function, options) in HEAD_APIS.items()
    ]


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
    impl = everywhere(
        "jax",
        "x@w.T+optax.softmax_cross_entropy_with_integer_labels",
        LINEAR_OP,
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
    if call.mode == "compiled":  # labels and ignore_index are constants of the traced program
        function = jax.jit(function)

    def run() -> Any:
        return jax.block_until_ready(function(*arrays))

    return PreparedCall(run=run, to_numpy=np.asarray)
