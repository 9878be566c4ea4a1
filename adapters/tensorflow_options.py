"""TensorFlow and Keras calls with options (``reference.options``), as users write them.

``tf.nn`` ops take the class axis (``axis=``) where they have one and are reduced with
``tf.reduce_sum``/``tf.reduce_mean`` (the reference's ``sum``/``sum_over_batch_size``). The Keras
functional losses take ``label_smoothing``, ``ignore_class`` and ``axis``; the Keras loss
classes add ``sample_weight`` and their reductions: ``None``, ``"sum"``,
``"mean_with_sample_weight"`` (the reference's ``mean``), ``"sum_over_batch_size"`` (its
``sum_over_batch_size``, or with ``ignore_class`` its ``mean_over_valid``: Keras divides by the
number of kept rows then). ``grad`` is ``tf.GradientTape.gradient(..., output_gradients=)``,
``jvp`` is ``tf.autodiff.ForwardAccumulator``.
"""

from __future__ import annotations

from collections.abc import Callable

import keras
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
_KERAS_REDUCTION = {
    "none": None,
    "sum": "sum",
    "mean": "mean_with_sample_weight",
    "sum_over_batch_size": "sum_over_batch_size",
    "mean_over_valid": "sum_over_batch_size",
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


def _keras_cce(x, y, label_smoothing=0.0, class_axis=-1):
    return keras.losses.categorical_crossentropy(
        y, x, from_logits=True, label_smoothing=float(label_smoothing), axis=int(class_axis)
    )


def _keras_scce(x, y, ignore_index=None, class_axis=-1):
    ignore = None if ignore_index is None else int(ignore_index)
    return keras.losses.sparse_categorical_crossentropy(
        y, x, from_logits=True, ignore_class=ignore, axis=int(class_axis)
    )


def _keras_class(cls, **fixed) -> Function:
    """A Keras loss object built from the options, called with ``sample_weight``."""

    def call(x, y, reduction="none", sample_weight=None, class_axis=-1, **options):
        if "ignore_index" in options:
            options["ignore_class"] = int(options.pop("ignore_index"))
        if "label_smoothing" in options:
            options["label_smoothing"] = float(options["label_smoothing"])
        loss = cls(
            from_logits=True,
            reduction=_KERAS_REDUCTION[reduction],
            axis=int(class_axis),
            dtype=x.dtype.name,  # the loss object's default float32 would cast the inputs
            **fixed,
            **options,
        )
        return loss(y, x, sample_weight=sample_weight)

    return call


_REDUCTION = "reduction"
_TF_VALUES = ((_REDUCTION, ("none", "sum", "sum_over_batch_size")),)
_USER = "reduced with tf.reduce_sum / tf.reduce_mean, as users write it"


def option_entries() -> dict[str, tuple[Implementation, Function]]:
    """api -> (Implementation, function of (logits, labels, **options)); the tf.nn and Keras
    functional entries replace the plain adapter's ones of the same name."""
    entries = [*_nn_entries(), *_keras_entries()]
    return {impl.api: (impl, function) for impl, function in entries}


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


def _keras_entries() -> list[tuple[Implementation, Function]]:
    """The Keras loss functions and loss classes with options."""
    return [
        (
            _implementation(
                "keras.losses.categorical_crossentropy(from_logits=True)",
                SOFT_CE,
                ("label_smoothing", *_AXIS),
            ),
            _keras_cce,
        ),
        (
            _implementation(
                "keras.losses.sparse_categorical_crossentropy(from_logits=True)",
                SPARSE_CE,
                ("ignore_index", *_AXIS),
            ),
            _keras_scce,
        ),
        (
            _implementation(
                "keras.losses.CategoricalCrossentropy(from_logits=True)",
                SOFT_CE,
                (_REDUCTION, "label_smoothing", "sample_weight", *_AXIS),
                ((_REDUCTION, ("none", "sum", "mean", "sum_over_batch_size")),),
            ),
            _keras_class(keras.losses.CategoricalCrossentropy),
        ),
        (
            _implementation(
                "keras.losses.SparseCategoricalCrossentropy(from_logits=True)",
                SPARSE_CE,
                (_REDUCTION, "ignore_index", "sample_weight", *_AXIS),
                ((_REDUCTION, ("none", "sum", "mean", "mean_over_valid")),),
                "reduction mean_over_valid is Keras's sum_over_batch_size (equal when nothing is "
                "ignored; with ignore_class Keras divides by the kept rows)",
            ),
            _keras_class(keras.losses.SparseCategoricalCrossentropy),
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
