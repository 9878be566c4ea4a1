"""The LLM head as JAX and optax users compose it around the library's own ops.

``softcapped = cap * jnp.tanh((x / T) / cap)`` (``x / T`` first, ``T`` a number or one per
row), then the optax loss or ``jax.nn`` op on it; the losses add
``z_loss * jax.nn.logsumexp(softcapped, axis=-1) ** 2``. ``jax.grad``, ``jax.vjp`` and
``jax.jvp`` differentiate the composition: nothing is emulated or fixed.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

HEAD = ("softcap", "temperature", "z_loss")
ADAPTATION = "a composition: softcapped = cap * tanh((x / T) / cap), then the API"


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
}
