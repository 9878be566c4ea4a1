"""MLX (Apple's array framework) on its CPU device: ``mx.softmax``, ``mx.logsumexp``,
``nn.log_softmax`` and the ``mlx.nn.losses`` cross-entropies, eager and ``mx.compile``.

A plugin registered through the ``xentbench.adapters`` entry point, installed by the optional
extra ``mlx`` (``mlx[cpu]``: on Linux the CPU backend comes as the ``mlx-cpu`` wheel). MLX is
lazy: ``run`` ends with ``mx.eval``. The device is MLX's CPU; on Apple silicon MLX's GPU is
Metal, not the ``cuda`` device of this project, so only ``cpu`` is declared.

Framework behaviour worth knowing when reading results (not changed here):

- ``mx.array`` of a float64 NumPy array makes float32 unless ``dtype=mx.float64`` is given;
  the adapter gives each input's dtype explicitly.
- ``mx.softmax`` accumulates 16-bit inputs in their own dtype unless ``precise=True``; both
  are declared. Its ``axis`` defaults to the whole array, so the class axis is always passed.
- ``nn.losses.cross_entropy`` reduces in the logits' dtype on the CPU (its fused float32
  kernel serves only the GPU), and takes class indices or probabilities by the targets' rank.
  Its ``weights`` are per-row (the reference's ``sample_weight``), its ``"mean"`` the mean over
  all rows (the reference's ``sum_over_batch_size``).

``grad`` is ``mx.vjp`` with the cotangent (``mx.grad`` of the summed output without one),
``jvp`` is ``mx.jvp`` along the tangent. bfloat16 crosses to and from NumPy through float32,
which is exact.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from importlib.metadata import version as distribution_version
from typing import Any

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from xentbench.adapters._convert import is_bfloat16, narrow_to_bfloat16, widen_bfloat16
from xentbench.adapters._table import SIGMOID_CE, SOFT_CE, SPARSE_CE, TableAdapter
from xentbench.adapters.base import DTYPES, Call, Implementation, PreparedCall
from xentbench.reference.options import ARRAY_OPTIONS, canonical

Function = Callable[..., mx.array]

_DIRECTIONS = ("cotangent", "tangent")
_AXIS = ("class_axis", *_DIRECTIONS)
_LOSS = ("reduction", "label_smoothing", "sample_weight", *_AXIS)
# MLX's "mean" divides by the number of rows, weighted or not: the reference's
# sum_over_batch_size.
_MLX_REDUCTION = {"none": "none", "sum": "sum", "sum_over_batch_size": "mean"}
_REDUCTIONS = (("reduction", tuple(_MLX_REDUCTION)),)
_MX_DTYPES = {"float16": mx.float16, "bfloat16": mx.bfloat16, "float32": mx.float32}
_MX_DTYPES["float64"] = mx.float64


def _declare(name: str, op: str, options: tuple[str, ...], **fields: Any) -> Implementation:
    return Implementation(
        name=f"mlx:{name}",
        op=op,
        dtypes=DTYPES,
        modes=("eager", "compiled"),
        devices=("cpu",),
        gradient=True,
        options=options,
        forward=op != SIGMOID_CE,
        **fields,
    )


def _cross_entropy(x, y, reduction="none", label_smoothing=0.0, sample_weight=None, class_axis=-1):
    return nn.losses.cross_entropy(
        x,
        y,
        weights=sample_weight,
        axis=int(class_axis),
        label_smoothing=float(label_smoothing),
        reduction=_MLX_REDUCTION[reduction],
    )


def _nll_loss(x, y, reduction="none", class_axis=-1):
    axis = int(class_axis)
    return nn.losses.nll_loss(
        nn.log_softmax(x, axis=axis), y, axis=axis, reduction=_MLX_REDUCTION[reduction]
    )


def _entries() -> list[tuple[Implementation, Function]]:
    """Every implementation with the function of (logits, labels, **options) that calls it."""
    return [
        (
            _declare("mx.softmax", "softmax", _AXIS),
            lambda x, y, class_axis=-1: mx.softmax(x, axis=int(class_axis)),
        ),
        (
            _declare("mx.softmax(precise=True)", "softmax", _AXIS),
            lambda x, y, class_axis=-1: mx.softmax(x, axis=int(class_axis), precise=True),
        ),
        (
            _declare("nn.log_softmax", "log_softmax", _AXIS),
            lambda x, y, class_axis=-1: nn.log_softmax(x, axis=int(class_axis)),
        ),
        (
            _declare("mx.logsumexp", "logsumexp", _AXIS),
            lambda x, y, class_axis=-1: mx.logsumexp(x, axis=int(class_axis)),
        ),
        (
            _declare(
                "nn.losses.cross_entropy",
                SPARSE_CE,
                _LOSS,
                option_values=_REDUCTIONS,
                adaptation="sample_weight passed as weights=",
            ),
            _cross_entropy,
        ),
        (
            _declare(
                "nn.losses.cross_entropy(probabilities)",
                SOFT_CE,
                _LOSS,
                option_values=_REDUCTIONS,
                adaptation="sample_weight passed as weights=",
            ),
            _cross_entropy,
        ),
        (
            _declare(
                "nn.losses.nll_loss(nn.log_softmax)",
                SPARSE_CE,
                ("reduction", *_AXIS),
                option_values=_REDUCTIONS,
                adaptation="nn.log_softmax applied first, as users do",
            ),
            _nll_loss,
        ),
        (
            _declare(
                "nn.losses.binary_cross_entropy",
                SIGMOID_CE,
                ("cotangent",),
                adaptation="reduction='none' (its default is 'mean')",
            ),
            lambda x, y: nn.losses.binary_cross_entropy(x, y, reduction="none"),
        ),
    ]


def _with_quantity(function: Function, quantity: str, directed: bool) -> Function:
    """The op; ``mx.grad`` of its summed output; ``mx.vjp`` with a cotangent or ``mx.jvp``
    along a tangent (the direction is one more argument)."""
    if quantity == "value":
        return function
    if quantity == "jvp":
        return lambda x, y, t: mx.jvp(lambda z: function(z, y), [x], [t])[1][0]
    if directed:
        return lambda x, y, g: mx.vjp(lambda z: function(z, y), [x], [g])[1][0]
    return lambda x, y: mx.grad(lambda z: mx.sum(function(z, y)))(x)


def _to_array(array: np.ndarray) -> mx.array:
    """An MLX array of ``array``'s own dtype (bfloat16 through float32, exactly)."""
    if is_bfloat16(array):
        return mx.array(widen_bfloat16(array), dtype=mx.float32).astype(mx.bfloat16)
    dtype = _MX_DTYPES.get(array.dtype.name)
    return mx.array(array) if dtype is None else mx.array(array, dtype=dtype)


def _to_numpy(array: mx.array) -> np.ndarray:
    if array.dtype == mx.bfloat16:
        return narrow_to_bfloat16(np.array(array.astype(mx.float32)))
    return np.array(array)


class MlxAdapter(TableAdapter):
    """MLX ops and losses on MLX's CPU device, eager and ``mx.compile``, with ``mx.vjp`` and
    ``mx.jvp`` derivatives."""

    name = "mlx"

    def __init__(self) -> None:
        mx.set_default_device(mx.cpu)
        super().__init__()

    def version(self) -> str:
        return f"mlx {distribution_version('mlx')}"

    def entries(self) -> list[tuple[Implementation, Function]]:
        return _entries()

    def _function(self, call: Call, options: dict, directed: bool) -> Function:
        """The eager function (options bound), or its ``mx.compile`` (cached per options;
        MLX compiles again for a new shape or dtype itself)."""
        function = self.function(call)
        if options:
            function = functools.partial(function, **options)
        function = _with_quantity(function, call.quantity, directed)
        if call.mode == "eager":
            return function
        key = (call.implementation.name, call.quantity, canonical(call.options))
        return self.compiled(key, function, _compile_without_labels)

    def prepare(self, call: Call, logits: np.ndarray, labels: np.ndarray | None) -> PreparedCall:
        options = {
            name: _to_array(np.asarray(value)) if name in ARRAY_OPTIONS else value
            for name, value in call.options.items()
        }
        direction = options.pop("cotangent", None)
        direction = options.pop("tangent", direction)
        x = _to_array(logits)
        if call.quantity == "jvp" and direction is None:  # no tangent given: along ones
            direction = mx.ones_like(x)
        function = self._function(call, options, direction is not None)
        arguments = (x, None if labels is None else _to_array(labels))
        arguments += () if direction is None else (direction,)
        mx.eval([a for a in arguments if a is not None])

        def run() -> mx.array:
            output = function(*arguments)
            mx.eval(output)
            return output

        return PreparedCall(run=run, to_numpy=_to_numpy)


def _compile_without_labels(function: Function) -> Function:
    """``mx.compile`` of ``function(x, labels, *direction)``; unlabelled ops pass ``None`` for
    the labels, which ``mx.compile`` cannot take as an input, so it is bound outside."""
    compiled = mx.compile(lambda x, *rest: function(x, None, *rest))
    labelled = mx.compile(function)

    def call(x: mx.array, labels: mx.array | None, *rest: mx.array) -> mx.array:
        return compiled(x, *rest) if labels is None else labelled(x, labels, *rest)

    return call
