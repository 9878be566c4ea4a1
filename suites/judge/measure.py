"""The measurement of one returned result against the exact value, element by element.

An output element is measured against the exact value ``t = hi + lo`` of ``reference.exact``
in ULPs of the *output* dtype (``suites.judge.ulps``), classified as a non-finite match or
mismatch, and judged against its allowance (``suites.judge.allowance``). ``evaluate`` turns one
result into an ``Evaluation`` whose fields are columns of the accuracy results schema.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from xentbench.reference import Exact
from xentbench.reference.dtypes import numpy_dtype
from xentbench.reference.evaluate import OPS
from xentbench.suites.judge.allowance import call_allowance
from xentbench.suites.judge.budget import Output
from xentbench.suites.judge.ulps import (
    absolute_errors,
    nonfinite_mismatches,
    relative,
    truth_in,
)
from xentbench.suites.judge.verdicts import accuracy_tier, verdict_for_result

# ------------------------------------------------------------------------------ evaluation

# Ops whose value is a log-probability, a log-normaliser or a loss: numbers in nats, whose
# error users also read in nats (a trainer's and a generator's log-probs, ``nats_error``).
# Every op but the softmax, whose values are probabilities.
NATS_OPS: tuple[str, ...] = tuple(op for op in OPS if op != "softmax")


@dataclass(frozen=True)
class Evaluation:
    """One (implementation, case, dtype, quantity) result, as accuracy-schema columns.

    ``worst_ratio`` is THE error measure (max over elements of error / allowance); the columns
    after it describe that same element, so a reader sees why the verdict is what it is.
    """

    verdict: str
    tier: str  # ACCURACY_TIERS: correctly rounded, faithful, within budget, over budget, wrong
    worst_ratio: float  # max over elements of error / allowance; inf for a wrong-kind element
    ulp_error: float  # at the worst element, in ULPs of the output dtype (BUDGET_RULE ruler)
    abs_error: float  # |got - t| there
    allowance: float  # the allowance there (absolute)
    budget_ulps: float  # the allowance there in the same ULPs as ulp_error
    max_ulp_error: float  # over all elements (the tier's measure)
    mean_ulp_error: float
    max_rel_error: float
    nonfinite_mismatches: int
    worst_index: str  # e.g. "(0, 3)"; "" when no element could be compared
    expected: float  # the exact value (hi) at the worst element
    got: float  # the returned value there
    worst_input: str = ""  # the inputs behind the worst element
    message: str = ""
    # The largest |got - t| over the elements of a value in nats (NATS_OPS): the worst element
    # in nats, not necessarily worst_ratio's; inf for a non-finite mismatch; NaN for other
    # outputs (probabilities, derivatives) and where nothing could be compared.
    nats_error: float = math.nan

    def as_row(self) -> dict[str, Any]:
        """The fields keyed by their accuracy-schema column names."""
        return dataclasses.asdict(self)


def _nan_stat(reduce, values: np.ndarray) -> float:
    finite = values[~np.isnan(values)]
    return float(reduce(finite)) if finite.size else math.nan


def nats_error(op: str, quantity: str, absolute: np.ndarray, mismatch: np.ndarray) -> float:
    """The largest absolute error of a value in nats (``Evaluation.nats_error``); ``absolute``
    is |got - t| per element (NaN where either is not finite)."""
    if quantity != "value" or op not in NATS_OPS:
        return math.nan
    return math.inf if mismatch.any() else _nan_stat(np.max, absolute)


def _worst(mismatch: np.ndarray, ratio: np.ndarray) -> int | None:
    """Flat index of the first non-finite mismatch, else of the largest error/budget ratio."""
    if mismatch.any():
        return int(np.flatnonzero(mismatch)[0])
    return None if np.isnan(ratio).all() else int(np.nanargmax(ratio))


def _describe_input(op: str, logits, labels, index: tuple[int, ...], elementwise: bool) -> str:
    """The inputs behind one output element, short enough for a report cell."""
    x = np.asarray(logits).astype(np.float64)
    if op == "sigmoid_cross_entropy":
        return f"x={float(x[index])!r}, z={float(np.asarray(labels)[index])!r}"
    row = index[:-1] if elementwise else index
    text = f"C={x.shape[-1]}, max(x)={float(x[row].max())!r}, min(x)={float(x[row].min())!r}"
    if elementwise:
        text += f", x_i={float(x[index])!r}"
    if op == "sparse_softmax_cross_entropy":
        k = int(np.asarray(labels)[row])
        text += f", label={k}, x_label={float(x[(*row, k)])!r}"
    return text


def _failed_shape(got: np.ndarray, exact: Exact) -> Evaluation:
    nan = math.nan
    message = f"output shape {got.shape}, expected {exact.hi.shape}"
    return Evaluation("wrong", "wrong", math.inf, nan, nan, nan, nan, nan, nan, nan, 0, "",
                      nan, nan, "", message)  # fmt: skip


def _describe(op, quantity, logits, labels, index, elementwise, options) -> str:
    """``_describe_input``, or for the linear op the shapes and the element's row or class."""
    if op != "linear_cross_entropy":
        return _describe_input(op, logits, labels, index, elementwise)
    classes, hidden = np.shape((options or {}).get("weight", np.empty((0, 0))))
    where = f"class {index[0]}" if quantity in ("grad_weight", "grad_bias") else f"row {index[0]}"
    label = "" if where.startswith("class") else f", label={int(np.asarray(labels)[index[0]])}"
    return f"N={len(logits)}, d={hidden}, C={classes}, {where}{label}"


def evaluate(
    op: str,
    quantity: str,
    dtype: str,
    logits: np.ndarray,
    labels: np.ndarray | None,
    got: np.ndarray,
    exact: Exact,
    options: dict[str, Any] | None = None,
) -> Evaluation:
    """Measure ``got`` against ``exact``: error / allowance per element (``BUDGET_RULE``), the
    verdict from its maximum, and the worst element's figures.

    ``options`` are the call's (the linear op's weight and bias feed its budget). A result of
    another dtype is converted to float64 and measured in ULPs of the requested
    dtype; the message says what was returned.
    """
    got = np.asarray(got)
    if got.shape != exact.hi.shape:
        return _failed_shape(got, exact)
    requested = numpy_dtype(dtype)
    got64, truth = got.astype(np.float64), truth_in(exact, requested)
    absolute = absolute_errors(got64, exact)
    allowed = call_allowance(Output(op, quantity, requested, logits, labels, exact), options)
    mismatch = nonfinite_mismatches(got64, truth)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        errors = absolute / allowed.ruler
        ratio = absolute / allowed.absolute
    worst = _worst(mismatch, ratio)
    index = () if worst is None else tuple(int(i) for i in np.unravel_index(worst, got.shape))
    at = (lambda a: math.nan) if worst is None else (lambda a: float(np.asarray(a).flat[worst]))
    elementwise = exact.hi.ndim == np.ndim(logits)
    verdict = verdict_for_result(int(mismatch.sum()), int(np.sum(ratio > 1)))
    max_ulps = _nan_stat(np.max, errors)
    return Evaluation(
        verdict=verdict,
        tier=accuracy_tier(verdict, max_ulps),
        worst_ratio=math.inf if mismatch.any() else _nan_stat(np.max, ratio),
        ulp_error=at(errors),
        abs_error=at(absolute),
        allowance=at(allowed.absolute),
        budget_ulps=at(allowed.in_ulps),
        max_ulp_error=max_ulps,
        mean_ulp_error=_nan_stat(np.mean, errors),
        max_rel_error=_nan_stat(np.max, relative(absolute, exact)),
        nonfinite_mismatches=int(mismatch.sum()),
        worst_index="" if worst is None else str(index),
        expected=at(exact.hi),
        got=at(got64),
        worst_input=""
        if worst is None or (options and op != "linear_cross_entropy")
        else _describe(op, quantity, logits, labels, index, elementwise, options),
        message="" if got.dtype == requested else f"returned {got.dtype} for {requested.name}",
        nats_error=nats_error(op, quantity, absolute, mismatch),
    )
