"""The LLM head as TensorFlow and Keras users compose it around the library's own ops.

``softcapped = cap * tf.tanh((x / T) / cap)`` (``x / T`` first, ``T`` a number or one per row;
Gemma 2's ``final_logit_softcapping`` as its Keras port writes it), then the tf.nn or Keras op
on it; the losses add ``z_loss * tf.reduce_logsumexp(softcapped, axis=-1) ** 2`` (PaLM).
``tf.GradientTape`` and ``tf.autodiff.ForwardAccumulator`` differentiate the composition:
nothing is emulated or fixed. The other TensorFlow implementations declare none of these
options and are ``unsupported`` for them.
"""

from __future__ import annotations

import math

import keras
import tensorflow as tf

from xentbench.adapters._table import SOFT_CE, SPARSE_CE
from xentbench.adapters.base import HEAD_COMPOSITION, Implementation
from xentbench.adapters.tensorflow_options import tf_implementation

HEAD = ("softcap", "temperature", "z_loss")
_DIRECTIONS = ("cotangent", "tangent")
ADAPTATION = HEAD_COMPOSITION + "softcapped = cap * tf.tanh((x / T) / cap), then the API"


def softcapped(x: tf.Tensor, softcap=None, temperature=None) -> tf.Tensor:
    """cap * tanh((x / T) / cap) in x's dtype (x / T without a cap)."""
    z = x
    if temperature is not None:
        t = tf.cast(temperature, x.dtype)
        z = z / (t[..., None] if t.shape.rank else t)
    if softcap is not None and math.isfinite(float(softcap)):
        cap = tf.constant(float(softcap), x.dtype)
        z = cap * tf.tanh(z / cap)
    return z


def _plus_z_loss(loss: tf.Tensor, z: tf.Tensor, z_loss) -> tf.Tensor:
    if z_loss is None:
        return loss
    return loss + tf.constant(float(z_loss), z.dtype) * tf.reduce_logsumexp(z, axis=-1) ** 2


def _sparse(x, y, softcap=None, temperature=None, z_loss=None):
    z = softcapped(x, softcap, temperature)
    loss = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=z)
    return _plus_z_loss(loss, z, z_loss)


def _keras_soft(x, y, softcap=None, temperature=None, z_loss=None):
    z = softcapped(x, softcap, temperature)
    loss = keras.losses.categorical_crossentropy(y, z, from_logits=True)
    return _plus_z_loss(loss, z, z_loss)


def _log_softmax(x, y, softcap=None, temperature=None):
    return tf.nn.log_softmax(softcapped(x, softcap, temperature), axis=-1)


# api (after "tensorflow:") -> (op, function, options it declares besides the directions)
HEAD_APIS = {
    "tf.nn.sparse_softmax_cross_entropy_with_logits(softcapped)+z_loss": (SPARSE_CE, _sparse, HEAD),
    "keras.losses.categorical_crossentropy(softcapped,from_logits=True)+z_loss": (
        SOFT_CE,
        _keras_soft,
        HEAD,
    ),
    "tf.nn.log_softmax(softcapped)": ("log_softmax", _log_softmax, HEAD[:2]),
}


def head_entries() -> list[tuple[Implementation, object]]:
    """The compositions as implementations: every dtype, mode and device, VJP and JVP."""
    return [
        (
            tf_implementation(
                api,
                op,
                gradient=True,
                options=(*options, *_DIRECTIONS),
                adaptation=ADAPTATION,
                forward=True,
            ),
            function,
        )
        for api, (op, function, options) in HEAD_APIS.items()
    ]
