"""The array kinds a verified function may take (``xentbench verify --array``): NumPy, torch,
JAX. Each converts the NumPy inputs exactly (bfloat16 included), converts what the function
returned back to NumPy without rounding it (None for a non-array), and differentiates through
the framework's autograd (a VJP with the given cotangent w.r.t. the logits)."""

from __future__ import annotations

from typing import Any

import numpy as np

from xentbench.reference.dtypes import BFLOAT16


class NumpyArrays:
    """Plain NumPy arrays (bfloat16 as ml_dtypes.bfloat16); no autograd."""

    def devices(self) -> tuple[str, ...]:
        return ("cpu",)

    def to_array(self, values: np.ndarray, device: str) -> Any:
        return values

    def to_numpy(self, out: Any) -> np.ndarray | None:
        return out if isinstance(out, np.ndarray) else None

    def vjp(self, function, inputs: list, keywords: dict, cotangent) -> Any:
        raise TypeError("NumPy has no autograd: give --grad-fn NAME, or --array torch|jax")


class TorchArrays:
    """torch tensors on the call's device."""

    def __init__(self) -> None:
        import torch

        self.torch = torch

    def devices(self) -> tuple[str, ...]:
        return ("cpu", "cuda") if self.torch.cuda.is_available() else ("cpu",)

    def to_array(self, values: np.ndarray, device: str) -> Any:
        torch = self.torch
        if values.dtype == BFLOAT16:  # torch cannot take ml_dtypes: via float32, exactly
            return torch.from_numpy(values.astype(np.float32)).to(torch.bfloat16).to(device)
        return torch.from_numpy(np.ascontiguousarray(values)).to(device)

    def to_numpy(self, out: Any) -> np.ndarray | None:
        torch = self.torch
        if not isinstance(out, torch.Tensor):
            return None
        out = out.detach().cpu()
        if out.dtype == torch.bfloat16:  # every bfloat16 is a float32: exact both ways
            return out.to(torch.float32).numpy().astype(BFLOAT16)
        return out.numpy()

    def vjp(self, function, inputs: list, keywords: dict, cotangent) -> Any:
        x = inputs[0].detach().requires_grad_(True)
        out = function(x, *inputs[1:], **keywords)
        (grad,) = self.torch.autograd.grad(out, x, grad_outputs=cotangent)
        return grad


class JaxArrays:
    """JAX arrays (64-bit enabled, so that float64 stays float64)."""

    def __init__(self) -> None:
        import jax

        jax.config.update("jax_enable_x64", True)
        self.jax = jax

    def devices(self) -> tuple[str, ...]:
        try:
            return ("cpu", "cuda") if self.jax.devices("gpu") else ("cpu",)
        except RuntimeError:
            return ("cpu",)

    def to_array(self, values: np.ndarray, device: str) -> Any:
        target = self.jax.devices("gpu" if device == "cuda" else "cpu")[0]
        return self.jax.device_put(values, target)

    def to_numpy(self, out: Any) -> np.ndarray | None:
        if not isinstance(out, self.jax.Array):
            return None
        return np.asarray(out)

    def vjp(self, function, inputs: list, keywords: dict, cotangent) -> Any:
        rest = inputs[1:]
        _, pullback = self.jax.vjp(lambda x: function(x, *rest, **keywords), inputs[0])
        return pullback(cotangent)[0]


def kind(name: str):
    """The array kind called ``name`` (numpy, torch or jax), its framework imported."""
    kinds = {"numpy": NumpyArrays, "torch": TorchArrays, "jax": JaxArrays}
    if name not in kinds:
        raise ValueError(f"unknown array kind {name!r}; valid: {', '.join(kinds)}")
    return kinds[name]()
