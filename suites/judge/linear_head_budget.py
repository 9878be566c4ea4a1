"""The error budget of ``linear_cross_entropy`` under the LLM head's options (temperature,
soft-capping, z-loss; ``reference.linear_head``): the linear op's logits with their error A_z
(``suites.judge.linear_budget``), transformed as ``suites.judge.head_budget`` allows.

The transformed logits ``t = cap tanh(z / (T cap))`` carry the transform's own error plus
A_z through its slope: ``A_t = dz(t) + s A_z`` (first order, s = dt/dz). The loss is the
sparse cross-entropy of t, ``u(|d_y| + sigma)``, plus ``sum_j p_j A_t_j + A_t_y`` and the
z-loss term's error (``head_budget.value_extra``). G = s (p (1 + 2 z L) - onehot) gets the
head's gradient rule (``head_budget.ce_gradient``) from the base ``u(p(|d| + sigma) + [j = y])
+ eta``; the products G W, G^T X, G^T 1 add what ``linear_budget.products`` adds.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from xentbench.reference import head
from xentbench.suites.judge import head_budget
from xentbench.suites.judge.budget import weighted
from xentbench.suites.judge.linear_budget import logit_terms, products
from xentbench.suites.judge.roundoff import sigma


def active(options: dict) -> bool:
    """Whether a linear call's options name any of the head's options."""
    return head.active(options)


def linear_head_scale(
    quantity: str, dtype, hidden: np.ndarray, labels: np.ndarray, options: dict
) -> np.ndarray:
    """A per output element of a linear_cross_entropy quantity under the head's options."""
    t = logit_terms(dtype, hidden, labels, options)
    u, rows = t.u, np.arange(len(t.x))
    with np.errstate(all="ignore"):
        h = head_budget.transform(t.z, options, u, (len(t.x),))
        h = dataclasses.replace(h, dz=h.dz + weighted(h.slope, t.a_z))
        onehot = np.zeros_like(h.p)
        onehot[rows, t.labels] = 1.0
        d = h.z - h.z.max(axis=1, keepdims=True)
        spread = sigma(t.w.shape[0])
        if quantity == "value":
            value = u * (np.abs(d[rows, t.labels]) + spread)
            value = value + head_budget.value_extra(h, onehot, "sparse_softmax_cross_entropy", u)
            return np.where(t.active, value, 0.0)
        base = u * (weighted(h.p, np.abs(d) + spread) + onehot) + t.eta
        a_g = head_budget.ce_gradient(h, onehot, base, u)
        g_z = h.p * (1 + 2 * h.z_loss * h.lse) - onehot
        return products(quantity, t, a_g, np.abs(h.slope * g_z))
