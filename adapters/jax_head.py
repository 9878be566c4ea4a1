"""The LLM head as JAX and optax users compose it around the library's own ops.

``softcapped = cap * jnp.tanh((x / T) / cap)`` (``x / T`` first, ``T`` a number or one per
row), then the optax loss or ``jax.nn`` op on it; the losses add
``z_loss * jax.nn.logsumexp(softcapped, axis=-1) ** 2``. ``jax.grad``, ``jax.vjp`` and
``jax.jvp`` differentiate the composition: nothing is emulated or fixed.
``vocab_parallel_cross_entropy(simulated shards)`` is Megatron's algorithm in ``jax.numpy`` on
``shards`` slices of the classes (``reference.shards``) in one process.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from xentbench.adapters.base import HEAD_COMPOSITION
from xentbench.reference.shards import bounds

HEAD = ("softcap", "temperature", "z_loss")
ADAPTATION = HEAD_COMPOSITION + "softcapped = cap * tanh((x / T) / cap), then the API"


def _head_softcapped(x, softcap=None, temperature=None):
    """cap * tanh((x / T) / cap) in x's dtype (x / T without a cap)."""
    z = x
    if temperature is not None:
        t = jnp.asarray(temperature, dtype=x.dtype)
        z = z / (t[..., None] if t.ndim else t)
    if softcap is not None and float(softcap) != float("inf"):
        z = softcap * jnp.tanh(z / softcap)
    return z


def _head_loss(loss, z, z_loss):
    return loss if z_loss is None else loss + z_loss * jax.nn.logsumexp(z, axis=-1) ** 2


def _optax_head_sparse(x, y, softcap=None, temperature=None, z_loss=None):
    z = _head_softcapped(x, softcap, temperature)
    return _head_loss(optax.softmax_cross_entropy_with_integer_labels(z, y), z, z_loss)


def _optax_head_soft(x, y, softcap=None, temperature=None, z_loss=None):
    z = _head_softcapped(x, softcap, temperature)
    return _head_loss(optax.softmax_cross_entropy(z, y), z, z_loss)


def _head_log_softmax(x, y, softcap=None, temperature=None):
    return jax.nn.log_softmax(_head_softcapped(x, softcap, temperature), axis=-1)


def _vocab_parallel(
    x, y, shards=1, label_smoothing=0.0, softcap=None, temperature=None, z_loss=None
):
    """Megatron's vocab_parallel_cross_entropy on simulated shards: float32 for 16-bit logits
    (as Megatron casts them), the max under stop_gradient, max and sums reduced over the
    slices, the label's logit from the slice holding it, smoothing from each slice's
    log-probabilities; the loss in the logits' dtype."""
    wide = x.astype(jnp.float32) if x.dtype in (jnp.float16, jnp.bfloat16) else x
    z = _head_softcapped(wide, softcap, temperature)
    pieces = [(start, z[:, start:stop]) for start, stop in bounds(z.shape[-1], int(shards))]
    top = jnp.max(jnp.stack([jnp.max(piece, axis=-1) for _, piece in pieces]), axis=0)
    top = jax.lax.stop_gradient(jnp.where(jnp.isfinite(top), top, 0))[:, None]
    log_s = jnp.log(sum(jnp.sum(jnp.exp(piece - top), axis=-1) for _, piece in pieces))
    target = jnp.zeros_like(log_s)
    for start, piece in pieces:
        mine = (y >= start) & (y < start + piece.shape[-1])
        local = jnp.clip(y - start, 0, piece.shape[-1] - 1)
        picked = jnp.take_along_axis(piece, local[:, None], axis=-1)[:, 0] - top[:, 0]
        target = target + jnp.where(mine, picked, 0)
    loss = log_s - target
    if label_smoothing:
        spread = sum(jnp.sum(log_s[:, None] - (piece - top), axis=-1) for _, piece in pieces)
        loss = (1 - label_smoothing) * loss + label_smoothing / z.shape[-1] * spread
    if z_loss is not None:
        loss = loss + z_loss * (top[:, 0] + log_s) ** 2
    return loss.astype(x.dtype)


# api (after "jax:") -> (op, function, options it declares, besides the directions)
HEAD_APIS = {
    "optax.softmax_cross_entropy_with_integer_labels(softcapped)+z_loss": (
        "sparse_softmax_cross_entropy",
        _optax_head_sparse,
        HEAD,
    ),
    "optax.softmax_cross_entropy(softcapped)+z_loss": (
        "softmax_cross_entropy",
        _optax_head_soft,
        HEAD,
    ),
    "jax.nn.log_softmax(softcapped)": ("log_softmax", _head_log_softmax, HEAD[:2]),
    "vocab_parallel_cross_entropy(simulated shards)": (
        "sparse_softmax_cross_entropy",
        _vocab_parallel,
        (*HEAD, "shards", "label_smoothing"),
    ),
}
