"""The careful kernel's call options and forward mode: the definitions of ``reference.options``
and ``reference.head`` computed with the budget's internals, and the linear head.

Every call is taken to rows ``[R, C]`` with the class axis last, computed in the internal dtype
(float32 for 16-bit inputs, the dtype's own otherwise) and rounded once to the call's dtype:

- the LLM head first, ``z = cap tanh((x / T) / cap)`` with slope ``dz/dx = sech^2 / T``;
- a cross-entropy row's coefficients ``c = cw ((1 - eps) y + eps / C)`` (0 on an ignored row),
  its loss ``sum_i c_i (log s - d_i) + z_loss L^2`` (``L = m + log s``), weighted by the sample
  weight and reduced by a pairwise sum and one division by the reduction's divisor;
- a VJP ``seed_r ((S_r + 2 z_loss L_r) p - c)``, ``seed_r = sw_r cot_r / D``, then times the
  slope; a JVP ``<t', g>`` along ``t' = t dz/dx`` (``p (t' - <p, t'>)``, ``t' - <p, t'>`` and
  ``<p, t'>`` for softmax, log_softmax and logsumexp);
- the linear op: logits ``X W^T + b`` by the internal dtype's matrix product, the sparse
  cross-entropy (under the head's options as above), and ``G W``, ``G^T X``, ``G^T 1`` with
  ``G = p - onehot`` (its VJP under the head's options; 0 on ignored rows).

A zero weight, cotangent row or tangent row contributes exactly 0 unless the row holds a NaN,
as the reference's conventions say.
"""

from __future__ import annotations

from typing import Any

import numpy as np

CROSS_ENTROPIES = ("softmax_cross_entropy", "sparse_softmax_cross_entropy")
LINEAR_HEAD = ("temperature", "softcap", "z_loss")  # the LLM head's options on the linear op


def pairwise_sum(values: np.ndarray) -> np.ndarray:
    """The sum over the last axis, kept: NumPy sums a contiguous axis pairwise (blocks of 128
    summed 8-way, then halved recursively), in the array's own dtype."""
    return np.add.reduce(np.ascontiguousarray(values), axis=-1, keepdims=True)


def shifted(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(m, d = x - m, log s, p) per row in x's dtype; m is the row max, 0 where it is not
    finite (a row of -inf has s = 0 and no softmax, as the reference says)."""
    row_max = x.max(axis=-1, keepdims=True)
    m = np.where(np.isfinite(row_max), row_max, 0).astype(x.dtype)
    d = x - m
    e = np.exp(d)
    s = pairwise_sum(e)
    return m, d, np.log(s), e / s


def rows_of(array: np.ndarray, axis: int) -> tuple[np.ndarray, tuple[int, ...]]:
    moved = np.moveaxis(array, axis, -1)
    return moved.reshape(-1, moved.shape[-1]), moved.shape[:-1]


def back(rows: np.ndarray, lead: tuple[int, ...], axis: int) -> np.ndarray:
    return np.moveaxis(rows.reshape(*lead, -1), -1, axis)


def head(x: np.ndarray, options: dict[str, Any]) -> tuple[np.ndarray, np.ndarray | None]:
    """(z, dz/dx) of the rows ``x`` under temperature and soft-cap; (x, None) without them."""
    if "temperature" not in options and "softcap" not in options:
        return x, None
    t = np.asarray(options.get("temperature", 1.0)).astype(x.dtype)
    t = t.reshape(-1, 1) if t.ndim else t
    z = x / t
    slope = np.broadcast_to(1 / t, x.shape).astype(x.dtype)
    cap = float(options.get("softcap", np.inf))
    if np.isfinite(cap):
        cap_ = x.dtype.type(cap)
        tanh = np.tanh(z / cap_)
        z = cap_ * tanh
        slope = (1 - tanh * tanh) / t
    return z, slope


def _coefficients(op: str, z: np.ndarray, labels, options, axis: int):
    """(c [R, C], kept [R], class weight at each row's label or None) in z's dtype."""
    count, classes = z.shape
    weights = options.get("class_weight")
    weights = None if weights is None else np.asarray(weights).astype(z.dtype)
    at_label = None
    if op == "sparse_softmax_cross_entropy":
        ids = np.asarray(labels).astype(np.int64).ravel()
        kept = ids != int(options.get("ignore_index", -(2**62)))
        if ((ids < 0) | (ids >= classes))[kept].any():
            raise ValueError(f"class ids must lie in [0, {classes})")
        target = np.zeros(z.shape, z.dtype)
        target[np.flatnonzero(kept), ids[kept]] = 1
        if weights is not None:
            at_label = np.where(kept, weights[np.where(kept, ids, 0)], 0)
    else:
        target = rows_of(np.asarray(labels).astype(z.dtype), axis)[0]
        kept = np.ones(count, dtype=bool)
    eps = float(options.get("label_smoothing", 0.0))
    if eps:
        target = z.dtype.type(1 - eps) * target + z.dtype.type(eps / classes)
    c = target if weights is None else weights * target
    return np.where(kept[:, None], c, 0), kept, at_label


def _label_terms(c: np.ndarray, d: np.ndarray, z: np.ndarray, m, log_s) -> np.ndarray:
    """c_i (log s - d_i), 0 where c_i = 0; where z_i - m overflows, c_i (m + log s) - c_i z_i
    (both in range, of opposite signs: nothing cancels)."""
    terms = np.where(c == 0, 0, c * (log_s - d))
    overflowed = ~np.isfinite(d) & np.isfinite(z)
    if overflowed.any():
        apart = np.where(c == 0, 0, c * (m + log_s)) - np.where(c == 0, 0, c * z)
        terms = np.where(overflowed, apart, terms)
    return terms


def _divisor(reduction: str, kept, sample, at_label, dtype) -> Any:
    """D of the reduction (``reference.options.REDUCTIONS``), None for none and sum."""
    if reduction in ("none", "sum"):
        return None
    if reduction == "sum_over_batch_size":
        return dtype.type(len(kept))
    if reduction == "mean_over_valid":
        return dtype.type(kept.sum())
    weights = sample if at_label is None else sample * at_label
    return pairwise_sum(np.where(kept, weights, 0))[0]


def _reduce(per_row: np.ndarray, reduction: str, divisor) -> np.ndarray:
    if reduction == "none":
        return per_row
    total = pairwise_sum(per_row)[0]
    return total if divisor is None else total / divisor


def _silent(weights: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Rows whose weight is exactly 0 and that hold no NaN: they contribute exactly 0."""
    return (weights == 0) & ~np.isnan(z).any(axis=1)


def cross_entropy(op: str, quantity: str, z, slope, labels, options, axis, lead) -> np.ndarray:
    """A cross-entropy's value, VJP or JVP under every option, on the rows ``z``."""
    c, kept, at_label = _coefficients(op, z, labels, options, axis)
    sample = options.get("sample_weight")
    sample = np.ones(len(z), z.dtype) if sample is None else np.asarray(sample).astype(z.dtype)
    sample = np.where(kept, sample.ravel(), 0)
    reduction = options.get("reduction", "none")
    divisor = _divisor(reduction, kept, sample, at_label, z.dtype)
    m, d, log_s, p = shifted(z)
    z_loss = z.dtype.type(float(options.get("z_loss", 0.0)))
    lse = m + log_s
    factor = 2 * z_loss * lse if z_loss else 0
    total = pairwise_sum(c) + factor
    if quantity == "grad":
        cot = np.asarray(options.get("cotangent", 1.0)).astype(z.dtype)
        seed = sample * (cot.ravel() if reduction == "none" else cot)
        silent = _silent(seed, z)
        if divisor is not None:
            seed = seed / divisor
        grad = np.where(silent[:, None], 0, seed[:, None] * (p * total - c))
        grad = grad if slope is None else grad * slope
        return back(grad, lead, axis)
    if quantity == "value":
        row = pairwise_sum(_label_terms(c, d, z, m, log_s))[:, 0]
        if z_loss:
            row = row + z_loss * lse[:, 0] ** 2
        silent = _silent(sample, z)
    else:
        t = options.get("tangent")  # ones when absent, as the reference says
        t = (
            np.ones(z.shape, z.dtype)
            if t is None
            else rows_of(np.asarray(t).astype(z.dtype), axis)[0]
        )
        t = t if slope is None else t * slope
        row = pairwise_sum(t * (p * total - c))[:, 0]
        silent = _silent(sample, z) | _silent(np.abs(t).max(axis=1), z)
    per_row = np.where(silent, 0, sample * row)
    return _reduce(per_row, reduction, divisor).reshape(lead if reduction == "none" else ())


def unlabelled_jvp(op: str, z: np.ndarray, t: np.ndarray) -> np.ndarray:
    """The JVP of softmax, log_softmax or logsumexp along the rows ``t`` (already in z)."""
    p = shifted(z)[3]
    mixed = pairwise_sum(p * t)
    if op == "logsumexp":
        out = mixed
    elif op == "softmax":
        out = p * (t - mixed)
    else:
        out = t - mixed
    return np.where(_silent(np.abs(t).max(axis=1), z)[:, None], 0, out)


def linear(quantity: str, hidden, labels, options: dict[str, Any], internal) -> np.ndarray:
    """The linear head's loss per row or a gradient, in the internal dtype."""
    x = np.asarray(hidden).astype(internal)
    w = np.asarray(options["weight"]).astype(internal)
    z = x @ w.T
    if options.get("bias") is not None:
        z = z + np.asarray(options["bias"]).astype(internal)
    ids = np.asarray(labels).astype(np.int64).ravel()
    kept = ids != int(options.get("ignore_index", -(2**62)))
    safe = np.where(kept, ids, 0)
    head_options = {k: options[k] for k in LINEAR_HEAD if options.get(k) is not None}
    if head_options:  # the sparse cross-entropy under the head, on these logits
        rows_options = {**head_options, "ignore_index": options.get("ignore_index", -(2**62))}
        t, slope = head(z, rows_options)
        ce = "sparse_softmax_cross_entropy"
        if quantity == "value":
            return cross_entropy(ce, "value", t, slope, labels, rows_options, 1, (len(z),))
        g = cross_entropy(ce, "grad", t, slope, labels, rows_options, 1, (len(z),))
        g = np.where(kept[:, None], g, 0)
    else:
        _, d, log_s, p = shifted(z)
        rows = np.arange(len(z))
        if quantity == "value":
            return np.where(kept, (log_s - d)[rows, safe], 0)
        onehot = np.zeros_like(p)
        onehot[rows[kept], ids[kept]] = 1
        g = np.where(kept[:, None], p - onehot, 0)
    if quantity == "grad_hidden":
        return _product(g, w)
    if quantity == "grad_weight":
        return _product(g.T, np.where(kept[:, None], x, 0))  # padding takes no part, NaN or not
    return pairwise_sum(g.T)[:, 0]


def _product(g: np.ndarray, v: np.ndarray) -> np.ndarray:
    """g @ v where an exact zero g_ij contributes 0 even against an infinite or NaN v_jk (the
    limit ``reference.linear_limits`` takes); other terms follow IEEE arithmetic."""
    out = g @ np.where(np.isfinite(v), v, 0)
    for k in np.flatnonzero(~np.isfinite(v).all(axis=0)):
        bad = ~np.isfinite(v[:, k])
        out[:, k] += np.where(g[:, bad] == 0, 0, g[:, bad] * v[bad, k]).sum(axis=1)
    return out
