"""The exact reference of ``linear_cross_entropy``: the language-model head, loss and gradients.

Inputs: hidden X [N, d], weight W [C, d], optional bias b [C], integer labels y [N] (a label
equal to ``ignore_index``, when given, marks a padding row: loss 0 and no gradient). The logits
z = X W^T + b are the *exact* dot products of the given floating inputs (nothing is rounded
before the softmax). Quantities, all of L = sum_i loss_i (cotangent ones):
  value        loss_i = logsumexp(z_i) - z_{i, y_i}            [N]
  grad_hidden  dL/dX = G W,  G = softmax(z) - onehot(y)        [N, d]
  grad_weight  dL/dW = G^T X                                   [C, d]
  grad_bias    dL/db = G^T 1                                   [C]

Method. (1) Exact logits by an Ozaki splitting (``reference.ozaki``; Ozaki, Ogita, Oishi & Rump,
"Error-free transformations of matrix multiplication by using fast routines of matrix
multiplication", Numer. Algorithms 59, 2012): every row of X and of W is cut into slices of beta
bits on a grid set by the row's largest element, beta = floor((53 - ceil(log2 d)) / 2), so each
float64 BLAS product of two slices is exact (integers below 2^53 on one grid per output
element); the slice products are summed with TwoSum into hi + lo and a rigorous bound on what is
left. (2) The softmax terms in double-double (``reference.dd``) from the *differences* z_j - z_m
(m the row's max), whose error bound adds the logits' bound; the loss uses log1p(T), T = S - 1,
and the true-class gradient -R/S as ``reference.fast`` does. (3) The gradients G W, G^T X, G^T 1
by the same splitting applied to G = G_hi + G_lo (six and three slices), with the dropped
remainder and G's own error bound carried through |.| products. Every output is ``hi + lo`` with
an error bound; ``rounding.decided`` proves the float64 rounding where the bound allows (nearly
everywhere); the rest is recomputed in Arb ball arithmetic from balls around the logits
(``Refinement``, for gradients cancelling by 2^20 or more). What is still undecided (an element
within ~2^-100 relative of a rounding boundary, or an exact zero reached by cancellation) keeps
the enclosure's centre, and ``LinearExact.proven`` says so.

Non-finite inputs (``reference.linear_limits``): a logit is NaN when its dot product has a NaN
term, an inf * 0 term or +inf and -inf terms, else +-inf when a term is infinite, else the exact
dot product; rows then follow ``reference.edges`` (NaN row, +inf, masked -inf classes); an
ignored row takes no part; in G W, G^T X, G^T 1 an exact-zero G_ij contributes 0 against any
input (the limit), other non-finite terms follow IEEE.
The finite part stays exact. Temperature, soft-capping and z-loss (the LLM head) take the
exact logits into ``reference.linear_head``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from flint import arb, ctx

import xentbench.reference.dd as dd
import xentbench.reference.linear_head as linear_head
import xentbench.reference.linear_limits as linear_limits
from xentbench.reference.ozaki import Enclosure, exact_logits, product
from xentbench.reference.rounding import decided, narrow_midpoint, round_ball

QUANTITIES: tuple[str, ...] = ("value", "grad_hidden", "grad_weight", "grad_bias")
# Bump when this module's numbers may change: it is part of the linear op's cache key
# (reference.cache), so results of an older version of this module are never served.
VERSION = "3"
# softcap, temperature (scalar or per row) and z_loss: the LLM head (reference.linear_head)
OPTIONS: tuple[str, ...] = ("weight", "bias", "ignore_index", "softcap", "temperature", "z_loss")
LOW = -650.0  # dd.exp's range: e^d for d in [DEEP, LOW) is e^(d + SHIFT) * e^-SHIFT
DEEP = -746.0  # e^-746 < 2^-1074: below it e^d is bounded by E_LOW, not evaluated
E_LOW = 2.0**-1074  # > e^-746
SHIFT = 100.0  # d + 100 is exact for d in [DEEP, LOW): both lie in the binade [512, 1024)
# e^-100 as a double-double (mpmath at 200 bits), within 2^-104 relative
_E_SHIFT = (3.720075976020836e-44, -1.5705024907732008e-60)
SUBNORMAL_ERROR = 2.0**-1068  # absolute: a few dd.mul results whose low part is subnormal


@dataclass(frozen=True)
class LinearExact:
    """The reference output: hi (RN64 of the truth where ``proven``), residual lo, and proof."""

    hi: np.ndarray
    lo: np.ndarray
    proven: np.ndarray


@dataclass(frozen=True)
class Terms:
    """Per-row softmax terms from enclosed logits: the loss and G = softmax - onehot."""

    loss: Enclosure  # [N]
    grad_logits: Enclosure  # [N, C]


def softmax_terms(
    z: Enclosure, labels: np.ndarray, active: np.ndarray, masked: np.ndarray | None = None
) -> Terms:
    """Loss and G per row (``reference.fast``'s formulas, with the logits' bound carried).

    d_j = z_j - z_m is enclosed within z.err_j + z.err_m + OP_ERROR |d_j| and d_m = 0 exactly,
    so a confident row's loss log1p(T) keeps its relative accuracy. e_j = exp(d_j) has relative
    error EXP_ERROR + 2 err(d_j) (|e^delta - 1| <= 2|delta| for tiny delta). ``masked``
    entries (logit -inf, ``reference.linear_limits``; z.hi -inf there) have e_j = 0 exactly.
    """
    rows = np.arange(len(z.hi))
    top = np.argmax(z.hi, axis=1)
    at_top = (z.hi[rows, top][:, None], z.lo[rows, top][:, None])
    d = dd.sub((z.hi, z.lo), at_top)
    d_err = z.err + z.err[rows, top][:, None] + dd.OP_ERROR * np.abs(d[0])
    d[0][rows, top], d[1][rows, top], d_err[rows, top] = 0.0, 0.0, 0.0
    in_range = d[0] >= LOW
    e = dd.exp((np.where(in_range, d[0], 0.0), np.where(in_range, d[1], 0.0)))
    e = (np.where(in_range, e[0], 0.0), np.where(in_range, e[1], 0.0))
    e_err = np.where(in_range, e[0] * (dd.EXP_ERROR + 2 * d_err), E_LOW)
    deep = (d[0] < LOW) & (d[0] >= DEEP)
    if deep.any():  # e^d = e^(d + 100) e^-100: normal down to e^-708, then subnormal
        shifted = dd.exp((np.where(deep, d[0] + SHIFT, 0.0), np.where(deep, d[1], 0.0)))
        scaled = dd.mul(shifted, _E_SHIFT)
        e = (np.where(deep, scaled[0], e[0]), np.where(deep, scaled[1], e[1]))
        relative = dd.EXP_ERROR + 2 * d_err + 2.0**-104 + dd.OP_ERROR
        e_err = np.where(deep, scaled[0] * relative + SUBNORMAL_ERROR, e_err)
    if masked is not None:
        e_err[masked] = 0.0
    others = (e[0].copy(), e[1].copy())
    others[0][rows, top], others[1][rows, top], e_err[rows, top] = 0.0, 0.0, 0.0
    tail, factor = dd.sum_last_axis(others)
    tail_err = factor * tail[0] + e_err.sum(axis=1)
    log_total, log_relative = dd.log1p(tail)
    log_err = log_relative * log_total[0] + tail_err
    d_y = (d[0][rows, labels], d[1][rows, labels])
    loss = dd.sub(log_total, d_y)
    loss_err = log_err + d_err[rows, labels] + dd.OP_ERROR * np.abs(loss[0])
    e[0][rows, top] = 1.0
    total = dd.add(dd.const(np.ones(len(rows))), tail)
    inverse = dd.div(dd.const(np.ones(len(rows))), total)
    p = dd.mul(e, (inverse[0][:, None], inverse[1][:, None]))
    p_err = (e_err + p[0] * (tail_err[:, None] + 4 * dd.OP_ERROR)) / total[0][:, None]
    p_err += np.where(np.abs(p[0]) < 2.0**-960, SUBNORMAL_ERROR, 0.0)  # p's low part subnormal
    # G_y = p_y - 1 = -R / S, R = sum_{j != y} e_j: T at the max, else 1 + (T - e_y).
    e_y = (e[0][rows, labels], e[1][rows, labels])
    rest = dd.add(dd.const(np.ones(len(rows))), dd.sub(tail, e_y))
    y_top = labels == top
    rest = (np.where(y_top, tail[0], rest[0]), np.where(y_top, tail[1], rest[1]))
    rest_err = tail_err + np.where(y_top, 0.0, e_err[rows, labels]) + 2 * dd.OP_ERROR * total[0]
    g_y = dd.neg(dd.div(rest, total))
    g_y_err = rest_err / total[0] + np.abs(g_y[0]) * (tail_err + 4 * dd.OP_ERROR)
    p[0][rows, labels], p[1][rows, labels], p_err[rows, labels] = g_y[0], g_y[1], g_y_err
    keep = active[:, None]
    grad = Enclosure(*(np.where(keep, a, 0.0) for a in (p[0], p[1], p_err)))
    loss = Enclosure(*(np.where(active, a, 0.0) for a in (loss[0], loss[1], loss_err)))
    return Terms(loss, grad)


def _validate(hidden, labels, options: Mapping) -> tuple:
    weight, bias = options.get("weight"), options.get("bias")
    if weight is None:
        raise ValueError("linear_cross_entropy needs options['weight'] of shape [C, d]")
    arrays = [np.asarray(a) for a in (hidden, weight)] + ([] if bias is None else [bias])
    for name, array in zip(("hidden", "weight", "bias"), arrays, strict=False):
        if np.asarray(array).dtype.kind != "f" and np.asarray(array).dtype.name != "bfloat16":
            raise ValueError(f"{name} must have a float dtype, got {np.asarray(array).dtype}")
    x, w = (np.asarray(a).astype(np.float64) for a in (hidden, weight))
    b = None if bias is None else np.asarray(bias).astype(np.float64)
    if x.ndim != 2 or w.ndim != 2 or x.shape[1] != w.shape[1] or w.shape[0] == 0:
        raise ValueError(f"hidden [N, d] and weight [C, d] expected, got {x.shape}, {w.shape}")
    if b is not None and b.shape != (w.shape[0],):
        raise ValueError(f"bias shape {b.shape} does not match weight's classes {w.shape[0]}")
    labels = np.asarray(labels)
    if labels.dtype.kind not in "iu" or labels.shape != (x.shape[0],):
        raise ValueError(f"labels must be integers of shape ({x.shape[0]},), got {labels.shape}")
    ignore = options.get("ignore_index")
    active = np.ones(len(labels), bool) if ignore is None else labels != int(ignore)
    bad = active & ((labels < 0) | (labels >= w.shape[0]))
    if bad.any():
        raise ValueError(f"label {labels[bad][0]} is outside [0, {w.shape[0]}) ({bad.sum()} bad)")
    return x, w, b, np.where(active, labels, 0).astype(np.int64), active


def _constant_columns_vanish(result: Enclosure, weight: np.ndarray) -> Enclosure:
    """dX_ik = c sum_j G_ij = c (sum_j p_ij - 1) = 0 exactly where W's column k is the constant c.

    (A common logit offset carried by one feature makes such a column; the computed sum only
    encloses 0, so it could not prove the rounding.) Other exact zeros reached by cancellation
    are left to the enclosure's centre and reported unproven.
    """
    constant = (weight == weight[:1]).all(axis=0)
    if not constant.any():
        return result
    zero = np.broadcast_to(constant, result.hi.shape)
    return Enclosure(*(np.where(zero, 0.0, a) for a in (result.hi, result.lo, result.err)))


def linear_exact(
    quantity: str, hidden: np.ndarray, labels: np.ndarray, options: Mapping
) -> LinearExact:
    """One quantity of ``linear_cross_entropy`` (see the module docstring), hi + lo + proof."""
    if quantity not in QUANTITIES:
        raise ValueError(
            f"op linear_cross_entropy has no quantity {quantity!r}; valid: {', '.join(QUANTITIES)}"
        )
    x, w, b, labels, active = _validate(hidden, labels, options)
    if quantity == "grad_bias" and b is None:
        raise ValueError("grad_bias needs options['bias']")
    if linear_head.active(options):
        finish = lambda q, g, xf, wf, kept: _quantity(q, Terms(g, g), xf, wf, kept, False)  # noqa: E731
        return LinearExact(
            *linear_head.head_exact(quantity, x, w, b, labels, active, options, finish)
        )
    limits = linear_limits.logit_limits(x, w, b)
    xf, wf = linear_limits.finite_part(x), linear_limits.finite_part(w)
    bf = None if b is None else linear_limits.finite_part(b)
    with np.errstate(all="ignore"):
        logits = exact_logits(xf, wf, bf)
        terms, masked, fixed = _terms(logits, labels, active, limits)
        result = _quantity(quantity, terms, xf, wf, active)
        overlay = _overlay(quantity, terms.grad_logits.hi, x, w)
        proven = decided(result.hi, result.lo, result.err)
        proven &= ~((np.abs(result.lo) <= result.err) & narrow_midpoint(result.hi))
    proven |= (result.hi == 0) & (result.err == 0)
    hi, lo = result.hi + 0.0, np.where(result.hi == 0, 0.0, result.lo)
    if overlay is not None:
        hi = np.where(np.isfinite(overlay), hi, overlay)
    limit = ~np.isfinite(hi)  # a limit of non-finite inputs: exact, no residual
    lo, proven = np.where(limit, 0.0, lo), proven | limit
    if not proven.all():
        refinement = Refinement(logits, xf, wf, labels, active, masked, fixed)
        refinement.apply(quantity, hi, lo, proven)
    return LinearExact(hi, lo, proven)


def _terms(z: Enclosure, labels, active, limits) -> tuple[Terms, np.ndarray | None, dict]:
    """Loss and G, with rows of non-finite logits by their limits (``reference.linear_limits``):
    -inf logits masked in the numeric path, rows ``reference.edges`` decides set exactly.
    Also the masked entries and the exact G rows of edge rows (for ``Refinement``)."""
    if limits is None:
        return softmax_terms(z, labels, active), None, {}
    edge = linear_limits.edge_mask(limits, active)
    masked = (limits == -np.inf) & ~edge[:, None]
    unused = masked | edge[:, None]
    hi = np.where(masked, -np.inf, np.where(edge[:, None], 0.0, z.hi))
    lo, err = (np.where(unused, 0.0, a) for a in (z.lo, z.err))
    terms = softmax_terms(Enclosure(hi, lo, err), labels, active & ~edge, masked)
    loss, g = terms.loss, terms.grad_logits
    rows = np.arange(len(labels))
    label_masked = active & ~edge & masked[rows, labels]  # p_y = 0: the loss is +inf
    edge_loss, edge_grad = linear_limits.edge_terms(limits, labels)
    loss_hi = np.where(edge, edge_loss, np.where(label_masked, np.inf, loss.hi))
    exact = edge | label_masked
    loss = Enclosure(loss_hi, *(np.where(exact, 0.0, a) for a in (loss.lo, loss.err)))
    g_hi = np.where(edge[:, None], edge_grad, g.hi)
    g = Enclosure(g_hi, *(np.where(edge[:, None], 0.0, a) for a in (g.lo, g.err)))
    fixed = {int(i): edge_grad[i] for i in np.flatnonzero(edge)}
    return Terms(loss, g), masked, fixed


def _quantity(quantity: str, terms: Terms, x, w, active, vanish: bool = True) -> Enclosure:
    """The finite part of one quantity from the terms (non-finite G entries count as 0);
    ``vanish``: G's rows sum to 0, so a constant column of W gives dX exactly 0 there (not
    under a cap or a z-loss, whose G rows do not sum to 0)."""
    g = terms.grad_logits
    if not np.isfinite(g.hi).all():
        g = Enclosure(*(np.where(np.isfinite(g.hi), a, 0.0) for a in (g.hi, g.lo, g.err)))
    if quantity == "value":
        result = terms.loss
    elif quantity == "grad_hidden":
        result = product([g.hi, g.lo], w, g.err)
        result = _constant_columns_vanish(result, w) if vanish else result
        padding = ~active[:, None]  # G's row is exactly 0 there, and so is dX's
        result = Enclosure(*(np.where(padding, 0.0, a) for a in result.__dict__.values()))
    elif quantity == "grad_weight":
        result = product([g.hi.T, g.lo.T], x, g.err.T)
    else:
        result = product([g.hi.T, g.lo.T], np.ones((len(x), 1)), g.err.T)
        result = Enclosure(*(a[:, 0] for a in (result.hi, result.lo, result.err)))
    if quantity != "value" and not active.any():  # only padding rows: G is exactly 0
        result = Enclosure(*(np.zeros_like(a) for a in result.__dict__.values()))
    return result


def _overlay(quantity: str, g: np.ndarray, x: np.ndarray, w: np.ndarray) -> np.ndarray | None:
    """The limits (NaN, +-inf; 0 elsewhere) a gradient takes from non-finite terms G_ij * v."""
    if quantity == "grad_hidden":
        return linear_limits.extended_products(g, w, annihilate=True)
    if quantity == "grad_weight":
        return linear_limits.extended_products(g.T, x, annihilate=True)
    if quantity == "grad_bias":
        overlay = linear_limits.extended_products(g.T, np.ones((len(x), 1)), annihilate=True)
        return None if overlay is None else overlay[:, 0]
    return None


class Refinement:
    """Unproven outputs again in ball arithmetic (Arb), from the logits' enclosure.

    The double-double G carries ~2^-87 relative error, too much where dX or dW cancel by 2^20
    or more, and probabilities below e^-746 are only bounded there; balls around the logits
    (radius ~2^-106 |z|) at 256 bits give G to ~2^-104, enough for most. A row's balls (all C
    classes) are computed once; an element then costs N ball operations (loss, dW, db) or C
    (dX, hence at most MAX_REFINED_DX of them). Elements still undecided stay unproven.
    """

    MAX_REFINED_DX = 256
    MAX_REFINED = 20_000
    PRECISION = 256

    def __init__(self, z: Enclosure, x, w, labels, active, masked=None, fixed=None) -> None:
        self.z, self.x, self.w, self.labels, self.active = z, x, w, labels, active
        self.rows: dict[int, list] = {}
        # Rows of non-finite logits (reference.linear_limits): -inf entries have p = 0; edge
        # rows' G is exact (a non-finite G entry only reaches outputs set to their limit).
        self.masked = masked
        for i, row in (fixed or {}).items():
            self.rows[i] = [arb(float(v)) if math.isfinite(v) else arb(0) for v in row]

    def grad_row(self, i: int) -> list:
        """G_i as balls: exp(z_ij - logsumexp(z_i)) - [j = y_i]; zeros on a padding row."""
        if i not in self.rows:
            if not self.active[i]:
                self.rows[i] = [arb(0)] * self.z.hi.shape[1]
                return self.rows[i]
            z = self._logit_balls(i)
            live = (
                self.z.hi[i]
                if self.masked is None
                else np.where(self.masked[i], -np.inf, self.z.hi[i])
            )
            top = int(np.argmax(live))
            exps = [(v - z[top]).exp() for v in z]
            if self.masked is not None:
                exps = [arb(0) if out else e for e, out in zip(exps, self.masked[i], strict=True)]
            total = arb(0)
            for e in exps:
                total += e
            grad = [e / total for e in exps]
            grad[self.labels[i]] -= 1
            self.rows[i] = grad
        return self.rows[i]

    def _logit_balls(self, i: int) -> list:
        parts = zip(self.z.hi[i], self.z.lo[i], self.z.err[i], strict=True)
        return [arb(float(h)) + arb(float(lo)) + arb(0, float(e)) for h, lo, e in parts]

    def ball(self, quantity: str, index: tuple[int, ...]):
        if quantity == "value":
            i = index[0]
            if not self.active[i]:
                return arb(0)
            g_y = self.grad_row(i)[self.labels[i]]
            return -(g_y + 1).log()  # loss = -log p_y
        if quantity == "grad_hidden":
            i, k = index
            terms = zip(self.grad_row(i), self.w[:, k], strict=True)
            return sum((g * float(v) for g, v in terms), arb(0))
        j = index[0]
        column = [self.grad_row(i)[j] for i in range(len(self.x))]
        if quantity == "grad_bias":
            return sum(column, arb(0))
        return sum((g * float(v) for g, v in zip(column, self.x[:, index[1]], strict=True)), arb(0))

    def apply(self, quantity: str, hi, lo, proven) -> None:
        """Refine ``hi``, ``lo`` and ``proven`` in place where the balls decide the rounding."""
        pending = np.argwhere(~proven)
        limit = self.MAX_REFINED_DX if quantity == "grad_hidden" else self.MAX_REFINED
        if len(pending) > limit:
            return
        with ctx.workprec(self.PRECISION):
            for index in map(tuple, pending):
                pair = round_ball(self.ball(quantity, index))
                if pair is not None:
                    hi[index], lo[index], proven[index] = pair[0], pair[1], True
