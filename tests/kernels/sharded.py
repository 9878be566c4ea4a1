"""Vocabulary-parallel cross-entropy kernels (Megatron's algorithm on k simulated shards), as a
user would hand them to ``xentbench verify --shards K``: a careful one and three flawed ones.

Each takes ``shards`` and ``label_smoothing`` by keyword. Per shard the max, the global max M,
per shard the sum of exp(x - M), the global sum s, the label's logit from the shard holding it,
the smoothing term summed per shard; in extended precision (``longdouble``), rounded once, with
the edge semantics of ``careful.py`` (+inf logits as limits, a row of only -inf has no loss,
NaN in gives NaN out, invalid class ids refused). The flawed ones each make one mistake:
``smoothing_over_local_v`` divides each shard's smoothing sum by its own V_s instead of C,
``sum_reduced_twice`` all-reduces the sum again (s k times too large: the loss off by
+log(k)), ``boundary_off_by_one`` lets a shard claim the labels in ``(start, stop]``.
"""

import itertools

import numpy as np
from careful import WIDE, _class_ids, _round_once, _widen


def _spans(classes, shards):
    """``numpy.array_split``'s shards: the first C mod k hold one class more."""
    edges = np.cumsum([0] + [len(part) for part in np.array_split(np.arange(classes), shards)])
    return list(itertools.pairwise(edges))


def _weights_and_log_p(x, labels, shards, eps, mistake=None):
    """(the weight of each -log p, log p) per row, computed shard by shard."""
    x = _widen(x)
    count, classes = x.shape
    k = _class_ids(labels, classes)
    spans = _spans(classes, int(shards))
    with np.errstate(all="ignore"):
        top = np.max([x[:, a:b].max(axis=1) for a, b in spans], axis=0)[:, None]
        shift = np.where(np.isfinite(top), top, 0)
        total = np.sum([np.exp(x[:, a:b] - shift).sum(axis=1) for a, b in spans], axis=0)
        if mistake == "sum-reduced-twice":
            total = total * len(spans)
        log_p = x - shift - np.log(total)[:, None]
        plus = x == np.inf  # +inf logits: the limit, 1 shared among them (NaN if several)
        many = plus.sum(axis=1, keepdims=True)
        limit = np.log(np.where(plus, np.where(many == 1, 1.0, np.nan), 0.0).astype(WIDE))
        log_p = np.where(many > 0, limit, log_p)
        log_p = np.where(np.isneginf(x).all(axis=1, keepdims=True), np.nan, log_p)
    onehot = np.zeros(x.shape, WIDE)
    spread = np.zeros(x.shape, WIDE)
    rows = np.arange(count)
    for a, b in spans:
        off = mistake == "boundary-off-by-one"  # claims (start, stop] instead of [start, stop)
        mine = (k > a) & (k <= b) if off else (k >= a) & (k < b)
        onehot[rows[mine], a + np.clip(k[mine] - a, 0, b - a - 1)] = 1
        spread[:, a:b] = WIDE(eps) / (b - a if mistake == "smoothing-over-local-v" else classes)
    return (1 - WIDE(eps)) * onehot + spread, log_p


def _loss(x, labels, shards, label_smoothing, mistake=None):
    weights, log_p = _weights_and_log_p(x, labels, shards, label_smoothing, mistake)
    with np.errstate(all="ignore"):
        terms = np.where(weights == 0, 0, weights * log_p)
        return _round_once(-terms.sum(axis=1), x)


def _grad(x, labels, cotangent, shards, label_smoothing, mistake=None):
    weights, log_p = _weights_and_log_p(x, labels, shards, label_smoothing, mistake)
    g = _widen(cotangent)[:, None]
    with np.errstate(all="ignore"):  # a zero cotangent weights even a NaN row by zero
        grad = np.exp(log_p) * weights.sum(axis=1, keepdims=True) - weights
        return _round_once(np.where(g == 0, 0, grad * g), x)


def vocab_parallel(x, labels, shards=1, label_smoothing=0.0):
    return _loss(x, labels, shards, label_smoothing)


def vocab_parallel_grad(x, labels, cotangent, shards=1, label_smoothing=0.0):
    return _grad(x, labels, cotangent, shards, label_smoothing)


def smoothing_over_local_v(x, labels, shards=1, label_smoothing=0.0):
    return _loss(x, labels, shards, label_smoothing, "smoothing-over-local-v")


def sum_reduced_twice(x, labels, shards=1, label_smoothing=0.0):
    return _loss(x, labels, shards, label_smoothing, "sum-reduced-twice")


def boundary_off_by_one(x, labels, shards=1, label_smoothing=0.0):
    return _loss(x, labels, shards, label_smoothing, "boundary-off-by-one")
