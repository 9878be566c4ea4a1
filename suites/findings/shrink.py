"""Shrinking a failing input to a few rows, classes and simple values, keeping its failure mode.

Delta debugging (Zeller & Hildebrandt, "Simplifying and isolating failure-inducing input",
IEEE TSE 28(2), 2002) over the rows, then over the classes, then value by value towards 0, a
power of two or an integer. Every candidate is judged from scratch: the exact value is recomputed
with ``reference.exact`` and the call judged by ``suites.judge.call.judge``, with the invariants
and the shift check of the accuracy suite, so a candidate is kept only if the same failure mode
appears on it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from adapters.base import Adapter, Call
from reference import exact as reference_exact
from suites.findings.modes import row_modes
from suites.judge import invariants, measure, shift
from suites.judge.call import judge

Test = Callable[[list[int]], bool]
# Inputs up to this many logits get their values simplified one by one.
MAX_SIMPLIFIED = 256


@dataclass
class Shrunk:
    """The shrunk input, how many candidates were judged, and the original size."""

    logits: np.ndarray
    labels: np.ndarray | None
    tries: int
    original_shape: tuple[int, ...]


def _exact(op: str, quantity: str, logits, labels):
    try:
        return reference_exact(op, logits, labels, quantity)
    except ValueError as exc:  # invalid input: raising is the right answer
        return exc


def shift_broken(adapter: Adapter, call: Call, logits, labels, got, exact) -> bool:
    """Whether the call on exactly shifted logits gives a different, failing result (as the
    accuracy suite's shift check decides)."""
    op, quantity, dtype = call.implementation.op, call.quantity, call.dtype
    if (op, quantity) not in shift.INVARIANT:
        return False
    shifts = shift.exact_shifts(logits, dtype)
    if not shifts.any():
        return False
    moved = shift.shifted_logits(logits, shifts)
    try:
        got_shifted = adapter.prepare(call, moved, labels)()
    except Exception:  # raising on one of two equivalent inputs breaks the invariant
        return True
    result = measure.evaluate(op, quantity, dtype, logits, labels, got_shifted, exact)
    same = [np.asarray(a).astype(np.float64) for a in (got, got_shifted)]
    return result.verdict != "pass" and not np.array_equal(*same, equal_nan=True)


def observe(adapter: Adapter, call: Call, logits: np.ndarray, labels) -> list[str]:
    """The failure modes of one call on one input, judged as the accuracy suite judges it."""
    op, quantity = call.implementation.op, call.quantity
    exact = _exact(op, quantity, logits, labels)
    judged, got = judge(adapter, call, logits, labels, exact)
    row = {**judged, "dtype": call.dtype}
    if got is not None and judged["verdict"] == "pass":
        failures = (
            invariants.invariant_failures(op, call.dtype, logits, labels, got)
            if quantity == "value"
            else []
        )
        if shift_broken(adapter, call, logits, labels, got, exact):
            failures.append("shift_invariance")
        row["invariant_failures"] = ",".join(failures)
    return row_modes(row)


def ddmin(items: list[int], test: Test, stop: Callable[[], bool] = lambda: False) -> list[int]:
    """A 1-minimal sublist of ``items`` on which ``test`` holds (``test(items)`` must hold);
    the smallest found so far once ``stop()`` says the budget is spent."""
    granularity = 2
    while len(items) >= 2 and not stop():
        size = math.ceil(len(items) / granularity)
        subsets = [items[i : i + size] for i in range(0, len(items), size)]
        reduced = next((subset for subset in subsets if not stop() and test(subset)), None)
        if reduced is not None:
            items, granularity = reduced, 2
            continue
        for subset in subsets:
            if stop():
                return items
            dropped = set(subset)
            complement = [i for i in items if i not in dropped]
            if test(complement):
                items, granularity = complement, max(granularity - 1, 2)
                break
        else:
            if granularity >= len(items):
                return items
            granularity = min(len(items), 2 * granularity)
    return items


def _take_classes(op: str, logits, labels, columns: list[int]):
    """The input restricted to ``columns`` (sparse labels renumbered), or None when a kept
    row's label class would be dropped."""
    x = logits[:, columns]
    if labels is None:
        return x, None
    if op != "sparse_softmax_cross_entropy":
        return x, labels[:, columns]
    n_classes, renumbered = logits.shape[-1], []
    for label in labels:
        if 0 <= label < n_classes:
            if label not in columns:
                return None
            renumbered.append(columns.index(label))
        else:  # an invalid id stays invalid by the same amount
            renumbered.append(label if label < 0 else len(columns) + (label - n_classes))
    return x, np.asarray(renumbered, dtype=labels.dtype)


def _simpler_values(value: float, dtype: np.dtype) -> list[float]:
    """Simpler stand-ins for one finite logit, simplest first, each exact in ``dtype``."""
    if not math.isfinite(value) or value == 0:
        return []
    power = math.copysign(2.0 ** math.floor(math.log2(abs(value))), value)
    candidates = [0.0, power, float(round(value)), math.copysign(1.0, value)]
    found = []
    for candidate in candidates:
        stored = float(np.asarray(candidate).astype(dtype).astype(np.float64))
        if stored == candidate and candidate != value and candidate not in found:
            found.append(candidate)
    return found


class Shrinker:
    """Shrinks one input of one call while ``mode`` stays among its failure modes."""

    def __init__(self, adapter: Adapter, call: Call, mode: str, max_tries: int, max_s: float):
        self.adapter, self.call, self.mode = adapter, call, mode
        self.op = call.implementation.op
        self.tries, self.max_tries = 0, max_tries
        self.deadline = time.monotonic() + max_s

    def keeps_mode(self, logits, labels) -> bool:
        if self.exhausted():
            return False
        self.tries += 1
        try:
            return self.mode in observe(self.adapter, self.call, logits, labels)
        except Exception:  # a candidate the harness cannot judge is not kept
            return False

    def shrink(self, logits: np.ndarray, labels) -> Shrunk:
        original = logits.shape
        rows = ddmin(
            list(range(logits.shape[0])),
            lambda keep: self.keeps_mode(logits[keep], None if labels is None else labels[keep]),
            self.exhausted,
        )
        logits, labels = logits[rows], None if labels is None else labels[rows]

        def classes_keep(columns: list[int]) -> bool:
            taken = _take_classes(self.op, logits, labels, columns)
            return taken is not None and self.keeps_mode(*taken)

        columns = ddmin(list(range(logits.shape[-1])), classes_keep, self.exhausted)
        logits, labels = _take_classes(self.op, logits, labels, columns)
        logits = self._simplify_values(logits, labels)
        return Shrunk(logits, labels, self.tries, original)

    def exhausted(self) -> bool:
        return self.tries >= self.max_tries or time.monotonic() > self.deadline

    def _simplify_values(self, logits: np.ndarray, labels) -> np.ndarray:
        """Each logit in turn replaced by the simplest stand-in that keeps the mode (inputs of
        at most ``MAX_SIMPLIFIED`` logits: beyond, the values are not what a reader reads)."""
        logits = logits.copy()
        if logits.size > MAX_SIMPLIFIED:
            return logits
        for index in np.ndindex(logits.shape):
            original = logits[index]
            for candidate in _simpler_values(float(original), logits.dtype):
                if self.exhausted():
                    return logits
                logits[index] = candidate
                if self.keeps_mode(logits, labels):
                    break
                logits[index] = original
        return logits


def shrink(
    adapter: Adapter,
    call: Call,
    mode: str,
    logits: np.ndarray,
    labels,
    max_tries: int = 400,
    max_s: float = 120.0,
) -> Shrunk:
    """The smallest input found that keeps ``mode`` (the input itself if it cannot shrink)."""
    logits = np.atleast_2d(logits)
    return Shrinker(adapter, call, mode, max_tries, max_s).shrink(logits, labels)
