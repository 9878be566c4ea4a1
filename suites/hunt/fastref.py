"""The hunt's search oracle: the reference's own double-double path, without its proofs.

``reference.exact`` returns an output from its vectorised double-double path
(``reference.fast``) only where the error bound proves the float64 rounding, and sends the
rest to the ball-arithmetic definition (``reference.exact_arb``), ~1-50 ms a row. For
ranking candidates a value within that tiny bound (~2^-100 relative) is as good: near a
rounding boundary it can move the measured error by at most one ULP of float64. So the search
takes the double-double values as they are, and goes to the definition only for rows where they
are not accurate at the measured dtype's resolution: rows with terms e^d, -740 <= d < -650
(left out of the double-double sums, which they change by less than e^-650 relative: only
their own probabilities, below e^-650, are missing, and those round to 0 in every dtype but
float64), when measuring probabilities in float64; and rows with logits beyond 2^900.

Every row a hunt stores is judged again against ``reference.exact`` itself
(``suites.hunt.task``): this oracle only steers the search.
"""

from __future__ import annotations

import numpy as np

from reference import Exact, edges, exact, fast
from reference.evaluate import output_shape

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
        unusable = np.isnan(outputs.tail_hint).any(axis=1)
        probabilities = op == "softmax" or quantity == "grad"
        huge = (np.abs(np.where(np.isfinite(x[index]), x[index], 0.0)) >= fast.MAX_MAGNITUDE).any(
            axis=1
        )
        unusable = huge | (unusable & (dtype == "float64") & probabilities)
        if unusable.any():
            rows = index[unusable]
            redo = exact(op, logits[rows], None if labels is None else labels[rows], quantity)
            hi[rows], lo[rows] = redo.hi, redo.lo
    shape = output_shape(op, quantity, x.shape)
    return Exact(hi.reshape(shape), lo.reshape(shape))
