"""The LLM head (softcap, temperature, z-loss) in a sparse cross-entropy, careful and flawed,
as third-party plugins.

``head_careful`` computes in extended precision (NumPy ``longdouble``): z = cap tanh(x / T /
cap), the shifted log-softmax, the z-loss, and the gradient p - onehot + 2 z_loss lse p times
dz/dx = sech^2(x / (T cap)) / T, rounded once to the call's dtype; it must pass every finite
case. ``head_flawed`` makes one mistake each, as fused kernels have:

- ``backward-without-sech2``: the gradient w.r.t. z passed through as if the cap were absent
  (the missing ``1 - tanh^2`` factor);
- ``z-loss-grad-without-2``: ``z_loss lse p`` instead of ``2 z_loss lse p``;
- ``backward-without-1-over-T``: the temperature's ``1 / T`` left out of the gradient;
- ``padding-excluded-after-cap``: -inf lanes kept at -inf after the cap (masked after capping,
  as a padding-aware kernel does on purpose). The reference follows the formula, under which
  ``cap tanh(-inf) = -cap`` gives padding lanes probability; this kernel computes another
  function; the saturated padded case shows the difference, the mass the capped padding lanes
  carry (what the Unsloth bug was about, seen from the formula's side). At ordinary magnitudes
  that mass, exp(-cap - lse), is below any dtype's resolution: the 50304-class case passes it.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from flawed.options import WideArithmeticAdapter
from xentbench.adapters.base import Implementation

ENTRY_POINTS = {
    "head_careful": "flawed.head:CarefulHead",
    "head_flawed": "flawed.head:FlawedHead",
}
SPARSE = "sparse_softmax_cross_entropy"
WIDE = np.longdouble
MISTAKES = (
    "backward-without-sech2",
    "z-loss-grad-without-2",
    "backward-without-1-over-T",
    "padding-excluded-after-cap",
)


class _Head:
    """The arithmetic, in longdouble; ``mistake`` (None: careful) selects one flaw."""

    def __init__(self, mistake: str | None = None) -> None:
        self.mistake = mistake

    def _transform(self, x, options):
        t = np.asarray(options.get("temperature", 1.0)).astype(np.float64).astype(WIDE)
        t = t.reshape(-1, 1) if t.ndim else t
        cap = WIDE(float(options.get("softcap", np.inf)))
        w = x / t
        scale = 1 if self.mistake == "backward-without-1-over-T" else 1 / t
        if not np.isfinite(cap):
            return w, np.broadcast_to(scale, x.shape)
        z = cap * np.tanh(w / cap)
        if self.mistake == "padding-excluded-after-cap":
            z = np.where(np.isneginf(x), -np.inf, z)
        with np.errstate(over="ignore"):
            sech2 = 1 / np.cosh(w / cap) ** 2
        if self.mistake == "backward-without-sech2":
            sech2 = np.ones_like(sech2)
        return z, sech2 * scale

    def compute(self, quantity, logits, labels, options):
        x = np.asarray(logits).astype(np.float64).astype(WIDE)
        k = np.asarray(labels).astype(np.int64)
        z, slope = self._transform(x, options)
        with np.errstate(all="ignore"):
            top = z.max(axis=1, keepdims=True)
            lse = top + np.log(np.exp(z - top).sum(axis=1, keepdims=True))
            p = np.exp(z - lse)
        z_loss = WIDE(float(options.get("z_loss", 0.0)))
        rows = np.arange(len(k))
        if quantity == "value":
            return lse[:, 0] - z[rows, k] + z_loss * lse[:, 0] ** 2
        factor = 1 if self.mistake == "z-loss-grad-without-2" else 2
        g = p + factor * z_loss * lse * p
        g[rows, k] -= 1
        cotangent = np.asarray(options.get("cotangent", np.ones(len(k)))).astype(WIDE)
        return cotangent.reshape(-1, 1) * g * slope


class _HeadAdapter(WideArithmeticAdapter):
    kinds: ClassVar[dict[str, _Head]]

    def implementation(self, name: str) -> Implementation:
        return Implementation(
            name=name,
            op=SPARSE,
            dtypes=("float16", "bfloat16", "float32", "float64"),
            gradient=True,
            options=("softcap", "temperature", "z_loss", "cotangent"),
        )


class CarefulHead(_HeadAdapter):
    name = "head_careful"
    kinds: ClassVar[dict[str, _Head]] = {"head_careful:longdouble": _Head()}


class FlawedHead(_HeadAdapter):
    name = "head_flawed"
    kinds: ClassVar[dict[str, _Head]] = {
        f"head_flawed:{mistake}": _Head(mistake) for mistake in MISTAKES
    }
