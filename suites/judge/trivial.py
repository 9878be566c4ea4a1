"""The trivial-output guard: what outputs that compute nothing would score on a case.

A checker is only as strong as the cases that fail a function returning zeros. For each case,
dtype and quantity, ``trivial_passes`` names the trivial outputs that the same judge
(``suites.judge.measure.evaluate``, the same allowance) would pass there:

- ``zeros``: an output of zeros;
- ``constant``: the mean of the exact output's finite elements everywhere (outputs of two or
  more elements; one element's mean is the answer itself);
- ``uniform``: the op as if the softmax were the uniform distribution (all logits equal):
  1/C for softmax, -log C for log_softmax, log C for logsumexp and the sparse loss,
  log C · sum(y) for soft labels, log 2 for the sigmoid loss, and their gradients;
- ``subsample``: the op computed on every other class with the normaliser rescaled,
  logsumexp(x[::2]) + log 2 (for the elementwise sigmoid loss: every other element, repeated).

``uniform`` and ``subsample`` are defined for plain calls (no options); all are computed in
float64 and rounded to the dtype once.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from xentbench.reference import Exact
from xentbench.reference.dtypes import numpy_dtype
from xentbench.suites.judge import measure

TRIVIAL_OUTPUTS: tuple[str, ...] = ("zeros", "constant", "uniform", "subsample")


def _lse(x: np.ndarray) -> np.ndarray:
    """logsumexp over the last axis in float64, max-shifted (-inf for an all -inf row)."""
    top = np.max(x, axis=-1, keepdims=True)
    shift = np.where(np.isfinite(top), top, 0.0)
    return (shift + np.log(np.sum(np.exp(x - shift), axis=-1, keepdims=True)))[..., 0]


def _one_hot(labels: np.ndarray, classes: int) -> np.ndarray:
    k = np.asarray(labels, dtype=np.int64)[..., None]
    return (np.arange(classes) == k).astype(np.float64)


def _from_normaliser(op: str, quantity: str, x, y, normaliser: np.ndarray) -> np.ndarray | None:
    """The op (or its gradient, cotangent ones) with logsumexp replaced by ``normaliser``."""
    n = normaliser[..., None]
    p = np.exp(x - n)
    if op == "softmax" and quantity == "value":
        return p
    if op == "log_softmax" and quantity == "value":
        return x - n
    if op == "logsumexp":
        return normaliser if quantity == "value" else p
    if op == "softmax_cross_entropy":
        mass = np.sum(y, axis=-1)
        if quantity == "value":
            return mass * normaliser - np.sum(np.where(y == 0, 0.0, y * x), axis=-1)
        return p * mass[..., None] - y
    if op == "sparse_softmax_cross_entropy":
        k = np.asarray(y, dtype=np.int64)[..., None]
        if quantity == "value":
            return normaliser - np.take_along_axis(x, k, axis=-1)[..., 0]
        return p - _one_hot(y, x.shape[-1])
    return None


def _sigmoid(quantity: str, x, z) -> np.ndarray:
    if quantity == "value":
        return np.maximum(x, 0) - x * z + np.log1p(np.exp(-np.abs(x)))
    return 1 / (1 + np.exp(-x)) - z


def _uniform(op: str, quantity: str, x, y) -> np.ndarray | None:
    if op == "sigmoid_cross_entropy":
        return _sigmoid(quantity, np.zeros_like(x), y)
    flat = np.zeros_like(x)  # equal logits: the softmax is uniform, logsumexp log C
    normaliser = np.full(x.shape[:-1], np.log(x.shape[-1]))
    if op == "softmax_cross_entropy" and quantity == "value":
        return np.sum(y, axis=-1) * normaliser
    if op == "sparse_softmax_cross_entropy" and quantity == "value":
        return normaliser
    return _from_normaliser(op, quantity, flat, y, normaliser)


def _subsample(op: str, quantity: str, x, y) -> np.ndarray | None:
    if op == "sigmoid_cross_entropy":
        every_other = _sigmoid(quantity, x, y)[..., ::2]
        return np.repeat(every_other, 2, axis=-1)[..., : x.shape[-1]]
    return _from_normaliser(op, quantity, x, y, _lse(x[..., ::2]) + np.log(2.0))


def trivial_outputs(
    op: str, quantity: str, dtype: str, logits, labels, exact: Exact, plain: bool
) -> dict[str, np.ndarray]:
    """Each trivial output defined for this call, rounded to ``dtype`` (``plain``: a call
    without options, where ``uniform`` and ``subsample`` are defined)."""
    target, shape = numpy_dtype(dtype), exact.hi.shape
    outputs: dict[str, Any] = {"zeros": np.zeros(shape)}
    finite = exact.hi[np.isfinite(exact.hi)]
    with np.errstate(all="ignore"):
        if exact.hi.size > 1:
            outputs["constant"] = np.full(shape, finite.mean() if finite.size else 0.0)
        if plain:
            x = np.asarray(logits).astype(np.float64)
            y = None if labels is None else np.asarray(labels)
            y = y.astype(np.float64) if y is not None and y.dtype.kind == "f" else y
            outputs["uniform"] = _uniform(op, quantity, x, y)
            outputs["subsample"] = _subsample(op, quantity, x, y)
        return {
            name: np.asarray(value, dtype=np.float64).astype(target)
            for name, value in outputs.items()
            if value is not None and np.shape(value) == shape
        }


def trivial_margins(
    op: str,
    quantity: str,
    dtype: str,
    logits,
    labels,
    exact: Exact,
    options: dict[str, Any] | None = None,
) -> dict[str, float]:
    """Each defined trivial output's ``worst_ratio`` on this call (error / allowance, inf for
    a wrong kind): the margin by which it fails, a pass at 1 or below."""
    outputs = trivial_outputs(op, quantity, dtype, logits, labels, exact, not options)
    margins = {}
    for name, got in outputs.items():
        judged = measure.evaluate(op, quantity, dtype, logits, labels, got, exact, options)
        ratio = judged.worst_ratio
        if judged.verdict == "pass":  # NaN: every element a matched non-finite, i.e. exact
            margins[name] = 0.0 if math.isnan(ratio) else ratio
        else:  # a failure by kind (a number where the truth is NaN) has no finite ratio
            margins[name] = ratio if ratio > 1 else math.inf
    return margins


def trivial_passes(
    op: str,
    quantity: str,
    dtype: str,
    logits,
    labels,
    exact: Exact,
    options: dict[str, Any] | None = None,
) -> tuple[str, ...]:
    """The trivial outputs the judge would pass on this call (in ``TRIVIAL_OUTPUTS`` order)."""
    margins = trivial_margins(op, quantity, dtype, logits, labels, exact, options)
    return tuple(name for name, margin in margins.items() if margin <= 1)
