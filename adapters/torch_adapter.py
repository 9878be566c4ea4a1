"""PyTorch: torch.softmax and friends, F.cross_entropy, F.binary_cross_entropy_with_logits.

Every call uses ``reduction="none"`` so the loss comes back per example. Gradients come from
``torch.autograd.grad`` of the sum of the outputs, recomputing forward and backward on every
``run`` (nothing accumulates in ``.grad``). Compiled mode is ``torch.compile(fn,
fullgraph=True)`` around the op call, with torch's default shape handling: the first shape
compiles a static graph, a second shape recompiles once with dynamic shapes, which then serve
every later shape (as for a user who compiles a function and calls it on several shapes). The
backward is compiled by AOTAutograd, as for a user who compiles a model and calls backward.
bfloat16 reaches torch through float32, which is exact. ``label_smoothing`` of
F.cross_entropy is left out: the reference has no op for it.
"""

from __future__ import annotations

import types
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from adapters._convert import is_bfloat16, narrow_to_bfloat16, widen_bfloat16
from adapters._table import TableAdapter
from adapters.base import DTYPES, GRADIENT_OPS, Call, Implementation, PreparedCall

Function = Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor]


def _softmax(logits: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
    return torch.softmax(logits, dim=-1)


def _log_softmax(logits: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
    return torch.log_softmax(logits, dim=-1)


def _logsumexp(logits: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
    return torch.logsumexp(logits, dim=-1)


def _cross_entropy(logits: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
    return F.cross_entropy(logits, labels, reduction="none")


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
    "F.binary_cross_entropy_with_logits": (
        "sigmoid_cross_entropy",
        _binary_cross_entropy_with_logits,
    ),
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
    return types.FunctionType(code, function.__globals__, function.__name__)


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
        return [
            (
                Implementation(
                    name=f"torch:{api}",
                    op=op,
                    dtypes=DTYPES,
                    modes=("eager", "compiled"),
                    devices=("cpu", "cuda"),
                    gradient=op in GRADIENT_OPS,
                ),
                function,
            )
            for api, (op, function) in _APIS.items()
        ]

    def _function(self, call: Call) -> Function:
        """The eager API, or its compiled copy (one per implementation, dtype, device, quantity)."""
        function = self.function(call)
        if call.mode == "eager":
            return function
        key = (call.implementation.name, call.dtype, call.device, call.quantity)
        return self.compiled(key, function, _compile)

    def prepare(self, call: Call, logits: np.ndarray, labels: np.ndarray | None) -> PreparedCall:
        """Move inputs to the device; ``run`` evaluates (and differentiates) and synchronises."""
        device = torch.device(call.device)
        want_grad = call.quantity == "grad"
        x = _to_tensor(logits, device).requires_grad_(want_grad)
        y = None if labels is None else _to_tensor(labels, device)
        function = self._function(call)
        synchronize = _synchronize(device)

        def run() -> torch.Tensor:
            output = function(x, y)
            if want_grad:
                (output,) = torch.autograd.grad(output.sum(), x)
            synchronize()
            return output

        return PreparedCall(run=run, to_numpy=_to_numpy)
