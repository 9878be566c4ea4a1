"""TensorFlow and Keras 3 adapter: the ``tf.nn`` ops and the Keras losses, eager and XLA.

Compiled mode is ``tf.function(jit_compile=True)``; every op and dtype was checked to run in
both modes on the CPU (TF 2.21, Keras 3.15). Keras losses are the per-sample functional forms
(``keras.losses.categorical_crossentropy`` and friends), with ``from_logits=True`` on the
logits and with ``from_logits=False`` on ``tf.nn.softmax(logits)`` / ``tf.math.sigmoid``.

Framework behaviour worth knowing when reading results (not changed here):

- ``tf.nn.softmax_cross_entropy_with_logits`` computes float16 and bfloat16 in float32 and
  rounds the loss back; the sparse op does that for float16 only (bfloat16 runs natively).
- Keras ``from_logits=False`` inside a ``tf.function`` recognises a ``Softmax``/``Sigmoid``
  op feeding the loss and uses its input as logits (the fused, stable op); eagerly it clips
  the probabilities to ``[epsilon, 1 - epsilon]`` and takes their log. The two modes of the
  same call can therefore give different answers for extreme logits.
- ``tf.nn.sparse_softmax_cross_entropy_with_logits`` takes int64 labels as they are. Eagerly
  on the CPU it raises on labels outside ``[0, C)``; under XLA it returns NaN for that row
  (and TF documents NaN on the GPU).
- Eager ``tf.nn.softmax_cross_entropy_with_logits`` returns NaN for a ``-inf`` logit with a
  zero label; its XLA lowering returns the finite limit. Again the modes differ.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # drop C++ INFO/WARNING lines, keep errors
os.environ["KERAS_BACKEND"] = "tensorflow"  # Keras reads it once, on its first import

import functools
import logging
from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf

from xentbench.adapters import keras_losses, tensorflow_head, tensorflow_options
from xentbench.adapters._table import SIGMOID_CE, SOFT_CE, SPARSE_CE, TableAdapter
from xentbench.adapters.base import DTYPES, LINEAR_OP, Call, Implementation, PreparedCall
from xentbench.reference.options import ARRAY_OPTIONS, canonical

OpFunction = Callable[[tf.Tensor, tf.Tensor | None], tf.Tensor]

_TF_DEVICE_NAMES = {"cpu": "/CPU:0", "cuda": "/GPU:0"}
_SOFTMAX_FIRST = "tf.nn.softmax applied to the logits first, as users do (timed and differentiated)"
_SIGMOID_FIRST = (
    "tf.math.sigmoid applied to the logits first, as users do (timed and differentiated)"
)


def _implementation(name: str, op: str, gradient: bool, adaptation: str = "") -> Implementation:
    return tensorflow_options.tf_implementation(
        name,
        op,
        gradient=gradient,
        adaptation=adaptation,
    )


def _tf_entries() -> list[tuple[Implementation, OpFunction]]:
    """The ``tf.nn`` and ``tf.math`` implementations, each with the function that calls it."""
    return [
        (_implementation("tf.nn.softmax", "softmax", False), lambda x, y: tf.nn.softmax(x)),
        (
            _implementation("tf.nn.log_softmax", "log_softmax", False),
            lambda x, y: tf.nn.log_softmax(x),
        ),
        (
            _implementation("tf.math.reduce_logsumexp", "logsumexp", True),
            lambda x, y: tf.math.reduce_logsumexp(x, axis=-1),
        ),
        (
            _implementation("tf.nn.softmax_cross_entropy_with_logits", SOFT_CE, True),
            lambda x, y: tf.nn.softmax_cross_entropy_with_logits(labels=y, logits=x),
        ),
        (
            _implementation("tf.nn.sparse_softmax_cross_entropy_with_logits", SPARSE_CE, True),
            lambda x, y: tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=x),
        ),
        (
            _implementation("tf.nn.sigmoid_cross_entropy_with_logits", SIGMOID_CE, True),
            lambda x, y: tf.nn.sigmoid_cross_entropy_with_logits(labels=y, logits=x),
        ),
    ]


def _with_quantity(function: OpFunction, quantity: str) -> OpFunction:
    """The op itself, or the gradient of the sum of its outputs via ``tf.GradientTape``."""
    if quantity == "value":
        return function

    def gradient(logits: tf.Tensor, labels: tf.Tensor | None) -> tf.Tensor:
        with tf.GradientTape() as tape:
            tape.watch(logits)
            total = tf.reduce_sum(function(logits, labels))
        return tape.gradient(total, logits)

    return gradient


def _xla(function: OpFunction) -> OpFunction:
    return tf.function(function, jit_compile=True)


class _DropRetracingWarning(logging.Filter):
    """Drops TF's "triggered tf.function retracing" warning and nothing else.

    Each new shape or dtype is meant to get its own XLA program here, and TF counts traces by
    the Python function's code object, so every implementation would trip the warning.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return "triggered tf.function retracing" not in record.getMessage()


class TensorflowAdapter(TableAdapter):
    """TensorFlow ``tf.nn``/``tf.math`` ops and Keras 3 losses on the TensorFlow backend."""

    name = "tensorflow"

    def __init__(self) -> None:
        keras_losses.require_backend("tensorflow")
        super().__init__()
        self._devices = ("cpu", "cuda") if tf.config.list_physical_devices("GPU") else ("cpu",)
        logger = tf.get_logger()
        if not any(isinstance(f, _DropRetracingWarning) for f in logger.filters):
            logger.addFilter(_DropRetracingWarning())

    def version(self) -> str:
        return f"tensorflow {tf.__version__}, keras {keras.__version__}"

    def devices(self) -> tuple[str, ...]:
        return self._devices

    def entries(self) -> list[tuple[Implementation, OpFunction]]:
        """The plain entries, those that take options replaced by their option-taking form
        (``adapters.tensorflow_options``), then the Keras loss classes, the linear op and the
        LLM head (``adapters.tensorflow_head``)."""
        with_options = tensorflow_options.option_entries()
        plain = [with_options.pop(impl.api, (impl, function)) for impl, function in _tf_entries()]
        keras_entries = keras_losses.keras_entries(
            tensorflow_options.tf_implementation,
            softmax=(tf.nn.softmax, _SOFTMAX_FIRST),
            sigmoid=(tf.math.sigmoid, _SIGMOID_FIRST),
        )
        head = tensorflow_head.head_entries()  # the LLM head's compositions
        return plain + keras_entries + list(with_options.values()) + _linear_entries() + head

    def _function(self, call: Call, options: dict, directed: bool) -> OpFunction:
        """The eager function (options bound), or its cached XLA tf.function (which traces once
        per input shape)."""
        function = self.function(call)
        if options:
            function = functools.partial(function, **options)
        if directed:
            function = tensorflow_options.with_direction(function, call.quantity)
        else:
            function = _with_quantity(function, call.quantity)
        if call.mode == "eager":
            return function
        key = (call.implementation.name, call.quantity, call.dtype, call.device)
        key += (canonical(call.options),) if call.options else ()
        return self.compiled(key, function, _xla)

    def prepare(self, call: Call, logits: np.ndarray, labels: np.ndarray | None) -> PreparedCall:
        if call.implementation.op == LINEAR_OP:
            return _prepare_linear(call, logits, labels)
        device = _TF_DEVICE_NAMES[call.device]
        with tf.device(device):  # identity runs on the device, so the inputs live there
            logits_tensor = tf.identity(tf.constant(logits))
            labels_tensor = None if labels is None else tf.identity(tf.constant(labels))
            options = {
                name: tf.identity(tf.constant(np.asarray(value)))
                if name in ARRAY_OPTIONS
                else value
                for name, value in call.options.items()
            }
        direction = options.pop("cotangent", None)
        direction = options.pop("tangent", direction)
        if call.quantity == "jvp" and direction is None:  # no tangent given: along ones
            direction = tf.ones_like(logits_tensor)
        function = self._function(call, options, direction is not None)
        extra = () if direction is None else (direction,)
        synchronise = call.device == "cuda"  # CPU ops return finished tensors

        def run() -> tf.Tensor:
            with tf.device(device):
                output = function(logits_tensor, labels_tensor, *extra)
            if synchronise:
                tf.test.experimental.sync_devices()
            return output

        return PreparedCall(run=run, to_numpy=lambda output: output.numpy())


# --------------------------------------------------------------- linear_cross_entropy


def _keras_linear_loss(x, w, b, y, ignore_index):
    """Keras's sparse categorical cross-entropy of tf.matmul(x, w^T) (+ b), from logits."""
    logits = tf.matmul(x, w, transpose_b=True)
    if b is not None:
        logits = logits + b
    return keras.losses.sparse_categorical_crossentropy(
        y, logits, from_logits=True, ignore_class=ignore_index
    )


def _linear_entries() -> list[tuple[Implementation, OpFunction]]:
    impl = Implementation(
        name="tensorflow:tf.matmul+keras.losses.sparse_categorical_crossentropy",
        op=LINEAR_OP,
        dtypes=DTYPES,
        devices=("cpu", "cuda"),
        gradient=True,
        options=("weight", "bias", "ignore_index"),
        adaptation="from_logits=True, ignore_class=ignore_index; gradients by tf.GradientTape",
    )
    return [(impl, _keras_linear_loss)]


def _prepare_linear(call: Call, hidden: np.ndarray, labels: np.ndarray) -> PreparedCall:
    """The loss, or the tape gradient of its sum w.r.t. the hidden, the weight or the bias."""
    device = _TF_DEVICE_NAMES[call.device]
    with tf.device(device):
        tensors = [
            None if a is None else tf.identity(tf.constant(np.asarray(a)))
            for a in (hidden, call.options["weight"], call.options.get("bias"))
        ]
        y = tf.identity(tf.constant(np.asarray(labels)))
    ignore = call.options.get("ignore_index")
    wanted = {"grad_hidden": 0, "grad_weight": 1, "grad_bias": 2}.get(call.quantity)

    def run() -> tf.Tensor:
        with tf.device(device):
            if wanted is None:
                output = _keras_linear_loss(*tensors, y, ignore)
            else:
                with tf.GradientTape() as tape:
                    tape.watch(tensors[wanted])
                    total = tf.reduce_sum(_keras_linear_loss(*tensors, y, ignore))
                output = tape.gradient(total, tensors[wanted])
        if call.device == "cuda":
            tf.test.experimental.sync_devices()
        return output

    return PreparedCall(run=run, to_numpy=lambda output: output.numpy())
