"""The Keras 3 losses and ops, declared once for every Keras backend (TensorFlow, JAX, torch).

Keras reads ``KERAS_BACKEND`` once, when it is first imported, so one process holds one Keras
backend: each adapter that declares these sets the variable before importing Keras and checks
with ``require_backend`` that the Keras it got runs on its backend (a process that imported
Keras for another backend first cannot serve it; ``xentbench run`` gives every backend a worker
process of its own). This module imports Keras, so it is imported after that choice.

The functions take the backend's own tensors: the per-sample functional losses with
``from_logits=True`` on the logits and with ``from_logits=False`` on probabilities made as users
make them (``softmax`` and ``sigmoid`` given by the adapter); the functional losses with options
(``label_smoothing``, ``ignore_class``, ``axis``); the loss classes with ``sample_weight`` and
their reductions: ``None``, ``"sum"``, ``"mean_with_sample_weight"`` (the reference's ``mean``),
``"sum_over_batch_size"`` (its ``sum_over_batch_size``, or with ``ignore_class`` its
``mean_over_valid``: Keras divides by the number of kept rows then).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras

from xentbench.adapters._table import SIGMOID_CE, SOFT_CE, SPARSE_CE
from xentbench.adapters.base import Implementation

Function = Callable[..., Any]
# declare(name, op, **fields) -> the backend's Implementation "<backend>:<name>"
Declare = Callable[..., Implementation]

_DIRECTIONS = ("cotangent", "tangent")
_AXIS = ("class_axis", *_DIRECTIONS)
_REDUCTION = "reduction"
_KERAS_REDUCTION = {
    "none": None,
    "sum": "sum",
    "mean": "mean_with_sample_weight",
    "sum_over_batch_size": "sum_over_batch_size",
    "mean_over_valid": "sum_over_batch_size",
}
_TRAILING_AXIS = (
    "logits and labels given a trailing axis of size 1, so Keras's mean over the last axis "
    "leaves the elementwise loss"
)


def require_backend(backend: str) -> None:
    """Raise when the Keras of this process runs on another backend than ``backend``."""
    loaded = keras.backend.backend()
    if loaded != backend:
        raise RuntimeError(
            f"Keras runs on its {loaded} backend in this process (KERAS_BACKEND is read once, "
            f"when Keras is first imported), not on {backend}; xentbench run gives each "
            "backend a worker process of its own"
        )


def _softmax_loss(loss: Function, from_logits: bool, softmax: Function) -> Function:
    """A Keras categorical loss on the logits, or on their softmax as users write it."""
    if from_logits:
        return lambda logits, labels: loss(labels, logits, from_logits=True)
    return lambda logits, labels: loss(labels, softmax(logits), from_logits=False)


def _binary_loss(from_logits: bool, sigmoid: Function) -> Function:
    """Keras binary cross-entropy per element (see ``_TRAILING_AXIS``)."""

    def binary(logits, labels):
        logits, labels = logits[..., None], labels[..., None]
        predictions = logits if from_logits else sigmoid(logits)
        return keras.losses.binary_crossentropy(labels, predictions, from_logits=from_logits)

    return binary


def loss_entries(
    declare: Declare, softmax: tuple[Function, str], sigmoid: tuple[Function, str]
) -> list[tuple[Implementation, Function]]:
    """The functional Keras losses with and without ``from_logits``, each with the function of
    (logits, labels) that calls it; ``softmax`` and ``sigmoid`` are (function, the adaptation
    note naming it) for the probabilities ``from_logits=False`` takes."""
    cce, scce = keras.losses.categorical_crossentropy, keras.losses.sparse_categorical_crossentropy
    entries: list[tuple[Implementation, Function]] = []
    for from_logits in (True, False):
        call = f"(from_logits={from_logits})"
        softmax_note = "" if from_logits else softmax[1]
        binary_note = _TRAILING_AXIS if from_logits else f"{_TRAILING_AXIS}; {sigmoid[1]}"
        # probabilities where logits belong: a lesson
        fields = {"gradient": True, "baseline": not from_logits}
        entries += [
            (
                declare(
                    f"keras.losses.categorical_crossentropy{call}",
                    SOFT_CE,
                    adaptation=softmax_note,
                    **fields,
                ),
                _softmax_loss(cce, from_logits, softmax[0]),
            ),
            (
                declare(
                    f"keras.losses.sparse_categorical_crossentropy{call}",
                    SPARSE_CE,
                    adaptation=softmax_note,
                    **fields,
                ),
                _softmax_loss(scce, from_logits, softmax[0]),
            ),
            (
                declare(
                    f"keras.losses.binary_crossentropy{call}",
                    SIGMOID_CE,
                    adaptation=binary_note,
                    **fields,
                ),
                _binary_loss(from_logits, sigmoid[0]),
            ),
        ]
    return entries


def _cce(x, y, label_smoothing=0.0, class_axis=-1):
    return keras.losses.categorical_crossentropy(
        y, x, from_logits=True, label_smoothing=float(label_smoothing), axis=int(class_axis)
    )


def _scce(x, y, ignore_index=None, class_axis=-1):
    ignore = None if ignore_index is None else int(ignore_index)
    return keras.losses.sparse_categorical_crossentropy(
        y, x, from_logits=True, ignore_class=ignore, axis=int(class_axis)
    )


def _loss_class(cls) -> Function:
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
            # the loss object's default float32 would cast the inputs
            dtype=keras.backend.standardize_dtype(x.dtype),
            **options,
        )
        return loss(y, x, sample_weight=sample_weight)

    return call


def option_entries(declare: Declare) -> dict[str, tuple[Implementation, Function]]:
    """api -> (Implementation, function of (logits, labels, **options)): the functional losses
    with their options and the loss classes; the functional ones replace the plain
    ``loss_entries`` of the same name."""

    def declared(name: str, op: str, options: tuple[str, ...], values=(), adaptation=""):
        return declare(
            name,
            op,
            gradient=True,
            adaptation=adaptation,
            options=options,
            forward=True,
            option_values=values,
        )

    entries = [
        (
            declared(
                "keras.losses.categorical_crossentropy(from_logits=True)",
                SOFT_CE,
                ("label_smoothing", *_AXIS),
            ),
            _cce,
        ),
        (
            declared(
                "keras.losses.sparse_categorical_crossentropy(from_logits=True)",
                SPARSE_CE,
                ("ignore_index", *_AXIS),
            ),
            _scce,
        ),
        (
            declared(
                "keras.losses.CategoricalCrossentropy(from_logits=True)",
                SOFT_CE,
                (_REDUCTION, "label_smoothing", "sample_weight", *_AXIS),
                ((_REDUCTION, ("none", "sum", "mean", "sum_over_batch_size")),),
            ),
            _loss_class(keras.losses.CategoricalCrossentropy),
        ),
        (
            declared(
                "keras.losses.SparseCategoricalCrossentropy(from_logits=True)",
                SPARSE_CE,
                (_REDUCTION, "ignore_index", "sample_weight", *_AXIS),
                ((_REDUCTION, ("none", "sum", "mean", "mean_over_valid")),),
                "reduction mean_over_valid is Keras's sum_over_batch_size (equal when nothing is "
                "ignored; with ignore_class Keras divides by the kept rows)",
            ),
            _loss_class(keras.losses.SparseCategoricalCrossentropy),
        ),
    ]
    return {impl.api: (impl, function) for impl, function in entries}


def keras_entries(
    declare: Declare, softmax: tuple[Function, str], sigmoid: tuple[Function, str]
) -> list[tuple[Implementation, Function]]:
    """Every Keras loss implementation: the plain ``loss_entries``, those that take options
    replaced by their option-taking form, then the loss classes."""
    with_options = option_entries(declare)
    plain = [
        with_options.pop(impl.api, (impl, function))
        for impl, function in loss_entries(declare, softmax, sigmoid)
    ]
    return plain + list(with_options.values())


def ops_entries(declare: Declare) -> list[tuple[Implementation, Function]]:
    """``keras.ops.softmax``, ``log_softmax`` and ``logsumexp`` with the class axis passed
    (``keras.ops.logsumexp`` reduces every axis by default)."""
    ops = keras.ops
    return [
        (
            declare(f"keras.ops.{op}", op, gradient=True, options=_AXIS, forward=True),
            lambda x, y, class_axis=-1, function=function: function(x, axis=int(class_axis)),
        )
        for op, function in (
            ("softmax", ops.softmax),
            ("log_softmax", ops.log_softmax),
            ("logsumexp", ops.logsumexp),
        )
    ]


def keras_backend_entries(declare: Declare) -> list[tuple[Implementation, Function]]:
    """A Keras backend's whole table (JAX, torch): ``keras.ops`` and every loss, with the
    probability-taking losses fed ``keras.ops.softmax`` / ``sigmoid`` as users do."""
    first = "applied to the logits first, as users do (timed and differentiated)"
    softmax = (keras.ops.softmax, f"keras.ops.softmax {first}")
    sigmoid = (keras.ops.sigmoid, f"keras.ops.sigmoid {first}")
    return ops_entries(declare) + keras_entries(declare, softmax, sigmoid)
