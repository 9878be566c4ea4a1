"""Ground truth: exact (arbitrary-precision) softmax, cross-entropies and their gradients.

Every function takes NumPy arrays of any float dtype (values taken exactly as given; the last
axis is the class axis) and returns float64, correctly rounded (within 0.5 ULP of the true
value). ``exact(...)`` also returns the residual beyond float64, for measuring float64
implementations in ULPs, and rounds correctly to narrower dtypes. No framework is imported.
"""

from __future__ import annotations

import numpy as np

from xentbench.reference.evaluate import GRADIENT_OPS, OPS, Exact, exact

__all__ = [
    "GRADIENT_OPS",
    "OPS",
    "Exact",
    "exact",
    "log_softmax",
    "logsumexp",
    "logsumexp_grad",
    "sigmoid_cross_entropy",
    "sigmoid_cross_entropy_grad",
    "softmax",
    "softmax_cross_entropy",
    "softmax_cross_entropy_grad",
    "sparse_softmax_cross_entropy",
    "sparse_softmax_cross_entropy_grad",
]


def softmax(logits: np.ndarray) -> np.ndarray:
    """exp(x_i) / sum_j exp(x_j) over the last axis; shape [..., C]."""
    return exact("softmax", logits).hi


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """x_i - logsumexp(x) over the last axis; shape [..., C]."""
    return exact("log_softmax", logits).hi


def logsumexp(logits: np.ndarray) -> np.ndarray:
    """log(sum_j exp(x_j)) over the last axis; shape [...]."""
    return exact("logsumexp", logits).hi


def logsumexp_grad(logits: np.ndarray) -> np.ndarray:
    """Gradient of sum(logsumexp(x)): softmax(x); shape [..., C]."""
    return exact("logsumexp", logits, quantity="grad").hi


def softmax_cross_entropy(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """-sum_i y_i log softmax(x)_i with soft labels y of the logits' shape; shape [...]."""
    return exact("softmax_cross_entropy", logits, labels).hi


def softmax_cross_entropy_grad(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Gradient w.r.t. logits of the summed loss: softmax(x) * sum(y) - y; shape [..., C]."""
    return exact("softmax_cross_entropy", logits, labels, quantity="grad").hi


def sparse_softmax_cross_entropy(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """-log softmax(x)_k for integer class ids k in [0, C); shape [...]."""
    return exact("sparse_softmax_cross_entropy", logits, labels).hi


def sparse_softmax_cross_entropy_grad(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Gradient w.r.t. logits of the summed loss: softmax(x) - onehot(k); shape [..., C]."""
    return exact("sparse_softmax_cross_entropy", logits, labels, quantity="grad").hi


def sigmoid_cross_entropy(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Elementwise -z log sigmoid(x) - (1 - z) log(1 - sigmoid(x)); same shape."""
    return exact("sigmoid_cross_entropy", logits, labels).hi


def sigmoid_cross_entropy_grad(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Elementwise gradient sigmoid(x) - z; same shape."""
    return exact("sigmoid_cross_entropy", logits, labels, quantity="grad").hi
