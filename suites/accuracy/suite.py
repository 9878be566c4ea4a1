"""The accuracy suite: each (implementation, case, dtype, device, mode, quantity) -> a tidy row."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from xentbench.adapters.base import Adapter, Call
from xentbench.reference.cache import cached_exact
from xentbench.reference.options import canonical
from xentbench.suites.catalog import cases
from xentbench.suites.catalog.selection import Selection
from xentbench.suites.judge import invariants, measure, shift
from xentbench.suites.judge.call import call_columns, judge
from xentbench.suites.store.schema import key_of


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


@lru_cache(maxsize=64)
def case_options(case_id: str, dtype: str, seed: int, quantity: str) -> dict[str, Any]:
    """The case's call options for ``quantity`` (the options family's, the linear op's
    weight, bias and ignore_index; empty otherwise)."""
    return cases.find(case_id).call_options(dtype, seed, quantity)


@lru_cache(maxsize=128)
def case_exact(case_id: str, dtype: str, seed: int, quantity: str, fixed: tuple = ()):
    """The exact result for a case's inputs, or the ValueError the reference raises on them;
    ``fixed``: (name, scalar) call options beneath the case's own (``Selection.options``)."""
    logits, labels = case_inputs(case_id, dtype, seed)
    options = {**dict(fixed), **case_options(case_id, dtype, seed, quantity)}
    try:
        return cached_exact(cases.find(case_id).op, logits, labels, quantity, options=options)
    except ValueError as exc:
        return exc


def _max_abs_logit(logits: np.ndarray, options: dict[str, Any]) -> float:
    values = np.abs(logits.astype(np.float64))
    if "weight" in options:  # the linear op: the logits hidden @ weight.T (+ bias)
        values = np.abs(values @ np.asarray(options["weight"]).astype(np.float64).T)
        values += np.abs(np.asarray(options.get("bias", 0.0)).astype(np.float64))
    finite = values[np.isfinite(values)]
    return float(finite.max()) if finite.size else math.nan


@dataclass
class AccuracyTask:
    """One evaluation of one implementation on one case."""

    adapter: Adapter
    call: Call
    case: cases.Case
    seed: int
    fixed: tuple = ()  # the selection's call options beneath the case's (``Selection.options``)

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
        return {
            **call_columns(self.adapter, self.call),
            "case_id": self.case.id,
            "family": self.case.family,
            "n_classes": self.case.classes,
            "options": canonical(self.call.options),
            "source": "catalog",
        }

    def evaluate(self) -> dict[str, Any]:
        row = dict(self.template)
        logits, labels = case_inputs(self.case.id, self.call.dtype, self.seed)
        options = self.call.options  # the case's, set when planned
        row["max_abs_logit"] = _max_abs_logit(logits, options)
        linear = "weight" in options  # hidden [N, d] stands for the logits [N, C]
        row["n_elements"] = len(logits) * self.case.classes if linear else int(logits.size)
        exact = case_exact(self.case.id, self.call.dtype, self.seed, self.call.quantity, self.fixed)
        judged, got = judge(self.adapter, self.call, logits, labels, exact)
        row.update(judged)
        if got is not None and not self.case.options and not self.fixed:  # the plain ops
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
                if call.quantity == "grad_bias" and not case.bias:
                    continue  # a case without a bias has no bias gradient
                if call.dtype in case.dtypes and call.quantity in case.evaluated_quantities:
                    options = case_options(case.id, call.dtype, selection.seed, call.quantity)
                    options = {**dict(selection.options), **options}
                    if options.get("shards", 1) > case.classes:
                        continue  # a given shard count this case's classes cannot hold
                    call = dataclasses.replace(call, options=options)
                    tasks.append(
                        AccuracyTask(adapter, call, case, selection.seed, selection.options)
                    )
    return tasks
