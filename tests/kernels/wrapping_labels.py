"""A flawed sparse cross-entropy: class ids index the row as NumPy does, so -1 silently picks the
last class instead of being refused; the arithmetic itself is careful."""

import numpy as np
from careful import _log_softmax_and_p, _round_once, _widen


def sparse_cross_entropy(x, labels):
    log_p, _ = _log_softmax_and_p(_widen(x))
    return _round_once(-log_p[np.arange(x.shape[0]), np.asarray(labels)], x)
