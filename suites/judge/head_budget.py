"""The error budget of the LLM head's options (``reference.head``): temperature, soft-capping
and z-loss, carried on top of the options family's rules (``suites.judge.option_budget``).

The family's rules run on the transformed logits ``z = cap tanh(x / (T cap))`` as if they were
exact; this module adds, first order, what forming ``z``, its slope and the z-loss costs with
internals of unit roundoff u:

- ``z``: x / T and / cap are one rounding each, carried through tanh' = sech^2; tanh itself
  within 2 ULPs (the CUDA math API's documented maximum for tanhf; glibc's tables list at most
  2 ULPs for tanh and tanhf on x86_64), and * cap one rounding:
  ``dz <= u (2 sech^2(w) |x / T| + 3 |z|)``, ``w = x / (T cap)``; ``u |x / T|`` without a cap;
  0 for an infinite x (its z is exact) and for T = 1 without a cap;
- the slope ``s = (1 - tanh^2 w) / T``: ``ds <= (u / T)(4 sech^2(w)|tanh w||w| + 5 tanh^2 w + 1)
  + u s`` (w's error through 2 sech^2 tanh, tanh's own through 2 tanh, the square, the
  subtraction and the division); ``u / T`` without a cap (0 for T = 1);
- the z-loss ``z L^2``: L's error ``A_L = u(|L| + sigma)`` times ``2 z |L|``, and three
  roundings ``3 u z L^2``; its gradient ``2 z L p_i`` errs by ``2 z (|L| A_p + p_i A_L) +
  3 u 2 z |L| p_i``.

An error ``dz`` in the logits reaches an output through its Jacobian: ``sum_j p_j dz_j`` for
logsumexp, plus ``dz_i`` for log_softmax, times ``2 p_i`` for softmax; ``sum_j (c_j + p_j S)
dz_j`` for a cross-entropy (with ``2 z |L|`` times logsumexp's for its z-loss). Derivatives take
the row's largest ``dz`` (Delta) times the l1 norm of their Jacobian's row: ``2 |S| p_i`` (plus
``2 z p_i (1 + 2|L|)``) for a cross-entropy gradient, ``2 p_i`` for logsumexp's, ``2 |S|`` in
all a JVP's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from xentbench.suites.judge.budget import shifted, weighted
from xentbench.suites.judge.roundoff import sigma


@dataclass(frozen=True)
class HeadTerms:
    """Float64 intermediates of the head's transform per row [R, C], for the budget only."""

    z: np.ndarray  # transformed logits
    dz: np.ndarray  # their error bound (0 where exact)
    slope: np.ndarray  # dz/dx
    dslope: np.ndarray  # its error bound
    p: np.ndarray  # softmax of z
    lse: np.ndarray  # logsumexp of z [R, 1]
    z_loss: float


def transform(x: np.ndarray, options: dict[str, Any], u: float, lead) -> HeadTerms:
    """z, its slope and their error bounds per element of the rows ``x``."""
    t = np.asarray(options.get("temperature", 1.0), dtype=np.float64)
    t = np.full((len(x), 1), float(t)) if t.ndim == 0 else t.reshape(-1, 1)
    cap = float(options.get("softcap", np.inf))
    finite = np.isfinite(x)
    with np.errstate(all="ignore"):
        scaled = x / t
        if np.isinf(cap):
            z, slope = scaled, np.broadcast_to(1.0 / t, x.shape)
            unit = np.where(t == 1.0, 0.0, u)
            dz, dslope = unit * np.abs(scaled), np.broadcast_to(unit / t, x.shape)
        else:
            w = scaled / cap
            tanh = np.tanh(w)
            sech2 = np.where(finite, 1.0 / np.cosh(w) ** 2, 0.0)
            z, slope = cap * tanh, sech2 / t
            dz = u * (2 * sech2 * np.abs(scaled) + 3 * np.abs(z))
            dslope = u / t * (4 * sech2 * np.abs(tanh * w) + 5 * tanh**2 + 1) + u * slope
    dz = np.where(finite, dz, 0.0)
    _, log_s, p = shifted(z)
    lse = z.max(axis=1, keepdims=True) + log_s
    return HeadTerms(z, dz, slope, dslope, p, lse, float(options.get("z_loss", 0.0)))


def lse_error(h: HeadTerms, u: float) -> np.ndarray:
    """A_L per row [R, 1]: logsumexp's own error plus z's error through it."""
    spread = sigma(h.z.shape[1])
    return u * (np.abs(h.lse) + spread) + weighted(h.p, h.dz).sum(axis=1, keepdims=True)


def value_extra(h: HeadTerms, c: np.ndarray | None, op: str, u: float) -> np.ndarray:
    """A value's added error: dz through the op's Jacobian (c: the cross-entropy's
    coefficients), and the z-loss term's (per row for a cross-entropy and logsumexp)."""
    through = weighted(h.p, h.dz).sum(axis=1, keepdims=True)
    if op == "logsumexp":
        return through[:, 0]
    if op == "log_softmax":
        return h.dz + through
    if op == "softmax":
        return 2 * weighted(h.p, h.dz + through)
    total = np.abs(c.sum(axis=1, keepdims=True))
    extra = weighted(np.abs(c), h.dz).sum(axis=1) + (total * through)[:, 0]
    if h.z_loss:
        big_l = np.abs(h.lse[:, 0])
        extra += 2 * h.z_loss * big_l * lse_error(h, u)[:, 0] + 3 * u * h.z_loss * big_l**2
    return extra


def z_loss_value(h: HeadTerms) -> np.ndarray:
    """|z L^2| per row: the magnitude the z-loss adds to a row's loss."""
    return h.z_loss * h.lse[:, 0] ** 2


def gradient_in_x(h: HeadTerms, base: np.ndarray, g_z: np.ndarray, norm: np.ndarray, u: float):
    """A gradient w.r.t. x from one w.r.t. z: ``base`` its error (per unit seed), ``g_z`` its
    magnitude, ``norm`` the l1 norm of its Jacobian's row (times Delta, z's error)."""
    delta = h.dz.max(axis=1, keepdims=True)
    in_z = base + weighted(norm, delta)
    product = np.where(h.dslope == 0, 0.0, u * h.slope * g_z)  # no product where s is 1 exactly
    return weighted(h.slope, in_z) + weighted(np.abs(g_z), h.dslope) + product


def ce_gradient(h: HeadTerms, c: np.ndarray, base: np.ndarray, u: float) -> np.ndarray:
    """The cross-entropy gradient's error per unit seed in x: p S - c + 2 z L p."""
    total = c.sum(axis=1, keepdims=True)
    g_z = np.abs(h.p * total - c)
    norm = 2 * np.abs(total) * h.p
    if h.z_loss:
        base = base + _z_grad_error(h, u)
        g_z = g_z + 2 * h.z_loss * np.abs(h.lse) * h.p
        norm = norm + 2 * h.z_loss * h.p * (1 + 2 * np.abs(h.lse))
    return gradient_in_x(h, base, g_z, norm, u)


def _z_grad_error(h: HeadTerms, u: float) -> np.ndarray:
    """The z-loss gradient 2 z L p_i's error: 2 z (|L| A_p + p_i A_L) + 3 u 2 z |L| p_i."""
    big_l = np.abs(h.lse)
    spread = sigma(h.z.shape[1])
    a_p = u * weighted(h.p, np.abs(h.z - h.z.max(axis=1, keepdims=True)) + spread)
    return 2 * h.z_loss * (big_l * a_p + h.p * lse_error(h, u)) + 6 * u * h.z_loss * big_l * h.p


def tangent_extra(h: HeadTerms, c: np.ndarray | None, t: np.ndarray, u: float) -> np.ndarray:
    """A JVP's added error per row: the slope's error on the tangent through the Jacobian and
    z's error through the Hessian, ``Delta max|t'| 2(|S| + z(1 + 2|L|))`` (1 for S unlabelled)."""
    total = 1.0 if c is None else np.abs(c.sum(axis=1))
    delta = h.dz.max(axis=1)
    scaled = np.abs(t) * h.slope
    hessian = 2 * (total + h.z_loss * (1 + 2 * np.abs(h.lse[:, 0])))
    slope_error = np.abs(t) * h.dslope
    jacobian = weighted(h.p, slope_error).sum(axis=1) * (1 + total)
    if c is not None:
        jacobian += weighted(np.abs(c), slope_error).sum(axis=1)
    if h.z_loss:  # the z-loss gradient's own error along t'
        jacobian += weighted(scaled, _z_grad_error(h, u)).sum(axis=1)
    return delta * scaled.max(axis=1) * hessian + jacobian


def unlabelled_gradient(h: HeadTerms, op: str, g: np.ndarray, base: np.ndarray, u: float):
    """A VJP of softmax, log_softmax or logsumexp (cotangent ``g``) w.r.t. x, from its error
    ``base`` w.r.t. z: its magnitude and its Jacobian's l1 norm as the module states."""
    p = h.p
    if op == "logsumexp":
        g_z, norm = np.abs(g) * p, 2 * np.abs(g) * p
    elif op == "softmax":
        mixed = (p * g).sum(axis=1, keepdims=True)
        spread = (p * np.abs(g)).sum(axis=1, keepdims=True)
        g_z, norm = p * np.abs(g - mixed), p * (2 * np.abs(g) + 4 * spread)
    else:
        total = g.sum(axis=1, keepdims=True)
        g_z, norm = np.abs(g - p * total), 2 * p * np.abs(total)
    return gradient_in_x(h, base, g_z, norm, u)
