"""PyTorch: torch.softmax and friends, F.cross_entropy, F.binary_cross_entropy_with_logits.

Every call uses ``reduction="none"`` so the loss comes back per example. Gradients come from
``torch.autograd.grad`` of the sum of the outputs, recomputing forward and backward on every
``run`` (nothing accumulates in ``.grad``). Compiled mode is ``torch.compile(fn,
fullgraph=True)`` around the op call, with torch's default shape handling: the first shape
compiles a static graph, a second shape recompiles once with dynamic shapes, which then serve
every later shape (as for a user who compiles a function and calls it on several shapes). The
backward is compiled by AOTAutograd, as for a user who compiles a model and calls backward.
bfloat16 reaches torch through float32, which is exact.

Options (``reference.options``) map onto the APIs' own arguments and nothing is emulated:
``F.cross_entropy``/``F.nll_loss`` take ``weight``, ``ignore_index``, ``reduction`` and (cross
entropy) ``label_smoothing``; the class axis is torch's dim 1 (``[N, C, d...]``); torch's
``mean`` is the reference's weighted ``mean`` for class indices and ``sum_over_batch_size`` for
probability targets. ``grad`` is ``torch.autograd.grad(output, x, grad_outputs=cotangent)``,
``jvp`` is ``torch.func.jvp`` along the tangent.
"""

from __future__ import annotations

import types
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from xentbench.adapters._convert import is_bfloat16, narrow_to_bfloat16, widen_bfloat16
from xentbench.adapters._table import TableAdapter
from xentbench.adapters.base import (
    DTYPES,
    GRADIENT_OPS,
    LINEAR_OP,
    Call,
    Implementation,
    PreparedCall,
)
from xentbench.adapters.torch_head import ADAPTATION, HEAD, HEAD_APIS, HEAD_OPTIONS, softcapped
from xentbench.reference.options import ARRAY_OPTIONS, canonical

Function = Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor]


def _softmax(logits: torch.Tensor, labels: torch.Tensor | None, class_axis=-1) -> torch.Tensor:
    return torch.softmax(logits, dim=int(class_axis))


def _log_softmax(logits: torch.Tensor, labels: torch.Tensor | None, class_axis=-1) -> torch.Tensor:
    return torch.log_softmax(logits, dim=int(class_axis))


def _logsumexp(logits: torch.Tensor, labels: torch.Tensor | None, class_axis=-1) -> torch.Tensor:
    return torch.logsumexp(logits, dim=int(class_axis))


# The reference's reduction -> torch's (see the module docstring).
_REDUCTION = {"none": "none", "sum": "sum", "mean": "mean", "sum_over_batch_size": "mean"}


def _loss_arguments(options: dict) -> dict:
    arguments = {"reduction": _REDUCTION[options.get("reduction", "none")]}
    if "ignore_index" in options:
        arguments["ignore_index"] = int(options["ignore_index"])
    if "class_weight" in options:
        arguments["weight"] = options["class_weight"]
    return arguments


def _cross_entropy(logits: torch.Tensor, labels: torch.Tensor | None, **options) -> torch.Tensor:
    smoothing = float(options.pop("label_smoothing", 0.0))
    return F.cross_entropy(logits, labels, label_smoothing=smoothing, **_loss_arguments(options))


def _nll_loss(logits: torch.Tensor, labels: torch.Tensor | None, **options) -> torch.Tensor:
    return F.nll_loss(F.log_softmax(logits, dim=1), labels, **_loss_arguments(options))


def _binary_cross_entropy_with_logits(
    logits: torch.Tensor, labels: torch.Tensor | None
) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits, labels, reduction="none")


# api (as written after "torch:") -> (op, function of (logits, labels))
_APIS: dict[str, tuple[str, Function]] = {
    "torch.softmax": ("softmax", _softmax),
    "torch.log_softmax": ("log_softmax", _log_softmax),
    "torch.logsumexp": ("logsumexp", _logsumexp),
    "F.cross_entropy(probabilities)": ("softmax_cross_entropy", _cross_entropy),
    "F.cross_entropy": ("sparse_softmax_cross_entropy", _cross_entropy),
    "F.nll_loss(F.log_softmax)": ("sparse_softmax_cross_entropy", _nll_loss),
    "F.binary_cross_entropy_with_logits": (
        "sigmoid_cross_entropy",
        _binary_cross_entropy_with_logits,
    ),
    **{api: (op, function) for api, (op, function, _) in HEAD_APIS.items()},  # the LLM head
}


_UNLABELLED = ("softmax", "log_softmax", "logsumexp")
_DIRECTIONS = ("cotangent", "tangent")
_LOSS = ("reduction", "ignore_index", "class_weight", "class_axis", *_DIRECTIONS)
_AXIS_1 = ("class_axis", (1,))
# api -> the options it declares and the values it is limited to.
_OPTIONS: dict[str, dict] = {
    **{api: {"options": ("class_axis", *_DIRECTIONS)} for api in _APIS if api.startswith("torch.")},
    "F.cross_entropy": {
        "options": (*_LOSS, "label_smoothing"),
        "option_values": (("reduction", ("none", "sum", "mean")), _AXIS_1),
    },
    "F.cross_entropy(probabilities)": {
        "options": ("reduction", "label_smoothing", "class_weight", "class_axis", *_DIRECTIONS),
        "option_values": (("reduction", ("none", "sum", "sum_over_batch_size")), _AXIS_1),
    },
    "F.nll_loss(F.log_softmax)": {
        "options": _LOSS,
        "option_values": (("reduction", ("none", "sum", "mean")), _AXIS_1),
    },
    **HEAD_OPTIONS,
}
_ADAPTATIONS = {
    "F.nll_loss(F.log_softmax)": "F.log_softmax(dim=1) applied first, as users do",
    **dict.fromkeys(HEAD_APIS, ADAPTATION),
}


def _to_tensor(array: np.ndarray, device: torch.device) -> torch.Tensor:
    """A tensor of the array's dtype on ``device`` (bfloat16 through float32, exactly)."""
    tensor = torch.tensor(widen_bfloat16(array), device=device)  # a copy: inputs may be read-only
    return tensor.to(torch.bfloat16) if is_bfloat16(array) else tensor


def _to_numpy(tensor: torch.Tensor) -> np.ndarray:
    """The tensor on the host as NumPy, in its own dtype (bfloat16 as ml_dtypes.bfloat16)."""
    tensor = tensor.detach().cpu()
    if tensor.dtype == torch.bfloat16:
        return narrow_to_bfloat16(tensor.float().numpy())
    return tensor.numpy()


def _own_code_copy(function: Function) -> Function:
    """A copy of ``function`` with its own code object.

    Dynamo keeps its compiled graphs, and its recompile limit (8), per code object: compiling
    one function for many (dtype, grad) combinations would silently fall back to eager (or, with
    fullgraph=True, fail) after eight. A private code object per cache key avoids it; within a
    key, shapes cost at most two compiles (static, then dynamic).
    """
    code = function.__code__.replace()
    return types.FunctionType(
        code, function.__globals__, function.__name__, function.__defaults__, function.__closure__
    )


def _compile(function: Function) -> Function:
    return torch.compile(_own_code_copy(function), fullgraph=True)


def _synchronize(device: torch.device) -> Callable[[], None]:
    if device.type == "cuda":
        return torch.cuda.synchronize
    return lambda: None


class TorchAdapter(TableAdapter):
    """PyTorch ops in eager and torch.compile modes, with autograd gradients, on CPU and CUDA."""

    name = "torch"

    def version(self) -> str:
        return torch.__version__

    def devices(self) -> tuple[str, ...]:
        return ("cpu", "cuda") if torch.cuda.is_available() else ("cpu",)

    def entries(self) -> list[tuple[Implementation, Function]]:
        return _linear_entries() + [
            (
                Implementation(
                    name=f"torch:{api}",
                    op=op,
                    dtypes=DTYPES,
                    modes=("eager", "compiled"),
                    devices=("cpu", "cuda"),
                    gradient=op in GRADIENT_OPS or op in _UNLABELLED,
                    adaptation=_ADAPTATIONS.get(api, ""),
                    forward=op != "sigmoid_cross_entropy",
                    **_OPTIONS.get(api, {}),
                ),
                function,
            )
            for api, (op, function) in _APIS.items()
        ]

    def _function(self, call: Call, options: dict) -> Function:
        """The eager API (its options bound), or its compiled copy (one per implementation,
        dtype, device, quantity and options)."""
        function = self.function(call)
        if options:
            function = _bound(function, options)
        if call.quantity == "jvp":  # compiled whole, as dynamo traces torch.func transforms
            function = _jvp(function)
        if call.mode == "eager":
            return function
        key = (call.implementation.name, call.dtype, call.device, call.quantity)
        key += (canonical(call.options),) if call.options else ()
        return self.compiled(key, function, _compile)

    def prepare(self, call: Call, logits: np.ndarray, labels: np.ndarray | None) -> PreparedCall:
        """Move inputs to the device; ``run`` evaluates (and differentiates) and synchronises."""
        if call.implementation.op == LINEAR_OP:
            return prepare_linear(call, self._function(call, {}), logits, labels)
        device = torch.device(call.device)
        want_grad = call.quantity == "grad"
        x = _to_tensor(logits, device).requires_grad_(want_grad)
        y = None if labels is None else _to_tensor(labels, device)
        options = {
            name: _to_tensor(np.asarray(value), device) if name in ARRAY_OPTIONS else value
            for name, value in call.options.items()
        }
        cotangent, tangent = options.pop("cotangent", None), options.pop("tangent", None)
        if call.quantity == "jvp" and tangent is None:  # no tangent given: along ones
            tangent = torch.ones_like(x)
        function = self._function(call, options)
        synchronize = _synchronize(device)

        def run() -> torch.Tensor:
            output = function(x, y, tangent) if call.quantity == "jvp" else function(x, y)
            if want_grad and cotangent is None:
                (output,) = torch.autograd.grad(output.sum(), x)
            elif want_grad:
                (output,) = torch.autograd.grad(output, x, grad_outputs=cotangent)
            synchronize()
            return output

        return PreparedCall(run=run, to_numpy=_to_numpy)


def _jvp(function: Function) -> Callable:
    """``torch.func.jvp`` of ``function`` in the logits, along a tangent."""

    def jvp(logits: torch.Tensor, labels: torch.Tensor | None, tangent: torch.Tensor):
        return torch.func.jvp(lambda z: function(z, labels), (logits,), (tangent,))[1]

    return jvp


def _bound(function: Function, options: dict) -> Function:
    """``function`` with its options as keyword arguments."""

    def bound(logits: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        return function(logits, labels, **options)

    return bound


# --------------------------------------------------------------- linear_cross_entropy
# Functions of (hidden, weight, bias or None, labels, ignore_index) -> per-row loss.
LinearFunction = Callable[..., torch.Tensor]
LINEAR_OPTIONS = ("weight", "bias", "ignore_index")
# F.linear_cross_entropy takes no cap, temperature or z-loss (torch 2.13): the composition does.
LINEAR_HEAD = "F.linear+F.cross_entropy(softcapped)+z_loss"
IGNORE_DEFAULT = -100  # torch's default ignore_index: a case without padding has no such label


def _linear_then_cross_entropy(x, w, b, y, ignore_index):
    return F.cross_entropy(F.linear(x, w, b), y, reduction="none", ignore_index=ignore_index)


def _linear_head(x, w, b, y, ignore_index, softcap=None, temperature=None, z_loss=None):
    """F.linear, the head's composition (adapters.torch_head), F.cross_entropy, + z-loss on
    the rows that are not padding."""
    z = softcapped(F.linear(x, w, b), softcap, temperature)
    loss = F.cross_entropy(z, y, reduction="none", ignore_index=ignore_index)
    if z_loss is None:
        return loss
    kept = y != ignore_index
    return loss + torch.where(kept, z_loss * torch.logsumexp(z, dim=-1) ** 2, 0.0)


def _fused(chunking: torch.nn.LinearCrossEntropyOptions | None) -> LinearFunction:
    def linear_cross_entropy(x, w, b, y, ignore_index):
        return F.linear_cross_entropy(
            x, w, y, linear_bias=b, reduction="none", ignore_index=ignore_index, options=chunking
        )

    return linear_cross_entropy


def _chunking(**settings) -> torch.nn.LinearCrossEntropyOptions | None:
    chunking_class = getattr(torch.nn, "LinearCrossEntropyOptions", None)
    return None if chunking_class is None else chunking_class(**settings)


def _linear_entries() -> list[tuple[Implementation, LinearFunction]]:
    """The composition, and F.linear_cross_entropy (torch >= 2.13) on its reference path and
    its chunked path (``options=LinearCrossEntropyOptions(...)``: automatic, and a 16-row
    chunk with the "compact" accumulation policy, which leaves ragged last chunks)."""
    apis: dict[str, LinearFunction] = {"F.linear+F.cross_entropy": _linear_then_cross_entropy}
    apis[LINEAR_HEAD] = _linear_head
    if hasattr(F, "linear_cross_entropy"):
        apis["F.linear_cross_entropy"] = _fused(None)
        apis["F.linear_cross_entropy(chunked)"] = _fused(_chunking())
        compact = _chunking(batch_chunk_size=16, acc_policy="compact")
        apis["F.linear_cross_entropy(chunked,compact,16)"] = _fused(compact)
    return [
        (
            Implementation(
                name=f"torch:{api}",
                op=LINEAR_OP,
                dtypes=DTYPES,
                # Eager only: torch.compile of every linear case shape cost ~26 min of the main
                # job on the 2-core VM, for verdicts identical to eager (docs/linear.md).
                modes=("eager",),
                devices=("cpu", "cuda"),
                gradient=True,
                options=(*LINEAR_OPTIONS, *HEAD) if api == LINEAR_HEAD else LINEAR_OPTIONS,
                adaptation="reduction='none'; gradients of the summed loss by autograd",
            ),
            function,
        )
        for api, function in apis.items()
    ]


def prepare_linear(
    call: Call, function: LinearFunction, hidden: np.ndarray, labels: np.ndarray
) -> PreparedCall:
    """A linear_cross_entropy call: the loss, or the gradient of its sum w.r.t. one input."""
    device = torch.device(call.device)
    wanted = {"grad_hidden": 0, "grad_weight": 1, "grad_bias": 2}.get(call.quantity)
    bias = call.options.get("bias")
    tensors = [
        None if array is None else _to_tensor(np.asarray(array), device)
        for array in (hidden, call.options["weight"], bias)
    ]
    if wanted is not None:
        tensors[wanted].requires_grad_(True)
    y = _to_tensor(np.asarray(labels), device)
    ignore_index = int(call.options.get("ignore_index", IGNORE_DEFAULT))
    synchronize = _synchronize(device)
    head = {name: call.options[name] for name in HEAD if name in call.options}
    if "temperature" in head:  # one per row as a tensor; a scalar stays a number
        t = np.asarray(head["temperature"])
        head["temperature"] = _to_tensor(t, device) if t.ndim else float(t)

    def run() -> torch.Tensor:
        output = function(*tensors, y, ignore_index, **head)
        if wanted is not None:
            (output,) = torch.autograd.grad(output.sum(), tensors[wanted])
        synchronize()
        return output

    return PreparedCall(run=run, to_numpy=_to_numpy)
