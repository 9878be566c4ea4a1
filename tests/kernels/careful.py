"""A careful kernel: extended internals (float64 or wider), max shift, rounded once; the edge
semantics as limits (a masked class has probability 0, a row of only -inf has no softmax,
+inf logits are limits, NaN in gives NaN out) and invalid class ids refused."""

import numpy as np

WIDE = np.longdouble  # at least float64


def _widen(x):
    return np.asarray(x).astype(np.float32 if x.dtype.name == "bfloat16" else x.dtype).astype(WIDE)


def _round_once(values, like):
    """To the input's dtype: 16-bit through float32 (within a float32 ULP of one rounding)."""
    if like.dtype.name in ("float16", "bfloat16"):
        return values.astype(np.float32).astype(like.dtype)
    return values.astype(like.dtype)


def _log_softmax_and_p(x):
    """log softmax and softmax of each row, in the wide dtype."""
    with np.errstate(all="ignore"):
        top = np.max(x, axis=-1, keepdims=True)
        d = x - np.where(np.isfinite(top), top, 0)
        s = np.sum(np.exp(d), axis=-1, keepdims=True)
        plus = x == np.inf
        count = plus.sum(axis=-1, keepdims=True)
        limit = np.where(plus, np.where(count == 1, 1.0, np.nan), 0.0).astype(WIDE)
        p = np.where(count > 0, limit, np.exp(d) / s)
        log_p = np.where(count > 0, np.log(limit), d - np.log(s))
        masked = np.isneginf(x).all(axis=-1, keepdims=True)
        return np.where(masked, np.nan, log_p), np.where(masked, np.nan, p)


def _class_ids(labels, classes):
    k = np.asarray(labels).astype(np.int64)
    if ((k < 0) | (k >= classes)).any():
        raise ValueError(f"class ids must lie in [0, {classes})")
    return k


def softmax(x):
    return _round_once(_log_softmax_and_p(_widen(x))[1], x)


def sparse_cross_entropy(x, labels):
    k = _class_ids(labels, x.shape[-1])
    log_p, _ = _log_softmax_and_p(_widen(x))
    return _round_once(-np.take_along_axis(log_p, k[:, None], axis=-1)[:, 0], x)


def sparse_cross_entropy_grad(x, labels, cotangent):
    k = _class_ids(labels, x.shape[-1])
    _, p = _log_softmax_and_p(_widen(x))
    one_hot = np.arange(x.shape[-1]) == k[:, None]
    g = _widen(cotangent)[:, None]
    with np.errstate(all="ignore"):  # a zero cotangent weights even a NaN row by zero
        grad = np.where(g == 0, 0, (p - one_hot) * g)
    return _round_once(grad, x)


def smoothed_cross_entropy(x, labels, label_smoothing=0.0):
    """The sparse loss with label smoothing eps (the keyword option): (1 - eps) on the label,
    eps / C on every class."""
    k = _class_ids(labels, x.shape[-1])
    log_p, _ = _log_softmax_and_p(_widen(x))
    eps = WIDE(label_smoothing)
    with np.errstate(all="ignore"):
        on_label = -np.take_along_axis(log_p, k[:, None], axis=-1)[:, 0]
        spread = -np.mean(log_p, axis=-1)
        loss = np.where(eps == 0, on_label, (1 - eps) * on_label + eps * spread)
    return _round_once(loss, x)


def head_cross_entropy(x, labels, label_smoothing=0.0, temperature=1.0, z_loss=0.0):
    """The sparse loss of the LLM head, every keyword option honoured: logits divided by the
    temperature, smoothing eps (1 - eps on the label, eps / C on every class), and
    z_loss * logsumexp^2 added per row. A temperature is a number or one per row."""
    k = _class_ids(labels, x.shape[-1])
    t = _widen(np.asarray(temperature))
    z = _widen(x) / (t[:, None] if t.ndim else t)
    log_p, _ = _log_softmax_and_p(z)
    eps = WIDE(label_smoothing)
    with np.errstate(all="ignore"):
        top = np.max(z, axis=-1, keepdims=True)
        shift = np.where(np.isfinite(top), top, 0)
        lse = (shift + np.log(np.sum(np.exp(z - shift), axis=-1, keepdims=True)))[:, 0]
        on_label = -np.take_along_axis(log_p, k[:, None], axis=-1)[:, 0]
        spread = -np.mean(log_p, axis=-1)
        loss = np.where(eps == 0, on_label, (1 - eps) * on_label + eps * spread)
        loss = np.where(WIDE(z_loss) == 0, loss, loss + WIDE(z_loss) * lse * lse)
    return _round_once(loss, x)
