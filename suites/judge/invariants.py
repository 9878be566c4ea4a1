"""Invariants a value output must keep (shift invariance is in ``suites.judge.shift``).

They catch failures that need no exact reference (a softmax row not summing to 1, a negative
loss) and hold for every output within the error budget (``suites.judge.allowance``), whose
constants (``suites.judge.roundoff``) and ULPs (``suites.judge.ulps``) set their tolerances.
"""

from __future__ import annotations

import math

import numpy as np

from xentbench.reference.dtypes import finfo, unit_roundoff
from xentbench.reference.evaluate import output_shape
from xentbench.suites.judge.budget import labels64
from xentbench.suites.judge.roundoff import K, accumulation_roundoff, sigma


def sums_to_one_tolerance(dtype: str | np.dtype, n_classes: int) -> float:
    """How far a softmax row within budget can sum from 1: its elements' budgets added up.

    sum_i |p^_i - p_i| <= sum_i (ulp(p_i) + K*A_i), with ulp(p_i) <= 2u_out p_i + (smallest
    subnormal) and sum_i A_i = u_acc sum_i p_i (|d_i| + sigma) <= u_acc (ln C + sigma) by the
    entropy bound sum_i p_i |d_i| <= ln C.
    """
    u_out, tiny = unit_roundoff(dtype), float(finfo(dtype).smallest_subnormal)
    u_acc = accumulation_roundoff(dtype)
    return 2 * u_out + n_classes * tiny + K * u_acc * (math.log(n_classes) + sigma(n_classes))


def _argmax_kept(got: np.ndarray, logits: np.ndarray) -> np.ndarray:
    """Per row: some maximal logit's output is the row's largest output (ties allowed)."""
    at_max_logit = logits == logits.max(axis=-1, keepdims=True)
    largest = got == got.max(axis=-1, keepdims=True)
    return (at_max_logit & largest).any(axis=-1)


def _row_failures(op: str, dtype, x: np.ndarray, y, got: np.ndarray) -> list[str]:
    """Invariants of the softmax family on the rows whose inputs are all finite."""
    rows = np.isfinite(x).all(axis=-1)
    if op == "softmax_cross_entropy":  # the loss is >= 0 only on rows of labels >= 0
        rows &= np.isfinite(y).all(axis=-1) & (y >= 0).all(axis=-1)
    x, got = x[rows], got[rows]
    failures = []
    if op == "softmax":
        total = got.sum(axis=-1)
        if not (np.abs(total - 1) <= sums_to_one_tolerance(dtype, x.shape[-1])).all():
            failures.append("sums_to_one")
    if op in ("softmax", "log_softmax") and not _argmax_kept(got, x).all():
        failures.append("argmax_preserved")
    if op == "log_softmax" and not (got <= 0).all():
        failures.append("log_softmax_nonpositive")
    if op.endswith("cross_entropy") and not (got >= 0).all():
        failures.append("nonnegative_loss")
    return failures


def invariant_failures(
    op: str, dtype: str | np.dtype, logits: np.ndarray, labels: np.ndarray | None, got: np.ndarray
) -> list[str]:
    """Names of the invariants a value output breaks on rows of finite inputs; [] if none.

    sums_to_one (softmax, within ``sums_to_one_tolerance``), argmax_preserved (softmax and
    log_softmax), log_softmax_nonpositive, and nonnegative_loss (cross-entropies with labels
    >= 0, sigmoid targets in [0, 1]). The last two hold exactly for the shifted algorithms,
    whose terms (log s >= 0, -d_i >= 0) round without changing sign, so they get no tolerance.
    NaN on finite inputs breaks them all. A result of the wrong shape is left to the verdict.
    """
    x, got = np.asarray(logits).astype(np.float64), np.asarray(got).astype(np.float64)
    y = labels64(op, labels)
    if got.shape != output_shape(op, "value", x.shape):
        return []
    if op == "sigmoid_cross_entropy":
        keep = np.isfinite(x) & np.isfinite(y) & (y >= 0) & (y <= 1)
        return [] if (got[keep] >= 0).all() else ["nonnegative_loss"]
    return _row_failures(op, dtype, x, y, got)
