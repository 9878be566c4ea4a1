"""TensorFlow calls with options (``reference.options``), as users write them.

``tf.nn`` ops take the class axis (``axis=``) where they have one and are reduced with
``tf.reduce_sum``/``tf.reduce_mean`` (the reference's ``sum``/``sum_over_batch_size``); the
Keras losses with options are declared for every Keras backend in ``adapters.keras_losses``.
``grad`` is ``tf.GradientTape.gradient(..., output_gradients=)``,
``jvp`` is ``tf.autodiff.ForwardAccumulator``.
"""

from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf

from xentbench.adapters._table import SOFT_CE, SPARSE_CE, everywhere
from xentbench.adapters.base import Implementation

Function = Callable[..., tf.Tensor]

_DIRECTIONS = ("cotangent", "tangent")
_AXIS = ("class_axis", *_DIRECTIONS)
_TF_REDUCE = {
    "none": lambda loss: loss,
    "sum": tf.reduce_sum,
    "sum_over_batch_size": tf.reduce_mean,
}
# TF has no GPU float64 kernel for SparseSoftmaxCrossEntropyWithLogits
# (tensorflow/core/kernels/sparse_xent_op.cc), and eager soft placement would silently run it on
# the CPU; XLA lowers the op itself. Not yet verified on a GPU.
_SPARSE_GAPS = (("cuda", "eager", "float64"),)


def tf_implementation(name: str, op: str, **fields) -> Implementation:
    """A TensorFlow/Keras implementation: every dtype, mode and device, the sparse op's GPU
    gap; ``fields`` add the rest (gradient, options, adaptation, ...). The plain table in
    ``adapters.tensorflow_adapter`` builds its declarations here too."""
    gaps = _SPARSE_GAPS if op == SPARSE_CE else ()
    return everywhere("tensorflow", name, op, gaps=gaps, **fields)


def _implementation(name, op, options, values=(), adaptation="") -> Implementation:
    return tf_implementation(
        name,
        op,
        gradient=True,
        adaptation=adaptation,
        options=options,
        forward=True,
        option_values=values,
    )


def _soft_nn(x, y, reduction="none", class_axis=-1):
    loss = tf.nn.softmax_cross_entropy_with_logits(labels=y, logits=x, axis=int(class_axis))
    return _TF_REDUCE[reduction](loss)


def _sparse_nn(x, y, reduction="none"):
    return _TF_REDUCE[reduction](tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=x))


_REDUCTION = "reduction"
_TF_VALUES = ((_REDUCTION, ("none", "sum", "sum_over_batch_size")),)
_USER = "reduced with tf.reduce_sum / tf.reduce_mean, as users write it"


def option_entries() -> dict[str, tuple[Implementation, Function]]:
    """api -> (Implementation, function of (logits, labels, **options)); the tf.nn entries
    replace the plain adapter's ones of the same name (the Keras losses with options are
    ``adapters.keras_losses``)."""
    return {impl.api: (impl, function) for impl, function in _nn_entries()}


def _nn_entries() -> list[tuple[Implementation, Function]]:
    """The tf.nn and tf.math functions with options."""
    return [
        (_implementation("tf.nn.softmax", "softmax", _AXIS), _unlabelled(tf.nn.softmax)),
        (
            _implementation("tf.nn.log_softmax", "log_softmax", _AXIS),
            _unlabelled(tf.nn.log_softmax),
        ),
        (
            _implementation("tf.math.reduce_logsumexp", "logsumexp", _AXIS),
            _unlabelled(tf.math.reduce_logsumexp),
        ),
        (
            _implementation(
                "tf.nn.softmax_cross_entropy_with_logits",
                SOFT_CE,
                (_REDUCTION, *_AXIS),
                _TF_VALUES,
                _USER,
            ),
            _soft_nn,
        ),
        (
            _implementation(
                "tf.nn.sparse_softmax_cross_entropy_with_logits",
                SPARSE_CE,
                (_REDUCTION, *_DIRECTIONS),
                _TF_VALUES,
                _USER,
            ),
            _sparse_nn,
        ),
    ]


def _unlabelled(op) -> Function:
    return lambda x, y, class_axis=-1: op(x, axis=int(class_axis))


def with_direction(function: Function, quantity: str) -> Function:
    """The VJP with a cotangent (``tf.GradientTape``) or the JVP along a tangent
    (``tf.autodiff.ForwardAccumulator``) of ``function(logits, labels)``."""
    if quantity == "jvp":

        def jvp(x, y, tangent):
            with tf.autodiff.ForwardAccumulator(primals=x, tangents=tangent) as accumulator:
                output = function(x, y)
            return accumulator.jvp(output)

        return jvp

    def vjp(x, y, cotangent):
        with tf.GradientTape() as tape:
            tape.watch(x)
            output = function(x, y)
        return tape.gradient(output, x, output_gradients=cotangent)

    return vjp
