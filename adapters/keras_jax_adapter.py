"""Keras 3 on its JAX backend: the Keras losses (``adapters.keras_losses``, as the TensorFlow
adapter declares them) and ``keras.ops``' softmax family, eager and ``jax.jit``.

A plugin registered through the ``xentbench.adapters`` entry point, installed by the optional
extra ``keras-jax``. Keras reads ``KERAS_BACKEND`` once per process, so this backend sets it
before importing Keras and is unavailable, with the reason, in a process whose Keras was
imported for another backend first (``xentbench run`` gives it a worker of its own). Inputs,
64-bit mode, ``jax.jit``, the persistent compilation cache and the derivatives (``jax.grad``,
``jax.vjp``, ``jax.jvp``) are the JAX adapter's (``adapters.jax_adapter``); ``from_logits=False``
losses take ``keras.ops.softmax`` / ``keras.ops.sigmoid`` of the logits, as users write them.

JAX runs as Keras users run it by default, without its 64-bit mode, so float64 is not declared:
under that mode ``keras.losses.sparse_categorical_crossentropy`` returns float64 losses for
float32 logits (its one-hot labels take JAX's default float, float64 there).
"""

from __future__ import annotations

import os

os.environ["KERAS_BACKEND"] = "jax"  # Keras reads it once, on its first import

import jax
import keras

from xentbench.adapters import keras_losses
from xentbench.adapters.base import DEVICES, MODES, Implementation
from xentbench.adapters.jax_adapter import JaxAdapter

BACKEND = "keras_jax"
DTYPES = ("float16", "bfloat16", "float32")  # no 64-bit mode: see above


def declare(name: str, op: str, **fields) -> Implementation:
    """``keras_jax:<name>`` for every mode and device and the dtypes of ``DTYPES``."""
    return Implementation(
        name=f"{BACKEND}:{name}", op=op, dtypes=DTYPES, modes=MODES, devices=DEVICES, **fields
    )


class KerasJaxAdapter(JaxAdapter):
    """Keras 3 losses and ``keras.ops`` on the JAX backend."""

    name = BACKEND
    x64 = False

    def __init__(self) -> None:
        keras_losses.require_backend("jax")
        super().__init__()

    def version(self) -> str:
        return f"keras {keras.__version__}, jax {jax.__version__}"

    def entries(self) -> list:
        return keras_losses.keras_backend_entries(declare)
