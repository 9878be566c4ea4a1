"""The LLM head's options (softcap, temperature) in softmax, log_softmax and logsumexp, careful
and flawed, as third-party plugins.

``head_softmax_careful`` computes in extended precision (NumPy ``longdouble``): z = cap tanh(x
/ T / cap) (or x / T), the shifted softmax, log-softmax or logsumexp, and their vector-Jacobian
products times dz/dx = sech^2(x / (T cap)) / T, rounded once; it must pass what the hunt
searches. ``head_softmax_flawed:backward-without-1-over-T`` leaves the temperature's ``1 / T``
out of its hand-written backward (the values are right), as a fused sampling kernel has.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from flawed.options import WideArithmeticAdapter
from xentbench.adapters.base import Implementation

ENTRY_POINTS = {
    "head_softmax_careful": "flawed.head_softmax:CarefulHeadSoftmax",
    "head_softmax_flawed": "flawed.head_softmax:FlawedHeadSoftmax",
}
OPS = ("softmax", "log_softmax", "logsumexp")
WIDE = np.longdouble


class _HeadSoftmax:
    """The arithmetic of one op, in longdouble; ``mistake`` (None: careful) selects the flaw."""

    def __init__(self, op: str, mistake: str | None = None) -> None:
        self.op, self.mistake = op, mistake

    def _transform(self, x, options):
        t = WIDE(float(options.get("temperature", 1.0)))
        cap = WIDE(float(options.get("softcap", np.inf)))
        scale = 1 if self.mistake == "backward-without-1-over-T" else 1 / t
        w = x / t
        if not np.isfinite(cap):
            return w, np.full(x.shape, scale, WIDE)
        with np.errstate(over="ignore"):
            return cap * np.tanh(w / cap), scale / np.cosh(w / cap) ** 2

    def compute(self, quantity, logits, labels, options):
        x = np.asarray(logits).astype(np.float64).astype(WIDE)
        z, slope = self._transform(x, options)
        with np.errstate(all="ignore"):
            top = z.max(axis=1, keepdims=True)
            lse = top + np.log(np.exp(z - top).sum(axis=1, keepdims=True))
            p = np.exp(z - lse)
            if quantity == "value":
                return {"softmax": p, "log_softmax": z - lse, "logsumexp": lse[:, 0]}[self.op]
            shape = (len(x), 1) if self.op == "logsumexp" else x.shape  # ones by default
            g = np.asarray(options.get("cotangent", np.ones(shape))).astype(np.float64)
            g = g.astype(WIDE).reshape(shape)
            if self.op == "logsumexp":
                vjp = g * p
            elif self.op == "softmax":
                vjp = p * (g - (g * p).sum(axis=1, keepdims=True))
            else:
                vjp = g - p * g.sum(axis=1, keepdims=True)
            return np.where(slope == 0, 0, vjp * slope)


class _HeadSoftmaxAdapter(WideArithmeticAdapter):
    kinds: ClassVar[dict[str, _HeadSoftmax]]

    def implementation(self, name: str) -> Implementation:
        return Implementation(
            name=name,
            op=self.kinds[name].op,
            dtypes=("float16", "bfloat16", "float32", "float64"),
            gradient=True,
            options=("softcap", "temperature", "cotangent"),
        )


class CarefulHeadSoftmax(_HeadSoftmaxAdapter):
    name = "head_softmax_careful"
    kinds: ClassVar[dict[str, _HeadSoftmax]] = {
        f"head_softmax_careful:{op}": _HeadSoftmax(op) for op in OPS
    }


class FlawedHeadSoftmax(_HeadSoftmaxAdapter):
    name = "head_softmax_flawed"
    kinds: ClassVar[dict[str, _HeadSoftmax]] = {
        f"head_softmax_flawed:{op}:backward-without-1-over-T": _HeadSoftmax(
            op, "backward-without-1-over-T"
        )
        for op in OPS
    }
