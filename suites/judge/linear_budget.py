"""The error budget of ``linear_cross_entropy``: the shifted cross-entropy's budget
(``suites.judge.budget``) with the logits' own error carried into the loss and the gradients.

A good implementation computes each logit as a dot product of length d (float32 accumulation
for 16-bit inputs, rounded to the dtype), then the shifted cross-entropy, then the gradients as
products of G = softmax - onehot with W (length C) and X (length N). With u the dtype's unit
roundoff, lambda and sigma as in ``budget.BUDGET_RULE``, and |.| products in float64:
  logits   A_z = u((lambda sqrt(d) + 1) sum_k |x_k w_jk| + |b_j| + |z_j|)
  value    A = u(|d_y| + sigma) + sum_j p_j A_z_j + A_z_y
  G        A_G = u(p_j(|d_j| + sigma) + [j = y]) + p_j (A_z_j + sum_l p_l A_z_l) + eta
  dX       A = A_G |W| + u(lambda sqrt(C) + 1) |G| |W|
  dW       A = A_G^T |X| + u(lambda sqrt(N) + 1) |G|^T |X|
  db       A = sum_i A_G + u(lambda sqrt(N) + 1) sum_i |G|
(Higham, Accuracy and Stability of Numerical Algorithms, 2nd ed., section 3.1 for the dot
products, with the probabilistic sqrt(n) of Higham & Mary 2019; first-order perturbation of
softmax: dp_j = p_j (dz_j - sum_l p_l dz_l); eta, the dtype's smallest subnormal, is gradual
underflow's absolute error on a probability, Higham section 2.1.) Padding rows have no error.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from xentbench.reference.dtypes import finfo, unit_roundoff
from xentbench.suites.judge.roundoff import LAMBDA, sigma

LINEAR_BUDGET_RULE = (
    "linear_cross_entropy: the logits carry A_z = u((lambda sqrt(d) + 1) sum_k |x_k w_jk| + "
    "|b_j| + |z_j|) (a dot product of length d, rounded to the dtype); the loss gets the "
    "sparse cross-entropy's allowance plus sum_j p_j A_z_j + A_z_y; G = softmax - onehot gets "
    "u(p_j(|d_j| + sigma) + [j = y]) + p_j(A_z_j + sum_l p_l A_z_l) + eta (the smallest "
    "subnormal: underflow); the gradients G W, "
    "G^T X and G^T 1 get A_G carried through |W|, |X| and 1 plus a product of length C or N: "
    "u(lambda sqrt(n) + 1) |G| |W| (or |X|, 1)."
)


def _growth(length: int) -> float:
    return LAMBDA * math.sqrt(length) + 1


@dataclass(frozen=True)
class LogitTerms:
    """The float64 logits of one linear call and their error bound A_z, for the budget only."""

    u: float
    eta: float
    x: np.ndarray
    w: np.ndarray
    labels: np.ndarray  # int64, 0 on padding rows
    active: np.ndarray  # rows that are not padding
    z: np.ndarray
    a_z: np.ndarray


def logit_terms(dtype, hidden: np.ndarray, labels: np.ndarray, options: dict) -> LogitTerms:
    """z = X W^T + b in float64 and A_z per element (the module docstring's first line)."""
    u, eta = unit_roundoff(dtype), float(finfo(dtype).smallest_subnormal)
    x = np.asarray(hidden).astype(np.float64)
    w = np.asarray(options["weight"]).astype(np.float64)
    b = options.get("bias")
    b = np.zeros(len(w)) if b is None else np.asarray(b).astype(np.float64)
    labels = np.asarray(labels).astype(np.int64)
    ignore = options.get("ignore_index")
    active = np.ones(len(labels), bool) if ignore is None else labels != int(ignore)
    with np.errstate(all="ignore"):
        z = x @ w.T + b
        a_z = u * (_growth(x.shape[1]) * (np.abs(x) @ np.abs(w).T) + np.abs(b) + np.abs(z))
    return LogitTerms(u, eta, x, w, np.where(active, labels, 0), active, z, a_z)


def products(quantity: str, t: LogitTerms, a_g: np.ndarray, g: np.ndarray) -> np.ndarray:
    """A of G W, G^T X or G^T 1 from G's error A_G and magnitude |G| (padding rows zeroed)."""
    a_g, g = a_g * t.active[:, None], g * t.active[:, None]
    u, x, w = t.u, t.x, t.w
    if quantity == "grad_hidden":
        return a_g @ np.abs(w) + u * _growth(w.shape[0]) * (g @ np.abs(w))
    if quantity == "grad_weight":
        return a_g.T @ np.abs(x) + u * _growth(len(x)) * (g.T @ np.abs(x))
    return a_g.sum(axis=0) + u * _growth(len(x)) * g.sum(axis=0)


def linear_error_scale(
    quantity: str, dtype, hidden: np.ndarray, labels: np.ndarray, options: dict
) -> np.ndarray:
    """A per output element of a linear_cross_entropy quantity (module docstring)."""
    t = logit_terms(dtype, hidden, labels, options)
    u, eta, a_z, labels = t.u, t.eta, t.a_z, t.labels
    with np.errstate(all="ignore"):
        d = t.z - t.z.max(axis=1, keepdims=True)
        p = np.exp(d)
        p /= p.sum(axis=1, keepdims=True)
        rows = np.arange(len(t.x))
        onehot = np.zeros_like(p)
        onehot[rows, labels] = 1.0
        spread = (p * a_z).sum(axis=1, keepdims=True)
        classes = t.w.shape[0]
        if quantity == "value":
            value = u * (np.abs(d[rows, labels]) + sigma(classes)) + spread[:, 0]
            return np.where(t.active, value + a_z[rows, labels], 0.0)
        a_g = u * (p * (np.abs(d) + sigma(classes)) + onehot) + p * (a_z + spread) + eta
        return products(quantity, t, a_g, np.abs(p - onehot))
