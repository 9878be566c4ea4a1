"""Edge semantics: the value of every op on rows with NaN, +inf or only -inf, taken as limits.

Conventions (ARCHITECTURE.md, "Edge semantics"):
- NaN anywhere in a row's logits, or a non-finite label, makes every output of the row NaN.
- A -inf logit is a masked class: it has probability 0; a label of 0 on it contributes 0 to
  the loss, a positive label +inf (a negative label -inf; opposite signs give NaN).
- A row of only -inf has no softmax: logsumexp is -inf (log 0), every other output is NaN.
- +inf logits are limits x_k -> +inf taken independently: with one +inf entry softmax is the
  one-hot vector on it; with several, the split between them depends on the path, so outputs
  that depend on it are NaN, while those that do not (finite entries' probability 0,
  logsumexp = +inf) keep their limit.

Rows handled here are exact (a float with no residual); the other rows are "regular": finite
or -inf logits with at least one finite entry, finite labels, and (for the soft
cross-entropy value) no nonzero label on a masked class.
"""

from __future__ import annotations

import numpy as np

NAN = np.nan
INF = np.inf


def regular_rows(
    op: str, quantity: str, logits: np.ndarray, labels: np.ndarray | None
) -> np.ndarray:
    """Boolean mask over rows of a 2-D ``logits`` whose outputs the numeric paths compute."""
    regular = ~np.isnan(logits).any(axis=1)
    regular &= ~(logits == INF).any(axis=1)
    regular &= ~(logits == -INF).all(axis=1)
    if op == "softmax_cross_entropy":
        regular &= np.isfinite(labels).all(axis=1)
        if quantity == "value":
            regular &= ~((logits == -INF) & (labels != 0)).any(axis=1)
    return regular


def _signed_infinity_sum(weights: np.ndarray, active: np.ndarray) -> np.ndarray:
    """Sum over a row of weight * (+inf) for active entries: +inf, -inf, NaN (mixed) or 0 (none)."""
    positive = (active & (weights > 0)).any(axis=1)
    negative = (active & (weights < 0)).any(axis=1)
    return np.where(
        positive & negative, NAN, np.where(positive, INF, np.where(negative, -INF, 0.0))
    )


def _softmax_limit(logits: np.ndarray) -> np.ndarray:
    """Limit of softmax on rows containing +inf: one-hot for a single +inf, NaN split otherwise."""
    plus = logits == INF
    single = plus.sum(axis=1, keepdims=True) == 1
    return np.where(plus, np.where(single, 1.0, NAN), 0.0)


def edge_rows(op: str, quantity: str, logits: np.ndarray, labels: np.ndarray | None) -> np.ndarray:
    """Outputs (float64, exact) for every row, meaningful where ``regular_rows`` is False."""
    nan_row = np.isnan(logits).any(axis=1, keepdims=True)
    if op == "softmax_cross_entropy":
        nan_row |= ~np.isfinite(labels).all(axis=1, keepdims=True)
    all_masked = (logits == -INF).all(axis=1, keepdims=True)
    plus = logits == INF
    single = plus.sum(axis=1, keepdims=True) == 1
    probabilities = _softmax_limit(logits)

    if op == "logsumexp" and quantity == "value":
        out = np.where(plus.any(axis=1, keepdims=True), INF, -INF)[:, 0]
    elif op in ("softmax", "logsumexp"):
        out = probabilities
    elif op == "log_softmax":
        out = np.where(plus, np.where(single, 0.0, NAN), -INF)
    elif op == "sparse_softmax_cross_entropy":
        rows = np.arange(len(logits))
        label_plus = plus[rows, labels]
        if quantity == "value":
            out = np.where(label_plus, np.where(single[:, 0], 0.0, NAN), INF)
        else:
            out = probabilities.copy()
            out[rows, labels] -= 1.0
    elif quantity == "value":  # softmax_cross_entropy: sum of y_i * (L - x_i)
        # Infinite terms: every non-+inf entry once L = +inf, else only the masked entries.
        infinite = np.where(plus.any(axis=1, keepdims=True), ~plus, logits == -INF)
        out = _signed_infinity_sum(labels, infinite & (labels != 0))
        out = np.where((plus & ~single & (labels != 0)).any(axis=1), NAN, out)
    else:
        out = labels.sum(axis=1, keepdims=True) * probabilities - labels
    keep_nan = nan_row[:, 0] if out.ndim == 1 else nan_row
    if not (op == "logsumexp" and quantity == "value"):
        out = np.where(all_masked[:, 0] if out.ndim == 1 else all_masked, NAN, out)
    return np.where(keep_nan, NAN, out)


def sigmoid_regular(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    return np.isfinite(logits) & np.isfinite(labels)


def sigmoid_edges(
    quantity: str, logits: np.ndarray, labels: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``(hi, lo)`` of sigmoid cross-entropy at infinite logits (limits) or NaN anywhere.

    loss = z * softplus(-x) + (1 - z) * softplus(x): as x -> +inf it tends to (1 - z) * inf,
    as x -> -inf to z * inf (0 when the coefficient is 0). The gradient sigmoid(x) - z tends
    to 1 - z and -z; ``1 - z`` may need a residual, given exactly by TwoSum.
    """
    with np.errstate(invalid="ignore"):
        if quantity == "value":
            weight = np.where(logits > 0, 1.0 - labels, labels)
            hi = np.where(weight > 0, INF, np.where(weight < 0, -INF, 0.0))
            lo = np.zeros_like(hi)
        else:
            hi = np.where(logits > 0, 1.0 - labels, -labels)
            virtual = hi - 1.0
            lo = np.where(logits > 0, (1.0 - (hi - virtual)) + (-labels - virtual), 0.0)
        bad = np.isnan(logits) | ~np.isfinite(labels)
    return np.where(bad, NAN, hi), np.where(bad | ~np.isfinite(hi), 0.0, lo)
