"""``linear_cross_entropy`` under the LLM head's options (``reference.head``): temperature,
soft-capping and z-loss on the exact logits of the linear op.

Per row i of the exact logits ``z = X W^T + b`` (``reference.ozaki``, enclosed within ~2^-106
relative): ``t = cap tanh((z / T_i) / cap)`` (``z / T_i`` without a cap), ``loss_i = lse(t) -
t_y + z_loss lse(t)^2`` and ``G_ij = dloss_i/dz_ij = s_ij (p_ij (1 + 2 z_loss lse(t)) - [j =
y_i])`` with the slope ``s = sech^2(z / (T cap)) / T`` (``1 / T`` without a cap); then dX =
G W, dW = G^T X, db = G^T 1 by the exact products of ``reference.linear``. A padding row
(label ``ignore_index``) has loss 0 and G 0.

Arithmetic: every row in Arb ball arithmetic at PRECISION bits from balls around the enclosed
logits, so each loss and G element is known to about the logits' 2^-106; the loss is rounded
from its ball (``rounding.round_ball``), G enters the products as hi + lo with the ball's radius
as its error bound. Outputs whose rounding the enclosure cannot decide keep its centre and are
marked unproven (``LinearExact.proven``), as in ``reference.linear``. Non-finite hidden,
weight or bias values are refused here (their limits under a cap are not defined for this op).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
from flint import arb, ctx

import xentbench.reference.head as head
from xentbench.reference.ozaki import Enclosure, exact_logits
from xentbench.reference.rounding import decided, narrow_midpoint, round_ball

PRECISION = 320
SPARSE = "sparse_softmax_cross_entropy"


def active(options: Mapping) -> bool:
    """Whether the linear op's ``options`` name any of the head's options."""
    return head.active(dict(options))


def validate(options: Mapping, rows: int) -> None:
    """ValueError naming a bad cap, temperature or z-loss (``reference.head.validate``), or a
    per-row temperature whose shape is not the rows'."""
    head.validate(SPARSE, dict(options), (SPARSE,))
    t = np.asarray(options.get("temperature", 1.0))
    if t.ndim and t.shape != (rows,):
        raise ValueError(f"temperature shape {t.shape}, expected () or ({rows},)")


def head_exact(quantity: str, x, w, b, labels, kept, options: Mapping, finish):
    """The quantity under the head's options; ``finish(quantity, terms, x, w, kept)`` is the
    linear op's product step (``reference.linear._quantity``). Returns (hi, lo, proven)."""
    validate(options, len(x))
    for name, array in (("hidden", x), ("weight", w), ("bias", b)):
        if array is not None and not np.isfinite(array).all():
            raise ValueError(
                f"linear_cross_entropy with softcap, temperature or z_loss takes finite "
                f"{name} values; got a non-finite one"
            )
    with np.errstate(all="ignore"):
        logits = exact_logits(x, w, b)
    loss, grad = _rows(logits, labels, kept, options)
    if quantity == "value":
        return loss
    result = finish(quantity, grad, x, w, kept)
    with np.errstate(all="ignore"):
        proven = decided(result.hi, result.lo, result.err)
        proven &= ~((np.abs(result.lo) <= result.err) & narrow_midpoint(result.hi))
    proven |= (result.hi == 0) & (result.err == 0)
    return result.hi + 0.0, np.where(result.hi == 0, 0.0, result.lo), proven


def _rows(z: Enclosure, labels, kept, options: Mapping):
    """((loss hi, lo, proven), G as an Enclosure) from each row's balls."""
    count, classes = z.hi.shape
    t = np.broadcast_to(np.asarray(options.get("temperature", 1.0), np.float64), (count,))
    cap = float(options.get("softcap", math.inf))
    z_loss = float(options.get("z_loss", 0.0))
    loss_hi, loss_lo, proven = np.zeros(count), np.zeros(count), np.ones(count, bool)
    g_hi, g_lo, g_err = (np.zeros((count, classes)) for _ in range(3))
    with ctx.workprec(PRECISION):
        for i in np.flatnonzero(kept):
            loss, grad = _row(z, i, int(labels[i]), float(t[i]), cap, z_loss)
            pair = round_ball(loss)
            proven[i] = pair is not None
            loss_hi[i], loss_lo[i] = pair if pair is not None else round_ball(loss, final=True)
            for j, ball in enumerate(grad):
                g_hi[i, j], g_lo[i, j], g_err[i, j] = _split(ball)
    return (loss_hi, loss_lo, proven), Enclosure(g_hi, g_lo, g_err)


def _row(z: Enclosure, i: int, label: int, t: float, cap: float, z_loss: float):
    """(loss ball, [G_ij balls]) of one kept row."""
    parts = zip(z.hi[i], z.lo[i], z.err[i], strict=True)
    balls = [arb(float(h)) + arb(float(lo)) + arb(0, float(e)) for h, lo, e in parts]
    scaled = [v / arb(t) for v in balls]
    if math.isfinite(cap):
        capped = [arb(cap) * (v / arb(cap)).tanh() for v in scaled]
        slopes = [(v / arb(cap)).sech() ** 2 / arb(t) for v in scaled]
    else:
        capped, slopes = scaled, [1 / arb(t)] * len(scaled)
    top = capped[int(np.argmax(z.hi[i]))]  # the transform is increasing: the same argmax
    exps = [(v - top).exp() for v in capped]
    total = sum(exps, arb(0))
    lse = top + total.log()
    factor = 1 + 2 * arb(z_loss) * lse
    grad = [s * (e / total * factor) for s, e in zip(slopes, exps, strict=True)]
    grad[label] -= slopes[label]
    return lse - capped[label] + arb(z_loss) * lse**2, grad


def _split(ball) -> tuple[float, float, float]:
    """A ball as (hi, lo, err): hi + lo its midpoint to ~2^-106, err bounding the rest."""
    mid = ball.mid()
    hi = float(mid)
    lo = float(mid - arb(hi))
    rest = abs(float(mid - arb(hi) - arb(lo)))
    return hi, lo, float(ball.rad()) * (1 + 2.0**-50) + rest * 2 + 2.0**-1074
