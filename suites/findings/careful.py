"""The careful kernel beside every failure: would an implementation with the budget's own
internals (``adapters.careful_adapter``) do better on the same input?

A failing evaluation is redrawn from its run's seed and case id (cases are deterministic from
``(seed, case id)``), with the case's call options, and the careful kernel is judged on it exactly
as the accuracy suite judged the implementation (``suites.judge.call.judge``). Its error /
allowance stands beside the implementation's: a ratio near 1 or above on finite input means the
budget, not the implementation, is wrong there.
"""

from __future__ import annotations

import ast
import math
from functools import lru_cache
from typing import Any

import numpy as np

from xentbench.adapters.base import Call
from xentbench.adapters.careful_adapter import BACKEND, CarefulAdapter, internal_dtype
from xentbench.reference.options import canonical
from xentbench.suites.accuracy.suite import case_exact, case_inputs, case_options
from xentbench.suites.catalog import cases
from xentbench.suites.findings.group import Finding
from xentbench.suites.judge.call import judge

_ADAPTER = CarefulAdapter()


@lru_cache(maxsize=4096)
def careful_ratio(op: str, case_id: str, dtype: str, seed: int, quantity: str) -> float:
    """The careful kernel's worst error / allowance on a catalog case: inf for a wrong kind
    (NaN, an infinity, a number for invalid input), NaN when it cannot be judged there (a
    hunted input, a call option it does not take, an unknown case)."""
    if op not in {impl.op for impl in _ADAPTER.implementations()}:
        return math.nan
    try:
        case = cases.find(case_id)
    except (KeyError, ValueError):
        return math.nan
    if dtype not in case.dtypes:
        return math.nan
    options = case_options(case_id, dtype, seed, quantity)
    implementation = _ADAPTER.implementation(f"{BACKEND}:{op}")
    call = Call(implementation, dtype, quantity=quantity, options=dict(options))
    if _ADAPTER.unsupported_reason(call) is not None:
        return math.nan
    logits, labels = case_inputs(case_id, dtype, seed)
    judged, _ = judge(_ADAPTER, call, logits, labels, case_exact(case_id, dtype, seed, quantity))
    return _ratio_of(judged)


def _ratio_of(judged: dict[str, Any]) -> float:
    """error / allowance of a judged call; a pass with nothing measured (raising on invalid
    input) is 0, an error (raising on valid input) NaN."""
    verdict, ratio = judged.get("verdict"), judged.get("worst_ratio")
    if verdict == "wrong":
        return math.inf
    if ratio is None or (isinstance(ratio, float) and math.isnan(ratio)):
        return 0.0 if verdict == "pass" else math.nan
    return float(ratio)


def redrawn_as_stored(row: dict[str, Any], seed: int) -> bool:
    """Whether the case redrawn today is the input the row was measured on: the exact value at
    the row's worst element equals its stored ``expected`` (a catalog changed since the run
    draws other numbers). A row without a worst element cannot be checked and is trusted."""
    index, expected = row.get("worst_index"), row.get("expected")
    if _missing(index) or not str(index) or _missing(expected):  # stored as None or NaN
        return True
    index = str(index)
    exact = case_exact(str(row["case_id"]), str(row["dtype"]), int(seed), str(row["quantity"]))
    if isinstance(exact, ValueError):
        return True
    try:
        at = float(np.asarray(exact.hi)[ast.literal_eval(index)])
    except (ValueError, SyntaxError, IndexError, TypeError):
        return False
    return at == float(expected) or (math.isnan(at) and math.isnan(float(expected)))


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def row_careful_ratio(row: dict[str, Any], seed: int) -> float:
    """The careful kernel's error / allowance on one stored evaluation's input: NaN for an
    evaluation the careful kernel cannot redo (``careful_ratio``) or whose case no longer
    draws the input it was measured on (``redrawn_as_stored``)."""
    op, case_id, dtype = str(row["op"]), str(row["case_id"]), str(row["dtype"])
    ratio = careful_ratio(op, case_id, dtype, int(seed), str(row["quantity"]))
    if math.isnan(ratio) or not redrawn_as_stored(row, seed) or _other_options(row, seed):
        return math.nan
    return ratio


def _other_options(row: dict[str, Any], seed: int) -> bool:
    """Whether the row was called with options beyond its case's own (values every call of a
    ``verify`` run passed): the careful kernel redoes the case's call, not that one."""
    stored = row.get("options")
    if not isinstance(stored, str):
        return False
    case = case_options(str(row["case_id"]), str(row["dtype"]), int(seed), str(row["quantity"]))
    return stored != canonical(case)


def internals_of(dtype: str) -> str:
    """The careful kernel's internal dtype for an output dtype, as a headline names it."""
    return internal_dtype(dtype).name


def _worst_dtype(finding: Finding) -> str:
    return finding.worst_case.rsplit(" ", 1)[-1] if finding.worst_case else finding.dtypes[0]


def careful_sentence(finding: Finding) -> str:
    """How the finding's implementation compares with the careful kernel on the same input."""
    ratio, careful, worst = finding.worst_ratio, finding.careful_ratio, finding.careful_worst_ratio
    internals = internals_of(_worst_dtype(finding))
    if math.isinf(worst):
        return "the careful kernel gets the wrong kind of number here too"
    if worst > 1:
        return (
            f"the careful kernel fails here too ({worst:.3g} x its allowance): "
            "the budget is wrong here"
        )
    if math.isnan(careful):
        return (
            "no careful-kernel comparison (a hunted input, or a case that draws other inputs today)"
        )
    if math.isinf(ratio) or math.isnan(ratio):
        return f"a careful {internals} kernel gets it right ({careful:.3g} x its allowance)"
    if careful == 0:
        return f"a careful {internals} kernel is exact on this input"
    return f"{ratio / careful:.3g} x the error of a careful {internals} kernel"


TRIAGE: tuple[str, ...] = ("catalogued", "confirmed", "unexplained")


def severity_key(finding: Finding) -> tuple:
    """Most severe first: the wrong kind of number (or an exception), then the worst error /
    allowance, then the number of evaluations; the id breaks ties."""
    ratio = finding.worst_ratio
    measured = -math.inf if math.isnan(ratio) else ratio
    return (-math.isinf(measured), -measured, -finding.evaluations, finding.id)


def triage(finding: Finding) -> str:
    """Where a finding stands: ``catalogued`` (a catalogue entry explains it), ``confirmed``
    (no entry, but the careful kernel passes on the same inputs where the implementation
    fails: a real loss against what a careful kernel achieves), else ``unexplained`` (no
    careful comparison, or the careful kernel fails too)."""
    if finding.klass != "defect?":
        return "catalogued"
    worst = finding.careful_worst_ratio
    return "confirmed" if not math.isnan(worst) and worst <= 1 else "unexplained"


def careful_cell(finding: Finding) -> str:
    """``careful_sentence`` in a table cell's few words."""
    ratio, careful, worst = finding.worst_ratio, finding.careful_ratio, finding.careful_worst_ratio
    if math.isinf(worst):
        return "wrong too"
    if worst > 1:
        return f"fails too ({worst:.3g}): budget wrong"
    if math.isnan(careful):
        return "—"
    if math.isinf(ratio) or math.isnan(ratio) or careful == 0:
        return f"passes ({careful:.2g})"
    return f"{ratio / careful:.3g}x ({careful:.2g})"
