"""linear_cross_entropy in NumPy float32: one careful composition and two bug classes of fused
language-model-head kernels, registered as the plugin backend ``flawed-linear``.

- ``careful``: logits = X W^T + b in float32, shifted log-sum-exp, G = softmax - onehot, then
  G W, G^T X, G^T 1 in float32: the plain composition, which must pass.
- ``bf16-true-class-grad``: the true class's probability is kept in a bfloat16 buffer before
  the 1 is subtracted (p_y - 1 becomes 0 or a multiple of 2^-8 near p_y ~ 1: up to 100% error
  on the largest gradient entry of a confident row).
- ``bf16-logits-backward``: the forward is right, but the backward recomputes the softmax from
  logits saved in bfloat16 (at |logit| in the hundreds, an ULP of 1 or 2 changes p by e^1).
"""

from __future__ import annotations

import ml_dtypes
import numpy as np

from xentbench.adapters.base import LINEAR_OP, Adapter, Implementation, PreparedCall

ENTRY_POINTS = {"flawed-linear": "flawed.linear:FlawedLinearAdapter"}
BF16 = np.dtype(ml_dtypes.bfloat16)


def _softmax_terms(z: np.ndarray, labels: np.ndarray, active: np.ndarray):
    rows = np.arange(len(z))
    d = z - z.max(axis=1, keepdims=True)
    e = np.exp(d)
    total = e.sum(axis=1, keepdims=True)
    loss = (np.log(total[:, 0]) - d[rows, labels]) * active
    return loss.astype(np.float32), (e / total).astype(np.float32)


def _gradient(flaw: str, z, labels, active):
    rows = np.arange(len(z))
    if flaw == "bf16-logits-backward":
        z = z.astype(BF16).astype(np.float32)  # the saved activations
    _, p = _softmax_terms(z, labels, active)
    p_y = p[rows, labels]
    if flaw == "bf16-true-class-grad":
        p_y = p_y.astype(BF16).astype(np.float32)  # the bfloat16 buffer
    p[rows, labels] = p_y - np.float32(1)
    return p * active[:, None].astype(np.float32)


class FlawedLinearAdapter(Adapter):
    """Float32 NumPy linear cross-entropy with or without one injected flaw."""

    name = "flawed-linear"

    def version(self) -> str:
        return f"numpy {np.__version__}"

    def implementations(self) -> tuple[Implementation, ...]:
        return tuple(
            Implementation(
                f"flawed-linear:{flaw}",
                LINEAR_OP,
                ("float32",),
                gradient=True,
                options=("weight", "bias", "ignore_index"),
            )
            for flaw in ("careful", "bf16-true-class-grad", "bf16-logits-backward")
        )

    def prepare(self, call, logits, labels) -> PreparedCall:
        flaw = call.implementation.api
        x, w = np.asarray(logits, np.float32), np.asarray(call.options["weight"], np.float32)
        b = call.options.get("bias")
        ignore = call.options.get("ignore_index", -100)
        active = np.asarray(labels) != ignore
        labels = np.where(active, labels, 0)

        def run() -> np.ndarray:
            z = x @ w.T + (np.float32(0) if b is None else np.asarray(b, np.float32))
            if call.quantity == "value":
                return _softmax_terms(z, labels, active)[0]
            g = _gradient(flaw, z, labels, active)
            return {"grad_hidden": lambda: g @ w, "grad_weight": lambda: g.T @ x}.get(
                call.quantity, lambda: g.sum(axis=0)
            )()

        return PreparedCall(run=run, to_numpy=np.asarray)
