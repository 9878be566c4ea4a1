"""Constants and helpers shared by the exact-reference tests (tests/test_reference_*.py)."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

from xentbench import reference

INF = math.inf
NAN = math.nan
SOFT_CE, SPARSE_CE = "softmax_cross_entropy", "sparse_softmax_cross_entropy"
SIGMOID_CE = "sigmoid_cross_entropy"
LINEAR_CE = "linear_cross_entropy"  # its inputs are not logits: tests/test_reference_linear.py
SOFTMAX_FAMILY = [
    (op, quantity)
    for op in reference.OPS
    if op not in (SIGMOID_CE, LINEAR_CE)
    for quantity in (("value", "grad") if op in reference.GRADIENT_OPS else ("value",))
]
FAMILY_IDS = [f"{op}-{quantity}" for op, quantity in SOFTMAX_FAMILY]


def _to_float(value: Fraction) -> float:
    try:
        return value.numerator / value.denominator  # int division rounds correctly
    except OverflowError:
        return INF if value > 0 else -INF


def _op_labels(op: str, soft: np.ndarray, sparse: np.ndarray) -> np.ndarray | None:
    return {SOFT_CE: soft, SPARSE_CE: sparse}.get(op)
