"""A kernel that takes ``label_smoothing`` and ignores it: the plain sparse loss, computed
carefully. Right whenever eps is 0, wrong for every other eps."""

from careful import sparse_cross_entropy as _plain


def sparse_cross_entropy(x, labels, label_smoothing=0.0):
    return _plain(x, labels)
