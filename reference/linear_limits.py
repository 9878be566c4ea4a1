"""Non-finite inputs of ``linear_cross_entropy``: the logits and gradients they give, as limits.

Semantics (the edge semantics of ``reference.edges``, extended to the dot products that make
the logits):
- a logit z_ij = sum_k x_ik w_jk + b_j is NaN when a term is NaN (a NaN input in the row's or
  the class's dot product, a NaN bias), when a term is inf * 0, or when +inf and -inf terms
  meet; else +-inf when some term is infinite; else the exact finite dot product;
- the loss and G = softmax - onehot of a row then follow ``reference.edges`` (NaN row, +inf
  entries, masked -inf classes, an all -inf row);
- an ignored (padding) row takes no part: loss 0, G row 0, whatever its hidden holds;
- the gradients G W, G^T X, G^T 1 are sums of terms G_ij * v where an exact zero G_ij
  contributes 0 even against an infinite or NaN v (a masked class's p_ij = e^{z_ij} vanishes
  faster than the input that sends z_ij to -inf grows; an ignored row is not there); otherwise
  NaN terms, inf * nonzero and +inf meeting -inf follow IEEE arithmetic as above.
The finite part of every output stays exact: non-finite entries are zeroed before the exact
products, and the elements a non-finite term reaches are overwritten by its limit.
"""

from __future__ import annotations

import numpy as np

import xentbench.reference.edges as edges

SPARSE = "sparse_softmax_cross_entropy"


def finite_part(a: np.ndarray) -> np.ndarray:
    """``a`` with its non-finite entries set to 0 (their contribution is added as a limit)."""
    return np.where(np.isfinite(a), a, 0.0)


def extended_products(a: np.ndarray, b: np.ndarray, annihilate: bool) -> np.ndarray | None:
    """Where a @ b ([M, K] @ [K, P]) has a non-finite term: NaN, +inf or -inf there, 0 elsewhere.

    Counts of term kinds are indicator matrix products (exact: integers below 2^53). With
    ``annihilate`` an exact zero in ``a`` makes its terms 0 whatever ``b`` holds. None when no
    term is non-finite.
    """
    if np.isfinite(a).all() and np.isfinite(b).all():
        return None
    f = np.float64
    a_live = (a != 0) if annihilate else np.ones(a.shape, bool)
    nan = np.isnan(a).astype(f) @ np.ones(b.shape)
    nan += a_live.astype(f) @ np.isnan(b).astype(f)
    nan += np.isinf(a).astype(f) @ (b == 0).astype(f)
    if not annihilate:
        nan += (a == 0).astype(f) @ np.isinf(b).astype(f)
    plus, minus = _signed_infinite_terms(a, b)
    out = np.where(plus > 0, np.inf, 0.0)
    out = np.where(minus > 0, -np.inf, out)
    return np.where((nan > 0) | ((plus > 0) & (minus > 0)), np.nan, out)


def _signed_infinite_terms(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Counts (possibly double) of +inf and of -inf terms a_ik * b_kj per output element."""
    f = np.float64
    a_pos, a_neg, b_pos, b_neg = (a > 0).astype(f), (a < 0).astype(f), (b > 0), (b < 0)
    a_pinf, a_ninf = (a == np.inf).astype(f), (a == -np.inf).astype(f)
    b_pinf, b_ninf = (b == np.inf).astype(f), (b == -np.inf).astype(f)
    b_pos, b_neg = b_pos.astype(f), b_neg.astype(f)
    plus = a_pinf @ b_pos + a_ninf @ b_neg + a_pos @ b_pinf + a_neg @ b_ninf
    minus = a_pinf @ b_neg + a_ninf @ b_pos + a_pos @ b_ninf + a_neg @ b_pinf
    return plus, minus


def logit_limits(x: np.ndarray, w: np.ndarray, b: np.ndarray | None) -> np.ndarray | None:
    """The non-finite logits (NaN, +-inf; 0 where finite) of X W^T + b, or None if none."""
    bias = np.zeros(len(w)) if b is None else b
    limits = extended_products(x, w.T, annihilate=False)
    if limits is None and np.isfinite(bias).all():
        return None
    limits = np.zeros((len(x), len(w))) if limits is None else limits
    with np.errstate(invalid="ignore"):
        with_bias = limits + np.where(np.isfinite(bias), 0.0, bias)  # inf - inf: NaN
    return np.where(np.isnan(bias), np.nan, with_bias)


def edge_mask(limits: np.ndarray, active: np.ndarray) -> np.ndarray:
    """Active rows that ``reference.edges`` decides (NaN, +inf, all -inf), not the numeric path."""
    nonfinite = limits != 0
    return active & ~edges.regular_rows(SPARSE, "value", np.where(nonfinite, limits, 0.0), None)


def edge_terms(limits: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(loss [N], G [N, C]) by ``reference.edges`` on the logits' limits (finite ones as 0:
    in an edge row a finite logit's value never matters), exact."""
    with np.errstate(invalid="ignore", over="ignore"):
        loss = edges.edge_rows(SPARSE, "value", limits, labels)
        grad = edges.edge_rows(SPARSE, "grad", limits, labels)
    return loss, grad
