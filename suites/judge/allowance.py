"""A call's allowance per output element, built in one pass (``call_allowance``).

First the base op's A, the shifted algorithm's error bound with the internals' unit roundoff
(``suites.judge.budget``; the linear op's in ``suites.judge.linear_budget``); with options,
that A carried through each of them (``suites.judge.option_budget``); last the conversion to
the output dtype: the allowance ``ulp_out(t) + K*A`` and the ULP ruler figures use
(``BUDGET_RULE``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from xentbench.reference.dtypes import finfo, numpy_dtype
from xentbench.reference.evaluate import GRADIENT_OPS, LINEAR_OP
from xentbench.suites.judge.budget import Output, addends, error_scale
from xentbench.suites.judge.linear_head_budget import active as head_active
from xentbench.suites.judge.linear_head_budget import linear_head_scale
from xentbench.suites.judge.option_budget import option_scale
from xentbench.suites.judge.roundoff import K, accumulation_roundoff
from xentbench.suites.judge.ulps import spacing, truth_in, ulp_at


@dataclass(frozen=True)
class Allowance:
    """Per output element: the allowance |got - t| may reach, and the ULP ruler figures use."""

    absolute: np.ndarray  # ulp_out(t) + K*A(u_acc); NaN where the truth is not finite
    ruler: np.ndarray  # max(ulp_out(t), ulp_out(R)/2); NaN where the truth is not finite

    @property
    def in_ulps(self) -> np.ndarray:
        with np.errstate(invalid="ignore", over="ignore"):
            return self.absolute / self.ruler


def call_allowance(output: Output, options: dict[str, Any] | None = None) -> Allowance:
    """The allowance of one call's outputs (BUDGET_RULE): the base op's A, carried through the
    call's options where it has any, in the output dtype's ULPs.

    The plain ops' value and gradient take A from ``error_scale`` (the linear op's with its
    weight and bias from ``options``), and their ruler's floor from the magnitude R of their
    addends; with options, or for a derivative only the options family defines (a VJP of
    softmax, any JVP), A is ``option_scale``'s and the ULP at t rules.
    """
    options = options or {}
    op, quantity = output.op, output.quantity
    plain = quantity == "value" or (quantity == "grad" and op in GRADIENT_OPS)
    if op != LINEAR_OP and (options or not plain):
        scale = option_scale(output, options)
        magnitudes = np.full(np.shape(output.exact.hi), np.nan)
    elif op == LINEAR_OP and head_active(options):  # suites.judge.linear_head_budget
        args = (output.quantity, output.dtype, output.logits, output.labels, options)
        scale, magnitudes = linear_head_scale(*args), np.full(np.shape(output.exact.hi), np.nan)
    else:
        scale, magnitudes = error_scale(output, options), addends(output)
    return _in_output_dtype(output, scale, magnitudes)


def _in_output_dtype(output: Output, scale: np.ndarray, magnitudes: np.ndarray) -> Allowance:
    """A as an allowance in the output dtype, ulp_out(t) + K*A, and its ULP ruler: never finer
    than half an ULP at the addends' magnitude R (NaN: no floor)."""
    dtype = numpy_dtype(output.dtype)
    truth = truth_in(output.exact, dtype)
    ulp = ulp_at(truth, dtype)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        absolute = ulp + K * scale
        floor = spacing(magnitudes, dtype) / 2
        # A zero or subnormal truth whose addends are zero too (log_softmax of one class):
        # half an ULP at A/u_acc, the first-order magnitude of what the algorithm rounded.
        tiny = np.abs(truth) < float(finfo(dtype).smallest_normal)
        rounded = spacing(scale / accumulation_roundoff(dtype), dtype) / 2
        floor = np.fmax(floor, np.where(tiny, rounded, np.nan))
    ruler = np.where(np.isnan(ulp), np.nan, np.fmax(ulp, floor))
    return Allowance(absolute, ruler)
