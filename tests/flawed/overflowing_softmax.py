"""A softmax without the max shift: exp(x) / sum(exp(x)) overflows to inf / inf = NaN on large
logits (the classic bug). ``XENTBENCH_FLAW_FIXED=1`` in the environment switches it to the
max-shifted form, so a reproducer can be seen to pass once the flaw is fixed."""

from __future__ import annotations

import os

import numpy as np

from xentbench.adapters.base import Adapter, Call, Implementation, PreparedCall

ENTRY_POINTS = {"overflowing": "flawed.overflowing_softmax:OverflowingSoftmax"}


def _softmax(x: np.ndarray) -> np.ndarray:
    if os.environ.get("XENTBENCH_FLAW_FIXED") == "1":
        x = x - x.max(axis=-1, keepdims=True)
    with np.errstate(over="ignore", invalid="ignore"):
        exps = np.exp(x)
        return exps / exps.sum(axis=-1, keepdims=True)


class OverflowingSoftmax(Adapter):
    """One implementation, ``overflowing:softmax``, float32 and float64, value only."""

    name = "overflowing"

    def version(self) -> str:
        return "0.0"

    def implementations(self) -> tuple[Implementation, ...]:
        return (Implementation("overflowing:softmax", "softmax", ("float32", "float64")),)

    def prepare(self, call: Call, logits: np.ndarray, labels) -> PreparedCall:
        return PreparedCall(run=lambda: _softmax(logits), to_numpy=np.asarray)
