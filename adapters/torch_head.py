"""The LLM head as PyTorch users compose it around torch's own ops (no fused kernel here).

``softcapped = cap * torch.tanh((x / T) / cap)`` (Gemma 2's ``final_logit_softcapping``; ``x / T``
first, ``T`` a number or one per row), then the op on it; the cross-entropies add
``z_loss * torch.logsumexp(softcapped, -1) ** 2`` (PaLM) to ``F.cross_entropy(...,
reduction="none")``. Autograd differentiates the composition, so the gradient is torch's
backward of tanh, division and the fused cross-entropy: nothing is emulated or fixed.
``vocab_parallel_cross_entropy(simulated shards)`` is Megatron's algorithm written with torch
ops on ``shards`` slices of the classes (``reference.shards``) in one process.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from xentbench.adapters.base import HEAD_COMPOSITION
from xentbench.reference.shards import bounds

HEAD = ("softcap", "temperature", "z_loss")
_DIRECTIONS = ("cotangent", "tangent")
ADAPTATION = HEAD_COMPOSITION + "softcapped = cap * tanh((x / T) / cap), then the API"


def softcapped(x: torch.Tensor, softcap=None, temperature=None) -> torch.Tensor:
    """cap * tanh((x / T) / cap) in x's dtype, as written in Gemma 2's modelling code."""
    z = x
    if temperature is not None:
        per_row = torch.is_tensor(temperature) and temperature.ndim > 0
        z = z / (temperature[..., None] if per_row else temperature)
    if softcap is not None and math.isfinite(float(softcap)):
        z = softcap * torch.tanh(z / softcap)
    return z


def _plus_z_loss(loss: torch.Tensor, z: torch.Tensor, z_loss) -> torch.Tensor:
    if z_loss is None:
        return loss
    return loss + z_loss * torch.logsumexp(z, dim=-1) ** 2


def _head_cross_entropy(logits, labels, softcap=None, temperature=None, z_loss=None):
    z = softcapped(logits, softcap, temperature)
    return _plus_z_loss(F.cross_entropy(z, labels, reduction="none"), z, z_loss)


def _head_unlabelled(op):
    def function(logits, labels, softcap=None, temperature=None):
        return op(softcapped(logits, softcap, temperature), dim=-1)

    return function


def vocab_parallel(
    logits, labels, shards=1, label_smoothing=0.0, softcap=None, temperature=None, z_loss=None
):
    """Megatron's ``vocab_parallel_cross_entropy`` (megatron/core/tensor_parallel/
    cross_entropy.py) with each rank's slice a view: float32 for 16-bit logits as Megatron
    casts them, the max detached, max and sums all-reduced as sums over the slices, the
    label's logit taken from the slice that holds it, smoothing from each slice's
    log-probabilities; the loss is returned in the logits' dtype."""
    wide = logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits
    z = softcapped(wide, softcap, temperature)
    classes = int(z.shape[-1])  # static: the split shapes the graph (torch.compile specialises)
    pieces = [(start, z[:, start:stop]) for start, stop in bounds(classes, int(shards))]
    top = torch.stack([piece.max(dim=-1).values for _, piece in pieces]).max(dim=0).values
    top = torch.where(torch.isfinite(top), top, torch.zeros_like(top)).detach()[:, None]
    total = sum(torch.exp(piece - top).sum(dim=-1) for _, piece in pieces)
    log_s = torch.log(total)
    target = torch.zeros_like(log_s)
    for start, piece in pieces:
        mine = (labels >= start) & (labels < start + piece.shape[-1])
        local = (labels - start).clamp(0, piece.shape[-1] - 1)
        picked = piece.gather(1, local[:, None])[:, 0] - top[:, 0]
        target = target + torch.where(mine, picked, torch.zeros_like(picked))
    loss = log_s - target
    if label_smoothing:
        spread = sum((log_s[:, None] - (piece - top)).sum(dim=-1) for _, piece in pieces)
        loss = (1 - label_smoothing) * loss + label_smoothing / classes * spread
    if z_loss is not None:
        loss = loss + z_loss * (top[:, 0] + log_s) ** 2
    return loss.to(logits.dtype)


# api (after "torch:") -> (op, function of (logits, labels, **options), options it declares)
HEAD_APIS: dict[str, tuple[str, object, tuple[str, ...]]] = {
    "torch.softmax(softcapped)": ("softmax", _head_unlabelled(torch.softmax), HEAD[:2]),
    "torch.log_softmax(softcapped)": ("log_softmax", _head_unlabelled(torch.log_softmax), HEAD[:2]),
    "torch.logsumexp(softcapped)": ("logsumexp", _head_unlabelled(torch.logsumexp), HEAD[:2]),
    "F.cross_entropy(softcapped)+z_loss": (
        "sparse_softmax_cross_entropy",
        _head_cross_entropy,
        HEAD,
    ),
    "F.cross_entropy(softcapped,probabilities)+z_loss": (
        "softmax_cross_entropy",
        _head_cross_entropy,
        HEAD,
    ),
    "vocab_parallel_cross_entropy(simulated shards)": (
        "sparse_softmax_cross_entropy",
        vocab_parallel,
        (*HEAD, "shards", "label_smoothing"),
    ),
}
HEAD_OPTIONS: dict[str, dict] = {
    api: {"options": (*options, *_DIRECTIONS)} for api, (_, _, options) in HEAD_APIS.items()
}
