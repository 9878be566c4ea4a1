"""The accuracy suite: each (implementation, case, dtype, device, mode, quantity) -> a tidy row."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from adapters.base import Adapter, Call
from reference.cache import cached_exact
from suites.catalog import cases
from suites.catalog.selection import Selection
from suites.judge import invariants, measure, shift
from suites.judge.call import judge
from suites.store import key_of


@lru_cache(maxsize=64)
def case_inputs(case_id: str, dtype: str, seed: int):
    return cases.find(case_id).inputs(dtype, seed)


@lru_cache(maxsize=64)
def case_shifted(case_id: str, dtype: str, seed: int) -> tuple[np.ndarray, float] | None:
    """The case's logits shifted exactly per row (``suites.judge.shift``) and the largest
    shift, shared by every implementation of the case; None when no row has an exact shift."""
    logits, _ = case_inputs(case_id, dtype, seed)
    shifts = shift.exact_shifts(logits, dtype)
    if not shifts.any():
        return None
    return shift.shifted_logits(logits, shifts), float(np.abs(shifts).max())


@lru_cache(maxsize=128)
def case_exact(case_id: str, dtype: str, seed: int, quantity: str):
    """The exact result for a case's inputs, or the ValueError the reference raises on them."""
    logits, labels = case_inputs(case_id, dtype, seed)
    try:
        return cached_exact(cases.find(case_id).op, logits, labels, quantity)
    except ValueError as exc:
        return exc


def _max_abs_logit(logits: np.ndarray) -> float:
    values = np.abs(logits.astype(np.float64))
    finite = values[np.isfinite(values)]
    return float(finite.max()) if finite.size else math.nan


@dataclass
class AccuracyTask:
    """One evaluation of one implementation on one case."""

    adapter: Adapter
    call: Call
    case: cases.Case
    seed: int

    @property
    def key(self) -> tuple:
        return key_of("accuracy", self.template)

    @property
    def label(self) -> str:
        return (
            f"{self.call.implementation.name} {self.case.id} {self.call.dtype} {self.call.quantity}"
        )

    @property
    def template(self) -> dict[str, Any]:
        c = self.call
        return {
            "backend": self.adapter.name,
            "implementation": c.implementation.name,
            "op": c.implementation.op,
            "dtype": c.dtype,
            "device": c.device,
            "mode": c.mode,
            "quantity": c.quantity,
            "case_id": self.case.id,
            "family": self.case.family,
            "n_classes": self.case.classes,
            "source": "catalog",
        }

    def evaluate(self) -> dict[str, Any]:
        row = dict(self.template)
        logits, labels = case_inputs(self.case.id, self.call.dtype, self.seed)
        row["max_abs_logit"] = _max_abs_logit(logits)
        row["n_elements"] = int(logits.size)
        exact = case_exact(self.case.id, self.call.dtype, self.seed, self.call.quantity)
        judged, got = judge(self.adapter, self.call, logits, labels, exact)
        row.update(judged)
        if got is not None:
            row.update(self._invariants(logits, labels, got, exact))
        return row

    def _invariants(self, logits, labels, got, exact) -> dict[str, Any]:
        """The invariant columns of a measured result, shift invariance included."""
        op, quantity, dtype = self.call.implementation.op, self.call.quantity, self.call.dtype
        failures = (
            invariants.invariant_failures(op, dtype, logits, labels, got)
            if quantity == "value"
            else []
        )
        shift_columns, shift_broken = self._shift_check(logits, labels, got, exact)
        failures += ["shift_invariance"] if shift_broken else []
        return {**shift_columns, "invariant_failures": ",".join(failures)}

    def _shift_check(self, logits, labels, got, exact) -> tuple[dict[str, Any], bool]:
        """The same call on exactly shifted logits (``suites.judge.shift``), judged against the same
        exact value: (the shift columns, whether the invariant broke). It breaks when the
        output changes and the changed output leaves the budget, or when the call raises."""
        op, quantity, dtype = self.call.implementation.op, self.call.quantity, self.call.dtype
        columns = {"shift": math.nan, "shift_verdict": None, "shift_max_ulp_error": math.nan}
        shifted = None
        if (op, quantity) in shift.INVARIANT:
            shifted = case_shifted(self.case.id, dtype, self.seed)
        if shifted is None:
            return columns, False
        moved, columns["shift"] = shifted
        try:
            got_shifted = self.adapter.prepare(self.call, moved, labels)()
        except Exception:  # raising on one of two equivalent inputs breaks the invariant
            return {**columns, "shift_verdict": "error"}, True
        result = measure.evaluate(op, quantity, dtype, logits, labels, got_shifted, exact)
        columns["shift_verdict"] = result.verdict
        columns["shift_max_ulp_error"] = result.max_ulp_error
        same = [np.asarray(a).astype(np.float64) for a in (got, got_shifted)]
        return columns, result.verdict != "pass" and not np.array_equal(*same, equal_nan=True)


def plan_accuracy(adapter: Adapter, selection: Selection) -> list[AccuracyTask]:
    """Every task of ``selection`` for ``adapter``, cases in catalog order."""
    tasks = []
    implementations = [i for i in adapter.implementations() if selection.wants_implementation(i)]
    for case in cases.catalog():
        if case.op not in selection.ops or not selection.wants_case(case.id):
            continue
        for impl in implementations:
            if impl.op != case.op:
                continue
            for call in selection.calls(impl, impl.quantities):
                if call.dtype in case.dtypes:
                    tasks.append(AccuracyTask(adapter, call, case, selection.seed))
    return tasks
