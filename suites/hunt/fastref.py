"""The hunt's search oracle: the reference's own double-double path, without its proofs.

``reference.exact`` returns an output from its vectorised double-double path
(``reference.fast``) only where the error bound proves the float64 rounding, and sends the
rest to the ball-arithmetic definition (``reference.exact_arb``), ~1-50 ms a row. For
ranking candidates a value within that tiny bound (~2^-100 relative) is as good: near a
rounding boundary it can move the measured error by at most one ULP of float64. So the search
takes the double-double values as they are. Terms e^d with d < -650 are left out of its sums
(they change them by less than e^-650 relative) and their own probabilities left at 0, which
is how they round in every dtype but float64; for float64 probabilities (softmax and the
gradients) those down to d = -746 are filled in from exp of the exact shifted logit
(``_band_probabilities``). Rows with logits beyond 2^900 go to ``reference.exact``.

Checked against ``reference.exact`` on seeds and mutants of every softmax-family op in
float16, float32 and float64: returned as a result, the oracle's own rounded values are
judged at worst_ratio <= 1 (1: one subnormal ULP in float64), i.e. within the allowance.

Every row a hunt stores is judged again against ``reference.exact`` itself
(``suites.hunt.task``): this oracle only steers the search.
"""

from __future__ import annotations

import numpy as np

from xentbench.reference import Exact, edges, exact, fast
from xentbench.reference.dd import two_sum
from xentbench.reference.evaluate import output_shape

SIGMOID = "sigmoid_cross_entropy"


def search_exact(op: str, quantity: str, logits, labels, dtype: str) -> Exact:
    """The exact value of valid ``logits`` [B, C] (and labels) close enough to rank inputs
    measured in ``dtype``; ``reference.exact`` for the sigmoid op and where it is needed."""
    if op == SIGMOID or logits.ndim != 2:
        return exact(op, logits, labels, quantity)
    x = logits.astype(np.float64)
    y = (
        None
        if labels is None
        else labels
        if labels.dtype.kind in "iu"
        else labels.astype(np.float64)
    )
    regular = edges.regular_rows(op, quantity, x, y)
    with np.errstate(invalid="ignore", over="ignore"):
        hi = edges.edge_rows(op, quantity, x, y)
    lo = np.zeros_like(hi)
    index = np.flatnonzero(regular)
    if index.size:
        with np.errstate(all="ignore"):
            outputs = fast.softmax_family(op, quantity, x[index], None if y is None else y[index])
        hi[index], lo[index] = outputs.hi, outputs.lo
        finite = np.where(np.isfinite(x[index]), x[index], 0.0)
        huge = (np.abs(finite) >= fast.MAX_MAGNITUDE).any(axis=1)
        if dtype == "float64" and (op == "softmax" or quantity == "grad"):
            rows = index[~huge]
            hi[rows] = _band_probabilities(op, x[rows], None if y is None else y[rows], hi[rows])
        if huge.any():
            rows = index[huge]
            redo = exact(op, logits[rows], None if labels is None else labels[rows], quantity)
            hi[rows], lo[rows] = redo.hi, redo.lo
    shape = output_shape(op, quantity, x.shape)
    return Exact(hi.reshape(shape), lo.reshape(shape))


def _band_probabilities(op: str, x: np.ndarray, y, hi: np.ndarray) -> np.ndarray:
    """``hi`` with the probabilities e^d / S of the terms -746 <= d < -650 (which the
    double-double path leaves at 0; below -746 they round to 0) filled in: exp of the
    TwoSum-exact d, within a few ULPs of float64 (the allowance there: u p |d|, hundreds)."""
    if not len(x):
        return hi
    masked = np.isneginf(x)
    top = np.where(masked, -np.inf, x).max(axis=1, keepdims=True)
    d_hi, d_lo = two_sum(np.where(masked, top, x), np.broadcast_to(-top, x.shape))
    band = (d_hi < fast.LOW) & (d_hi >= fast.UNDERFLOW) & ~masked
    with np.errstate(all="ignore"):
        exps = np.where(masked, 0.0, np.exp(d_hi) * (1.0 + d_lo))
        p = exps / exps.sum(axis=1, keepdims=True)
    if op == "softmax_cross_entropy":  # grad p sum(y) - y: only where y_i = 0 is p all of it
        band &= y == 0
        p = p * y.sum(axis=1, keepdims=True)
    elif op == "sparse_softmax_cross_entropy":  # grad p - onehot: p itself off the label
        band[np.arange(len(x)), y] = False
    return np.where(band, p, hi)
