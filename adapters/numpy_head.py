"""The LLM head as NumPy users compose it: temperature, soft-cap, then the stable op, plus
``z_loss * logsumexp^2`` (the order Gemma 2, PaLM and the fused kernels document).

Each formula runs in the input dtype with NumPy's ufuncs, written as a user types it::

    z = x / T                        # T a scalar, or one per row as T[:, None]
    z = cap * np.tanh(z / cap)       # Gemma 2's final_logit_softcapping
    loss = -log_softmax(z)[arange(n), k] + z_loss * lse(z) ** 2   # log_softmax max-shifted

Value only (NumPy has no autodiff); the gradients are measured on the frameworks that have one.
``head.vocab_parallel_cross_entropy`` computes the same loss the Megatron way, the classes
split into ``shards`` slices (``reference.shards``) simulated in one process.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from xentbench.reference.shards import bounds

HEAD = ("softcap", "temperature", "z_loss")
UNLABELLED_HEAD = ("softcap", "temperature")
HeadFunction = Callable[[np.ndarray, np.ndarray | None, dict[str, Any]], np.ndarray]


def transformed(x: np.ndarray, options: dict[str, Any]) -> np.ndarray:
    """cap * tanh((x / T) / cap) in x's dtype; x / T without a cap, x without either."""
    z = x
    if "temperature" in options:
        t = np.asarray(options["temperature"])
        z = z / (t[..., None] if t.ndim else float(t))
    cap = float(options.get("softcap", np.inf))
    if np.isfinite(cap):
        cap_ = np.asarray(cap, dtype=x.dtype)
        z = cap_ * np.tanh(z / cap_)
    return z


def _lse(z: np.ndarray) -> np.ndarray:
    m = np.max(z, axis=-1, keepdims=True)
    m = np.where(np.isfinite(m), m, 0)
    return (m + np.log(np.sum(np.exp(z - m), axis=-1, keepdims=True)))[..., 0]


def _log_softmax(z: np.ndarray) -> np.ndarray:
    # (z - m) - log(sum(exp(z - m))), not z - logsumexp(z): that loses the digits below
    # logsumexp's ulp (a shift-variant result on logits of 1e3).
    _, shifted, log_s = max_shifted(z)
    return shifted - log_s


def max_shifted(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(m, x - m, log(sum(exp(x - m)))) per row in x's dtype, m the row max (0 if infinite)."""
    row_max = np.max(x, axis=-1, keepdims=True)
    m = np.where(np.isfinite(row_max), row_max, 0).astype(x.dtype)
    shifted = x - m
    return m, shifted, np.log(np.sum(np.exp(shifted), axis=-1, keepdims=True))


def soft_cross_entropy(x: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """-sum(y * log_softmax(x)) max-shifted, except where x_i - m overflows (logits of +-0.9
    max): there y_i (m + log s) - y_i x_i, two products in range, instead of y_i * -inf."""
    m, shifted, log_s = max_shifted(x)
    terms = labels * (log_s - shifted)
    overflowed = ~np.isfinite(shifted) & np.isfinite(x)
    if overflowed.any():
        terms = np.where(overflowed, labels * (m + log_s) - labels * x, terms)
    return np.sum(terms, axis=-1)


def _with_z_loss(loss: np.ndarray, z: np.ndarray, options: dict[str, Any]) -> np.ndarray:
    if "z_loss" not in options:
        return loss
    return loss + np.asarray(options["z_loss"], dtype=z.dtype) * _lse(z) ** 2


def _sparse(x, labels, options):
    z = transformed(x, options)
    ids = np.asarray(labels).astype(np.int64)
    if ((ids < 0) | (ids >= x.shape[-1])).any():  # take_along_axis would wrap a negative id
        raise IndexError(f"class ids must lie in [0, {x.shape[-1]})")
    picked = np.take_along_axis(_log_softmax(z), ids[..., None], axis=-1)
    return _with_z_loss(-picked[..., 0], z, options)


def _soft(x, labels, options):
    z = transformed(x, options)
    return _with_z_loss(soft_cross_entropy(z, labels), z, options)


def vocab_parallel(x, labels, options):
    """Megatron's vocab_parallel_cross_entropy on simulated shards: per shard a max, the
    all-reduced max M, per shard sum(exp(z - M)), their all-reduced sum s, the label's logit
    from the shard that holds it (0 elsewhere, then summed), and label smoothing as the
    all-reduced sum of each shard's sum of log-probabilities."""
    z = transformed(x, options)
    classes, rows = z.shape[-1], np.arange(len(z))
    pieces = [
        (start, z[:, start:stop]) for start, stop in bounds(classes, options.get("shards", 1))
    ]
    top = np.max([np.max(piece, axis=-1) for _, piece in pieces], axis=0)
    top = np.where(np.isfinite(top), top, 0)[:, None]
    total = np.sum([np.sum(np.exp(piece - top), axis=-1) for _, piece in pieces], axis=0)
    log_s = np.log(total)[:, None]
    k = labels.astype(np.int64)
    target = np.zeros(len(z), z.dtype)
    for start, piece in pieces:
        mine = (k >= start) & (k < start + piece.shape[-1])
        local = np.clip(k - start, 0, piece.shape[-1] - 1)
        target += np.where(mine, piece[rows, local] - top[:, 0], 0)
    loss = log_s[:, 0] - target
    eps = float(options.get("label_smoothing", 0.0))
    if eps:
        spread = np.sum([np.sum(log_s - (piece - top), axis=-1) for _, piece in pieces], axis=0)
        loss = (1 - eps) * loss + z.dtype.type(eps / classes) * spread
    if "z_loss" in options:  # on the all-reduced logsumexp
        loss = loss + z.dtype.type(options["z_loss"]) * (top[:, 0] + log_s[:, 0]) ** 2
    return loss


def linear(x, labels, options):
    """logits = x @ w.T + b in x's dtype, then the head's sparse composition; 0 on padding."""
    logits = x @ options["weight"].T
    if options.get("bias") is not None:
        logits = logits + options["bias"]
    ignore = options.get("ignore_index")
    kept = np.ones(len(labels), bool) if ignore is None else labels != int(ignore)
    loss = _sparse(logits, np.where(kept, labels, 0), options)
    return np.where(kept, loss, np.zeros((), loss.dtype))


# api -> (op, function of (logits, labels, options), options taken, formula)
HEAD_APIS: dict[str, tuple[str, HeadFunction, tuple[str, ...], str]] = {
    "head.softmax": (
        "softmax",
        lambda x, _, o: np.exp(_log_softmax(transformed(x, o))),
        UNLABELLED_HEAD,
        "exp(log_softmax(cap * tanh(x / T / cap)))",
    ),
    "head.log_softmax": (
        "log_softmax",
        lambda x, _, o: _log_softmax(transformed(x, o)),
        UNLABELLED_HEAD,
        "log_softmax(cap * tanh(x / T / cap)), max-shifted",
    ),
    "head.logsumexp": (
        "logsumexp",
        lambda x, _, o: _lse(transformed(x, o)),
        UNLABELLED_HEAD,
        "logsumexp(cap * tanh(x / T / cap)), max-shifted",
    ),
    "head.sparse_softmax_cross_entropy": (
        "sparse_softmax_cross_entropy",
        _sparse,
        HEAD,
        "-log_softmax(z)[k] + z_loss * logsumexp(z)^2, z = cap * tanh(x / T / cap)",
    ),
    "head.softmax_cross_entropy": (
        "softmax_cross_entropy",
        _soft,
        HEAD,
        "-sum(y * log_softmax(z)) + z_loss * logsumexp(z)^2, z = cap * tanh(x / T / cap)",
    ),
    "head.linear_cross_entropy": (
        "linear_cross_entropy",
        linear,
        ("weight", "bias", "ignore_index", *HEAD),
        "x @ w.T + b, then -log_softmax(z)[k] + z_loss * logsumexp(z)^2, "
        "z = cap * tanh(logits / T / cap)",
    ),
    "head.vocab_parallel_cross_entropy": (
        "sparse_softmax_cross_entropy",
        vocab_parallel,
        (*HEAD, "shards", "label_smoothing"),
        "Megatron's vocab_parallel_cross_entropy on simulated shards (per-shard max and "
        "sum(exp), all-reduced; the label's logit from its shard; smoothing summed per shard)",
    ),
}
