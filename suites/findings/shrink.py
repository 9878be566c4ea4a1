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
from dataclasses import dataclass, replace

import numpy as np

from xentbench.adapters.base import Adapter, Call
from xentbench.reference import exact as reference_exact
from xentbench.reference.evaluate import LINEAR_OP
from xentbench.suites.findings import slicing
from xentbench.suites.findings.modes import row_modes
from xentbench.suites.findings.slicing import Input
from xentbench.suites.judge import invariants, measure, shift
from xentbench.suites.judge.call import judge

Test = Callable[[list[int]], bool]
# Inputs up to this many logits get their values simplified one by one.
MAX_SIMPLIFIED = 256


@dataclass
class Shrunk:
    """The shrunk input, how many candidates were judged, and the original size."""

    item: Input
    tries: int
    original_shape: tuple[int, ...]

    @property
    def logits(self) -> np.ndarray:
        return self.item.logits

    @property
    def labels(self) -> np.ndarray | None:
        return self.item.labels


def _exact(op: str, quantity: str, item: Input):
    try:
        return reference_exact(op, item.logits, item.labels, quantity, **item.options)
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


def observe(adapter: Adapter, call: Call, item: Input, plain: bool = True) -> list[str]:
    """The failure modes of one call on one input, judged as the accuracy suite judges it
    (invariants and the shift check only for ``plain`` cases, those without call options)."""
    op, quantity = call.implementation.op, call.quantity
    call = replace(call, options=item.options)
    exact = _exact(op, quantity, item)
    judged, got = judge(adapter, call, item.logits, item.labels, exact)
    row = {**judged, "dtype": call.dtype}
    if got is not None and judged["verdict"] == "pass" and plain:
        logits, labels = item.logits, item.labels
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
        self.plain = True
        self.tries, self.max_tries = 0, max_tries
        self.deadline = time.monotonic() + max_s

    def keeps_mode(self, item: Input | None) -> bool:
        if item is None or self.exhausted():
            return False
        self.tries += 1
        try:
            return self.mode in observe(self.adapter, self.call, item, self.plain)
        except Exception:  # a candidate the harness cannot judge is not kept
            return False

    def shrink(self, item: Input) -> Shrunk:
        original, op = item.shape, self.op
        rows = ddmin(
            list(range(item.logits.shape[0])),
            lambda keep: self.keeps_mode(slicing.take_rows(op, item, keep)),
            self.exhausted,
        )
        item = slicing.take_rows(op, item, rows)
        columns = ddmin(
            list(range(slicing.classes(op, item))),
            lambda keep: self.keeps_mode(slicing.take_classes(op, item, keep)),
            self.exhausted,
        )
        if len(columns) < slicing.classes(op, item):
            item = slicing.take_classes(op, item, columns) or item
        if op == LINEAR_OP:
            hidden = ddmin(
                list(range(item.logits.shape[-1])),
                lambda keep: self.keeps_mode(slicing.take_hidden(op, item, keep)),
                self.exhausted,
            )
            item = slicing.take_hidden(op, item, hidden)
        item = slicing.with_logits(item, self._simplify_values(item))
        return Shrunk(item, self.tries, original)

    def exhausted(self) -> bool:
        return self.tries >= self.max_tries or time.monotonic() > self.deadline

    def _simplify_values(self, item: Input) -> np.ndarray:
        """Each logit in turn replaced by the simplest stand-in that keeps the mode (inputs of
        at most ``MAX_SIMPLIFIED`` logits: beyond, the values are not what a reader reads)."""
        logits = item.logits.copy()
        if logits.size > MAX_SIMPLIFIED:
            return logits
        for index in np.ndindex(logits.shape):
            original = logits[index]
            for candidate in _simpler_values(float(original), logits.dtype):
                if self.exhausted():
                    return logits
                logits[index] = candidate
                if self.keeps_mode(slicing.with_logits(item, logits)):
                    break
                logits[index] = original
        return logits


def shrink(
    adapter: Adapter,
    call: Call,
    mode: str,
    item: Input,
    max_tries: int = 400,
    max_s: float = 120.0,
    plain: bool = True,
) -> Shrunk:
    """The smallest input found that keeps ``mode`` (the input itself if it cannot shrink);
    ``plain``: the case has no call options (invariants and shift are judged too)."""
    if item.logits.ndim < 2:
        item = slicing.with_logits(item, np.atleast_2d(item.logits))
    shrinker = Shrinker(adapter, call, mode, max_tries, max_s)
    shrinker.plain = plain
    return shrinker.shrink(item)
