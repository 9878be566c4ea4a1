"""Flawed implementations the hunt must find with no catalog to help, and a careful one it
must not flag. Each flaw is a bug class seen in real kernels:

- ``float32-exp-softmax``: softmax as exp(x) / sum(exp(x)) evaluated in float32 whatever the
  dtype, with no max shift: overflows past x = 88.7 (inf / inf = NaN), even for float64 input;
- ``rounded-lse-log_softmax``: log_softmax as x - logsumexp(x), the logsumexp (max-shifted,
  itself accurate) rounded to the dtype first: it loses every bit below the ulp of
  logsumexp, so exactly shifted large logits give large errors (optax and torch's backward
  have this shape);
- ``wrapping-sparse``: sparse cross-entropy picking -log_softmax(x)[k] by NumPy indexing, so a
  label -1 silently reads the last class (a number for invalid input).

``careful`` computes every op in float64 with the max shift and log1p, rounds once to
float32, and raises on a label outside [0, C).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from xentbench.adapters.base import Adapter, Implementation, PreparedCall

FLOATS = ("float32", "float64")


def _float32_exp_softmax(x, labels):
    with np.errstate(all="ignore"):
        e = np.exp(x.astype(np.float32))
        return (e / e.sum(axis=-1, keepdims=True)).astype(x.dtype)


def _rounded_lse_log_softmax(x, labels):
    m = x.max(axis=-1, keepdims=True)
    with np.errstate(all="ignore"):
        lse = (m + np.log(np.exp(x - m).sum(axis=-1, keepdims=True))).astype(x.dtype)
        return x - lse


def _wrapping_sparse(x, labels):
    m = x.max(axis=-1, keepdims=True)
    with np.errstate(all="ignore"):
        log_softmax = (x - m) - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))
    return -log_softmax[np.arange(len(x)), labels]


class FlawedHuntAdapter(Adapter):
    """Three flawed NumPy implementations, value only, float32 and float64."""

    name = "flawed-hunt"
    functions: ClassVar[dict] = {
        "float32-exp-softmax": ("softmax", _float32_exp_softmax),
        "rounded-lse-log_softmax": ("log_softmax", _rounded_lse_log_softmax),
        "wrapping-sparse": ("sparse_softmax_cross_entropy", _wrapping_sparse),
    }

    def version(self) -> str:
        return "flawed-hunt 1.0"

    def implementations(self):
        return tuple(
            Implementation(f"{self.name}:{api}", op, FLOATS)
            for api, (op, _) in self.functions.items()
        )

    def prepare(self, call, logits, labels):
        function = self.functions[call.implementation.api][1]
        return PreparedCall(run=lambda: function(logits, labels), to_numpy=np.asarray)


def _careful_terms(x):
    """float64 shifted logits d = x - m and log S = log1p(sum of the other exp(d))."""
    x = x.astype(np.float64)
    m = x.max(axis=-1, keepdims=True)
    d = x - m
    e = np.exp(d)
    others = e.sum(axis=-1, keepdims=True) - 1.0  # the max's own term is exactly 1
    return d, e, np.log1p(others)


def _careful_softmax(x, labels):
    _, e, log_total = _careful_terms(x)
    return (e / np.exp(log_total)).astype(x.dtype)


def _careful_log_softmax(x, labels):
    d, _, log_total = _careful_terms(x)
    return (d - log_total).astype(x.dtype)


def _careful_sparse(x, labels):
    if ((labels < 0) | (labels >= x.shape[-1])).any():
        raise ValueError(f"labels must be in [0, {x.shape[-1]})")
    d, _, log_total = _careful_terms(x)
    return (log_total[:, 0] - d[np.arange(len(x)), labels]).astype(x.dtype)


class CarefulHuntAdapter(FlawedHuntAdapter):
    """The same ops done carefully (float64 inside, log1p, one rounding, labels checked)."""

    name = "careful-hunt"
    functions: ClassVar[dict] = {
        "softmax": ("softmax", _careful_softmax),
        "log_softmax": ("log_softmax", _careful_log_softmax),
        "sparse": ("sparse_softmax_cross_entropy", _careful_sparse),
    }

    def implementations(self):
        return tuple(
            Implementation(f"{self.name}:{api}", op, ("float32",))
            for api, (op, _) in self.functions.items()
        )


ENTRY_POINTS = {
    "flawed-hunt": "flawed.hunt:FlawedHuntAdapter",
    "careful-hunt": "flawed.hunt:CarefulHuntAdapter",
}
