"""PaddlePaddle (CPU): ``paddle.nn.functional`` softmax, log_softmax and cross_entropy,
``paddle.logsumexp``, eager and ``paddle.jit.to_static``, a plugin backend (entry point
``paddle``, optional extra ``.[paddle]``).

Checked on paddlepaddle 3.3.1 (CPU wheel): the CPU kernels of these ops are registered for
float32 and float64 only (float16 and bfloat16 raise ``The kernel with key (CPU, ...,
float16) ... is not registered``), so only those are declared. Compiled mode is
``paddle.jit.to_static(fn, full_graph=True)`` (the AST-translated static graph; on the CPU
its default backend falls back from CINN to the interpreter), compiled once per key and
differentiated through, as a user who converts a model calls backward. ``grad`` is
``paddle.grad(output, x, grad_outputs=cotangent)``, ones when no cotangent is given.

``F.cross_entropy`` takes the options by its own names: ``weight``, ``ignore_index``,
``reduction`` (none, sum, mean), ``soft_label``, ``axis``, ``use_softmax`` and
``label_smoothing``. Its ``mean`` is passed for the reference's ``mean``; where they differ
(with a negative ``ignore_index`` Paddle divides by every row, ignored ones included) the
report says so. With soft labels or label smoothing Paddle returns the per-row loss with the
class axis kept (size 1): the adapter drops that axis, and records it.
"""

from __future__ import annotations

import os

os.environ.setdefault("GLOG_minloglevel", "2")  # Paddle's C++ log lines on every graph build

from collections.abc import Callable
from typing import Any

import numpy as np
import paddle
import paddle.nn.functional as F

from xentbench.adapters._table import (
    SIGMOID_CE,
    SOFT_CE,
    SPARSE_CE,
    ApiRow,
    TableAdapter,
    api_table_entries,
)
from xentbench.adapters.base import Call, Implementation, PreparedCall
from xentbench.reference.options import ARRAY_OPTIONS, canonical

Function = Callable[..., Any]
DTYPES = ("float32", "float64")
_REDUCTION = ("reduction", ("none", "sum", "mean"))
_KEPT_AXIS = "per-row loss returned with the class axis kept (size 1); the adapter drops it"


def _softmax(x, y, class_axis=-1):
    return F.softmax(x, axis=int(class_axis))


def _log_softmax(x, y, class_axis=-1):
    return F.log_softmax(x, axis=int(class_axis))


def _logsumexp(x, y, class_axis=-1):
    return paddle.logsumexp(x, axis=int(class_axis))


def _loss_arguments(options: dict) -> dict:
    arguments: dict[str, Any] = {"reduction": options.get("reduction", "none")}
    if "ignore_index" in options:
        arguments["ignore_index"] = int(options["ignore_index"])
    if "class_weight" in options:
        arguments["weight"] = options["class_weight"]
    if "label_smoothing" in options:
        arguments["label_smoothing"] = float(options["label_smoothing"])
    arguments["axis"] = int(options.get("class_axis", -1))
    return arguments


def _cross_entropy(x, y, **options):
    return F.cross_entropy(x, y, **_loss_arguments(options))


def _cross_entropy_soft(x, y, **options):
    return F.cross_entropy(x, y, soft_label=True, **_loss_arguments(options))


def _cross_entropy_probabilities(x, y, **options):
    probabilities = F.softmax(x, axis=int(options.get("class_axis", -1)))
    return F.cross_entropy(probabilities, y, use_softmax=False, **_loss_arguments(options))


def _softmax_with_cross_entropy(x, y, **options):
    ignore_index = int(options.get("ignore_index", -100))
    return F.softmax_with_cross_entropy(x, y.unsqueeze(-1), ignore_index=ignore_index)


def _binary_cross_entropy_with_logits(x, y):
    return F.binary_cross_entropy_with_logits(x, y, reduction="none")


_UNLABELLED_OPTIONS = ("class_axis", "cotangent")
_SPARSE_OPTIONS = ("reduction", "ignore_index", "class_weight", "class_axis", "cotangent")
# api (after "paddle:") -> (op, function, options, option_values, adaptation)
_APIS: dict[str, ApiRow] = {
    "F.softmax": ("softmax", _softmax, _UNLABELLED_OPTIONS, (), ""),
    "F.log_softmax": ("log_softmax", _log_softmax, _UNLABELLED_OPTIONS, (), ""),
    "paddle.logsumexp": ("logsumexp", _logsumexp, _UNLABELLED_OPTIONS, (), ""),
    "F.cross_entropy": (
        SPARSE_CE,
        _cross_entropy,
        (*_SPARSE_OPTIONS, "label_smoothing"),
        (_REDUCTION,),
        f"with label_smoothing: {_KEPT_AXIS}",
    ),
    "F.cross_entropy(soft_label=True)": (
        SOFT_CE,
        _cross_entropy_soft,
        ("reduction", "label_smoothing", "class_axis", "cotangent"),
        (_REDUCTION,),
        _KEPT_AXIS,
    ),
    "F.cross_entropy(use_softmax=False)": (
        SPARSE_CE,
        _cross_entropy_probabilities,
        _SPARSE_OPTIONS,
        (_REDUCTION,),
        "F.softmax applied first, as use_softmax=False expects probabilities",
    ),
    "F.softmax_with_cross_entropy": (
        SPARSE_CE,
        _softmax_with_cross_entropy,
        ("ignore_index", "cotangent"),
        (),
        "labels passed as [N, 1] and the [N, 1] loss read as [N], as the API shapes them",
    ),
    "F.binary_cross_entropy_with_logits": (
        SIGMOID_CE,
        _binary_cross_entropy_with_logits,
        (),
        (),
        "",
    ),
}


def _to_numpy(tensor) -> np.ndarray:
    return np.asarray(tensor.numpy())


def _drop_kept_axis(output, logits_ndim: int, class_axis: int):
    """The loss without the size-1 class axis Paddle keeps for soft labels and smoothing."""
    if output.ndim == logits_ndim and output.shape[class_axis % logits_ndim] == 1:
        return output.squeeze(class_axis % logits_ndim)
    return output


class PaddleAdapter(TableAdapter):
    """paddle.nn.functional ops in eager and to_static modes, with paddle.grad, on the CPU."""

    name = "paddle"

    def version(self) -> str:
        return f"paddlepaddle {paddle.__version__}"

    def entries(self) -> list[tuple[Implementation, Function]]:
        return api_table_entries("paddle", _APIS, DTYPES)

    def _function(self, call: Call, options: dict) -> Function:
        function = self.function(call)

        def bound(x, y):
            return function(x, y, **options)

        if call.mode == "eager":
            return bound
        key = (call.implementation.name, call.dtype, call.quantity, canonical(call.options))
        return self.compiled(key, bound, lambda f: paddle.jit.to_static(f, full_graph=True))

    def prepare(self, call: Call, logits: np.ndarray, labels: np.ndarray | None) -> PreparedCall:
        paddle.set_device("cpu")
        x = paddle.to_tensor(np.array(logits))
        x.stop_gradient = call.quantity != "grad"
        y = None if labels is None else paddle.to_tensor(np.array(labels))
        options = {
            name: paddle.to_tensor(np.array(value)) if name in ARRAY_OPTIONS else value
            for name, value in call.options.items()
        }
        cotangent = options.pop("cotangent", None)
        function = self._function(call, options)
        class_axis = int(call.options.get("class_axis", -1))
        per_row = call.implementation.op in (SOFT_CE, SPARSE_CE)
        per_row &= call.options.get("reduction", "none") == "none"

        def run():
            output = function(x, y)
            if per_row:
                output = _drop_kept_axis(output, x.ndim, class_axis)
            if call.quantity == "grad":
                seed = paddle.ones_like(output) if cotangent is None else cotangent
                (output,) = paddle.grad([output], [x], grad_outputs=[seed])
            return output

        return PreparedCall(run=run, to_numpy=_to_numpy)
