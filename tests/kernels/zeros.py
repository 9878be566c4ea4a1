"""A flawed kernel: returns zeros (what a weak allclose check with atol 1e-2 can pass)."""

import numpy as np


def softmax(x):
    return np.zeros_like(x)
