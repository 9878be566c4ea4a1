"""Kernels that do not return an answer: one raises, one hangs, one returns a list, one the
wrong shape, one the wrong dtype (softmax signatures)."""

import time

import numpy as np


def raises(x):
    raise RuntimeError("kernel not built for this GPU")


def hangs(x):
    while True:
        time.sleep(0.05)


def returns_list(x):
    return np.zeros_like(x).tolist()


def wrong_shape(x):
    return np.ones(x.shape[:-1], dtype=x.dtype)


def wrong_dtype(x):
    exps = np.exp(x.astype(np.float64) - x.astype(np.float64).max(axis=-1, keepdims=True))
    return exps / exps.sum(axis=-1, keepdims=True)
