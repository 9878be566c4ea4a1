"""Liger-Kernel (``liger-kernel`` on PyPI): Triton cross-entropy and fused linear cross-entropy
kernels for language-model training, a plugin backend (entry point ``liger_kernel``, optional
extra ``.[liger-kernel]``, not in "all": it brings triton).

``liger_kernel.transformers.functional.liger_cross_entropy(input, target, ignore_index=-100,
reduction="mean", label_smoothing=0.0, lse_square_scale=0.0, softcap=None,
return_z_loss=False)`` takes the options by its own names: the reference's ``z_loss`` is
``lse_square_scale`` (PaLM's z-loss, ``z * logsumexp**2`` per row), ``softcap`` is Gemma 2's
``cap * tanh(x / cap)``. ``return_z_loss=True`` returns ``(loss, z_loss)``; that variant is
its own implementation, judged on the loss it returns. The kernels write the gradient into
the logits during the forward pass, so every run works on a fresh copy of the logits (the
copy is part of what is timed).

``liger_fused_linear_cross_entropy(input, weight, target, bias=None, ...)`` is the linear op:
values with ``reduction="none"``, gradients as those of ``reduction="sum"`` (Liger computes
them chunk by chunk in the forward pass, for a scalar loss).

Triton compiles these kernels for a GPU only: without a CUDA device the adapter cannot be
constructed, and the backend lists as unavailable with that reason.
"""

from __future__ import annotations

from importlib.metadata import version as distribution_version

import numpy as np
import torch
from liger_kernel.transformers.functional import (
    liger_cross_entropy,
    liger_fused_linear_cross_entropy,
)

from xentbench.adapters.base import LINEAR_OP, Adapter, Call, Implementation, PreparedCall
from xentbench.adapters.torch_adapter import _to_numpy, _to_tensor, prepare_linear

NO_CUDA = "Liger-Kernel's kernels are Triton GPU kernels and no CUDA device is visible"
DTYPES = ("float16", "bfloat16", "float32")
# xentbench option -> liger_cross_entropy's argument
_ARGUMENTS = {
    "reduction": "reduction",
    "ignore_index": "ignore_index",
    "label_smoothing": "label_smoothing",
    "softcap": "softcap",
    "z_loss": "lse_square_scale",
}
_CE_APIS = {
    "liger_cross_entropy": False,
    "liger_cross_entropy(return_z_loss=True)": True,
}
_FLCE = "liger_fused_linear_cross_entropy"


def _cross_entropy(return_z_loss: bool, options: dict):
    arguments = {_ARGUMENTS[name]: value for name, value in options.items()}
    arguments.setdefault("reduction", "none")
    if "softcap" in arguments:
        arguments["softcap"] = float(arguments["softcap"])

    def function(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        result = liger_cross_entropy(x, y, return_z_loss=return_z_loss, **arguments)
        return result[0] if return_z_loss else result

    return function


def _fused_linear(reduction: str):
    def function(x, w, b, y, ignore_index):
        return liger_fused_linear_cross_entropy(
            x, w, y, bias=b, ignore_index=ignore_index, reduction=reduction
        )

    return function


class LigerKernelAdapter(Adapter):
    """Liger-Kernel's cross-entropy and fused linear cross-entropy on CUDA, with autograd."""

    name = "liger_kernel"

    def __init__(self) -> None:
        if not torch.cuda.is_available():
            raise RuntimeError(f"{NO_CUDA} (torch.cuda.is_available() is False)")

    def version(self) -> str:
        return f"liger-kernel {distribution_version('liger-kernel')}, torch {torch.__version__}"

    def devices(self) -> tuple[str, ...]:
        return ("cpu", "cuda") if torch.cuda.is_available() else ("cpu",)

    def implementations(self) -> tuple[Implementation, ...]:
        cross_entropies = tuple(
            Implementation(
                name=f"liger_kernel:{api}",
                op="sparse_softmax_cross_entropy",
                dtypes=DTYPES,
                devices=("cuda",),
                gradient=True,
                options=(*_ARGUMENTS, "cotangent"),
                option_values=(("reduction", ("none", "sum", "mean")),),
                adaptation="the logits copied on every run (the kernel writes its gradient there)",
            )
            for api in _CE_APIS
        )
        fused = Implementation(
            name=f"liger_kernel:{_FLCE}",
            op=LINEAR_OP,
            dtypes=DTYPES,
            devices=("cuda",),
            gradient=True,
            options=("weight", "bias", "ignore_index"),
            adaptation="reduction='none' for values; gradients of reduction='sum'",
        )
        return (*cross_entropies, fused)

    def prepare(self, call: Call, logits: np.ndarray, labels: np.ndarray | None) -> PreparedCall:
        if call.implementation.op == LINEAR_OP:
            reduction = "none" if call.quantity == "value" else "sum"
            return prepare_linear(call, _fused_linear(reduction), logits, labels)
        device = torch.device(call.device)
        x = _to_tensor(logits, device)
        y = _to_tensor(np.asarray(labels), device)
        options = dict(call.options)
        cotangent = options.pop("cotangent", None)
        seed = None if cotangent is None else _to_tensor(np.asarray(cotangent), device)
        function = _cross_entropy(_CE_APIS[call.implementation.api], options)
        want_grad = call.quantity == "grad"

        def run() -> torch.Tensor:
            logits = x.clone().requires_grad_(want_grad)
            output = function(logits, y)
            if want_grad:
                ones = torch.ones_like(output) if seed is None else seed
                (output,) = torch.autograd.grad(output, logits, grad_outputs=ones)
            torch.cuda.synchronize()
            return output

        return PreparedCall(run=run, to_numpy=_to_numpy)
