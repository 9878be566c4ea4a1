"""tinygrad: ``Tensor.softmax``, ``log_softmax``, ``logsumexp`` and its losses, eager and
``TinyJit``, a plugin backend (entry point ``tinygrad``, optional extra ``.[tinygrad]``).

Which device: tinygrad's CPU device compiles every kernel, and its own runtime helpers, with
the ``clang`` executable, which pip cannot install. Where ``clang`` is on PATH (Debian: ``apt
install clang``) tinygrad's default device is used; where it is not, the adapter selects
``DEV=PYTHON`` before tinygrad is imported: tinygrad's reference emulator, which runs the same
kernels in Python with no compiler, thousands of times slower. A ``DEV`` set by the user is
kept. ``version()`` names the device, and on the emulator says that its timings are not
meaningful; its numerics are tinygrad's own (the kernels are the same UOps, evaluated with
NumPy-typed scalars).

``grad`` is ``output.gradient(x, gradient=cotangent)`` (tinygrad's reverse mode, ones when no
cotangent is given). Compiled mode is ``TinyJit`` around the op and its gradient, one jit per
implementation, dtype, quantity, options and shapes (a jit replays kernels captured for one
shape); every call is realized. bfloat16 reaches tinygrad through float32, exactly, and comes
back as float32 (``Tensor.numpy`` of a bfloat16 tensor).
"""

from __future__ import annotations

import os
import shutil

if "DEV" not in os.environ and shutil.which("clang") is None:
    os.environ["DEV"] = "PYTHON"  # see the module docstring: no compiler, no CPU device

from collections.abc import Callable
from importlib.metadata import version as distribution_version
from typing import Any

import numpy as np
from tinygrad import Device, Tensor, TinyJit, dtypes

from xentbench.adapters._convert import widen_bfloat16
from xentbench.adapters._table import (
    SIGMOID_CE,
    SOFT_CE,
    SPARSE_CE,
    ApiRow,
    TableAdapter,
    api_table_entries,
)
from xentbench.adapters.base import DTYPES, Call, Implementation, PreparedCall
from xentbench.reference.options import ARRAY_OPTIONS, canonical

Function = Callable[..., Any]
_REDUCTION = ("reduction", ("none", "sum", "mean"))
_LAST_AXIS = ("class_axis", (-1,))


def _softmax(x, y, class_axis=-1):
    return x.softmax(int(class_axis))


def _log_softmax(x, y, class_axis=-1):
    return x.log_softmax(int(class_axis))


def _logsumexp(x, y, class_axis=-1):
    return x.logsumexp(int(class_axis))


def _sparse_categorical_crossentropy(x, y, reduction="none", **options):
    return x.sparse_categorical_crossentropy(y, reduction=reduction, **options)


def _cross_entropy(x, y, reduction="none", label_smoothing=0.0):
    return x.cross_entropy(y, reduction=reduction, label_smoothing=float(label_smoothing))


def _nll_loss(x, y, reduction="none", ignore_index=None, class_weight=None):
    return x.log_softmax(1).nll_loss(
        y, weight=class_weight, ignore_index=ignore_index, reduction=reduction
    )


def _binary_crossentropy_logits(x, y):
    return x.binary_crossentropy_logits(y, reduction="none")


_UNLABELLED = (("class_axis", "cotangent"), ())
# api (after "tinygrad:") -> (op, function, options, option_values, adaptation)
_APIS: dict[str, ApiRow] = {
    "Tensor.softmax": ("softmax", _softmax, *_UNLABELLED, ""),
    "Tensor.log_softmax": ("log_softmax", _log_softmax, *_UNLABELLED, ""),
    "Tensor.logsumexp": ("logsumexp", _logsumexp, *_UNLABELLED, ""),
    "Tensor.sparse_categorical_crossentropy": (
        SPARSE_CE,
        _sparse_categorical_crossentropy,
        ("reduction", "ignore_index", "label_smoothing", "class_axis", "cotangent"),
        (_REDUCTION, _LAST_AXIS),
        "",
    ),
    "Tensor.cross_entropy": (
        SPARSE_CE,
        _cross_entropy,
        ("reduction", "label_smoothing", "cotangent"),
        (_REDUCTION,),
        "",
    ),
    "Tensor.cross_entropy(probabilities)": (
        SOFT_CE,
        _cross_entropy,
        ("reduction", "label_smoothing", "cotangent"),
        (_REDUCTION,),
        "",
    ),
    "Tensor.nll_loss(Tensor.log_softmax)": (
        SPARSE_CE,
        _nll_loss,
        ("reduction", "ignore_index", "class_weight", "cotangent"),
        (_REDUCTION,),
        "Tensor.log_softmax(1) applied first, as users do",
    ),
    "Tensor.binary_crossentropy_logits": (SIGMOID_CE, _binary_crossentropy_logits, (), (), ""),
}
_DTYPES = {name: getattr(dtypes, name) for name in DTYPES}


def _to_tensor(array: np.ndarray) -> Tensor:
    """A realized tensor of the array's dtype (bfloat16 through float32, exactly)."""
    dtype = _DTYPES.get(str(array.dtype))  # None for the int64 labels: kept as they are
    tensor = Tensor(np.array(widen_bfloat16(array)))
    if dtype is not None and tensor.dtype != dtype:
        tensor = tensor.cast(dtype)
    return tensor.realize()


def _to_numpy(tensor: Tensor) -> np.ndarray:
    return np.asarray(tensor.numpy())


class TinygradAdapter(TableAdapter):
    """tinygrad's softmax family and losses, eager and TinyJit, with its reverse mode."""

    name = "tinygrad"

    def version(self) -> str:
        described = f"tinygrad {distribution_version('tinygrad')} on {Device.DEFAULT}"
        if Device.DEFAULT == "PYTHON":
            described += " (the Python emulator, no clang on PATH: timings not meaningful)"
        return described

    def entries(self) -> list[tuple[Implementation, Function]]:
        return api_table_entries("tinygrad", _APIS, DTYPES)

    def prepare(self, call: Call, logits: np.ndarray, labels: np.ndarray | None) -> PreparedCall:
        x = _to_tensor(logits)
        y = None if labels is None else _to_tensor(labels)
        options = {
            name: _to_tensor(np.asarray(value)) if name in ARRAY_OPTIONS else value
            for name, value in call.options.items()
        }
        cotangent = options.pop("cotangent", None)
        function = self.function(call)
        want_grad = call.quantity == "grad"

        def evaluate(x: Tensor, y: Tensor | None, seed: Tensor | None) -> Tensor:
            output = function(x, y, **options)
            if want_grad:
                seed = output.ones_like() if seed is None else seed
                (output,) = output.gradient(x, gradient=seed)
            return output.realize()

        if call.mode == "compiled":
            shapes = (logits.shape, None if labels is None else labels.shape)
            key = (call.implementation.name, call.dtype, call.quantity, canonical(call.options))
            evaluate = self.compiled((*key, shapes), evaluate, TinyJit)

        def run() -> Tensor:
            output = evaluate(x, y, cotangent)
            Device[x.device].synchronize()
            return output

        return PreparedCall(run=run, to_numpy=_to_numpy)
