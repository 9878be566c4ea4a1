"""Sparse cross-entropy with options, careful and deliberately wrong, as third-party plugins.

``options_careful`` computes in extended precision (NumPy ``longdouble``, the shifted
algorithm) and rounds once to the call's dtype, following the reference's definitions and
conventions (docs/options.md); it must pass everything. ``options_flawed`` makes one classic
mistake per implementation: a mean over all rows instead of the kept ones, label smoothing
spread over C - 1 classes instead of C, a class-weighted mean divided by N instead of by the
sum of the weights. Each must be flagged.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from xentbench.adapters.base import Adapter, Implementation, PreparedCall
from xentbench.reference.dtypes import numpy_dtype
from xentbench.reference.head import HEAD_OPTIONS
from xentbench.reference.options import OPTION_NAMES

ENTRY_POINTS = {
    "options_careful": "flawed.options:CarefulOptions",
    "options_flawed": "flawed.options:FlawedOptions",
}

SPARSE = "sparse_softmax_cross_entropy"
# The careful plugin takes every option the reference defines but the LLM head's (flawed.head)
# and the shards (flawed.sharded): it computes neither.
ALL_OPTIONS = tuple(name for name in OPTION_NAMES if name not in (*HEAD_OPTIONS, "shards"))
WIDE = np.longdouble


def _rows(logits, labels, options):
    axis = int(options.get("class_axis", -1))
    x = np.moveaxis(np.asarray(logits).astype(np.float64).astype(WIDE), axis, -1)
    lead = x.shape[:-1]
    return x.reshape(-1, x.shape[-1]), np.asarray(labels).ravel(), axis, lead


def _terms(x, k, options, smoothing_classes):
    """(p, -log p, coefficients c, kept rows) in extended precision."""
    classes = x.shape[1]
    with np.errstate(all="ignore"):
        d = x - x.max(axis=1, keepdims=True)
        s = np.exp(d).sum(axis=1, keepdims=True)
        p, nl = np.exp(d) / s, np.log(s) - d
    ignore = options.get("ignore_index")
    kept = np.ones(len(k), bool) if ignore is None else k != int(ignore)
    onehot = np.zeros(x.shape, WIDE)
    onehot[np.flatnonzero(kept), k[kept]] = 1
    eps = WIDE(float(options.get("label_smoothing", 0.0)))
    weights = np.asarray(options.get("class_weight", np.ones(classes))).astype(WIDE)
    smoothed = (1 - eps) * onehot + eps / smoothing_classes
    c = np.where(kept[:, None], weights * smoothed, 0)
    return p, nl, c, kept, weights


class _Sparse:
    """The arithmetic, with hooks the flawed subclass overrides."""

    def smoothing_classes(self, classes: int) -> int:
        return classes

    def divisor(self, reduction, kept, sample, class_weight_at_label) -> WIDE:
        if reduction == "sum_over_batch_size":
            return WIDE(len(kept))
        if reduction == "mean_over_valid":
            return WIDE(kept.sum())
        return (sample * class_weight_at_label)[kept].sum()  # mean

    def compute(self, quantity, logits, labels, options):
        x, k, axis, lead = _rows(logits, labels, options)
        p, nl, c, kept, weights = _terms(x, k, options, self.smoothing_classes(x.shape[1]))
        reduction = options.get("reduction", "none")
        sample = np.asarray(options.get("sample_weight", np.ones(len(k)))).astype(WIDE).ravel()
        sample = np.where(kept, sample, 0)
        safe_k = np.where(kept, k, 0)
        divisor = WIDE(1)
        if reduction not in ("none", "sum"):
            divisor = self.divisor(reduction, kept, sample, np.where(kept, weights[safe_k], 0))
        with np.errstate(all="ignore"):
            grad = p * c.sum(axis=1, keepdims=True) - c  # d l_r / d x, per row
            if quantity == "value":
                per_row = np.where(c == 0, 0, c * nl).sum(axis=1)
            elif quantity == "jvp":
                tangent = np.moveaxis(np.asarray(options["tangent"]).astype(WIDE), axis, -1)
                per_row = (grad * tangent.reshape(grad.shape)).sum(axis=1)
            else:
                return self._grad(grad, sample, divisor, options, reduction, axis, lead)
            per_row = np.where(sample == 0, 0, sample * per_row)
            if reduction == "none":
                return per_row.reshape(lead)
            return np.asarray(per_row.sum() / divisor)

    def _grad(self, grad, sample, divisor, options, reduction, axis, lead):
        cotangent = np.asarray(options.get("cotangent", 1.0)).astype(WIDE).ravel()
        with np.errstate(all="ignore"):  # zero weights contribute 0 even over a zero divisor
            seed = np.where(sample * cotangent == 0, 0, sample * cotangent / divisor)
        out = np.where((seed == 0)[:, None], 0, seed[:, None] * grad)
        return np.moveaxis(out.reshape(*lead, -1), -1, axis)


class _Flawed(_Sparse):
    def __init__(self, mistake: str) -> None:
        self.mistake = mistake

    def smoothing_classes(self, classes: int) -> int:
        return classes - 1 if self.mistake == "smoothing-over-c-minus-1" else classes

    def divisor(self, reduction, kept, sample, class_weight_at_label) -> WIDE:
        if reduction == "mean" and self.mistake == "mean-over-all-rows":
            return WIDE(len(kept))
        if reduction == "mean" and self.mistake == "weighted-mean-over-n":
            return sample[kept].sum()
        return super().divisor(reduction, kept, sample, class_weight_at_label)


def _implementation(name: str) -> Implementation:
    return Implementation(
        name=name,
        op=SPARSE,
        dtypes=("float16", "bfloat16", "float32", "float64"),
        gradient=True,
        forward=True,
        options=ALL_OPTIONS,
    )


class WideArithmeticAdapter(Adapter):
    """A backend whose implementations compute in wide arithmetic (``kinds``: name ->
    an object with ``compute(quantity, logits, labels, options)``) and round once."""

    kinds: ClassVar[dict]

    def version(self) -> str:
        return "1.0"

    def implementation(self, name: str) -> Implementation:
        """What the implementation ``name`` declares."""
        return _implementation(name)

    def implementations(self) -> tuple[Implementation, ...]:
        return tuple(self.implementation(name) for name in self.kinds)

    def prepare(self, call, logits, labels) -> PreparedCall:
        arithmetic = self.kinds[call.implementation.name]
        target = numpy_dtype(call.dtype)

        def run():
            wide = arithmetic.compute(call.quantity, logits, labels, call.options)
            return np.asarray(wide).astype(np.float64).astype(target)  # rounded once (twice
            # from longdouble through float64 for 16-bit outputs, inside the final rounding)

        return PreparedCall(run=run, to_numpy=np.asarray)


class CarefulOptions(WideArithmeticAdapter):
    name = "options_careful"
    kinds: ClassVar[dict[str, _Sparse]] = {"options_careful:longdouble": _Sparse()}


class FlawedOptions(WideArithmeticAdapter):
    name = "options_flawed"
    kinds: ClassVar[dict[str, _Sparse]] = {
        f"options_flawed:{mistake}": _Flawed(mistake)
        for mistake in ("mean-over-all-rows", "smoothing-over-c-minus-1", "weighted-mean-over-n")
    }
