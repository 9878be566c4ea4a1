"""The failure-mode vocabulary: what went wrong in one stored evaluation, in one word.

A failing row (verdict ``inaccurate``, ``wrong`` or ``error``) has exactly one mode, read from
its verdict, message and worst element (got against the exact value rounded to the dtype).
A passing row may still break invariants: each broken invariant is a mode of its own
(``shift-variant`` for shift invariance, ``invariant:<name>`` for the others).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from xentbench.reference.dtypes import numpy_dtype

# The closed vocabulary (plus ``invariant:<name>`` for each invariant of suites.judge.invariants).
MODES: tuple[str, ...] = (
    "nan-for-finite",  # NaN where the truth is a finite number
    "nan-for-infinite",  # NaN where the truth is +inf or -inf
    "inf-for-finite",  # an infinity where the truth is finite
    "wrong-infinity",  # an infinity where the truth is the other infinity or NaN
    "finite-for-nonfinite",  # a finite number where the truth is NaN or an infinity
    "wrong-shape",  # an output of the wrong shape
    "answers-invalid-input",  # a number for input outside the op's domain (a bad class id)
    "raises-on-valid-input",  # an exception on valid input
    "over-budget",  # the right kind of number, beyond the error budget
    "flushed-subnormal",  # over budget where the truth is subnormal and got 0 or the tiniest normal
    "shift-variant",  # passes, but exactly shifted logits give a different, failing result
)
INVARIANT_PREFIX = "invariant:"
# Modes whose failure is a kind mismatch at one element (NaN, infinity or finite).
KIND_MODES: tuple[str, ...] = MODES[:5]


def is_mode(name: str) -> bool:
    return name in MODES or (
        name.startswith(INVARIANT_PREFIX) and len(name) > len(INVARIANT_PREFIX)
    )


def kind_mode(got: float, truth: float) -> str | None:
    """The kind mismatch of one element (``truth`` already rounded to the output dtype)."""
    if math.isnan(got):
        if math.isnan(truth):
            return None
        return "nan-for-finite" if math.isfinite(truth) else "nan-for-infinite"
    if math.isinf(got):
        if math.isfinite(truth):
            return "inf-for-finite"
        return None if got == truth else "wrong-infinity"
    return None if math.isfinite(truth) else "finite-for-nonfinite"


def _rounded(value: float, dtype: str) -> float:
    """The exact value at the worst element as the dtype rounds it (beyond its range: inf)."""
    with np.errstate(over="ignore"):
        return float(np.asarray(value, dtype=np.float64).astype(numpy_dtype(dtype)))


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def flushed_subnormal(got: Any, expected: Any, dtype: str) -> bool:
    """Whether the worst element shows a subnormal flushed: the truth is subnormal in the output
    dtype (nonzero once rounded to it, below its smallest normal) and got is exactly 0 or the
    smallest normal, as flush-to-zero (FTZ/DAZ) arithmetic returns."""
    if not (_present(got) and _present(expected)):
        return False
    truth = abs(_rounded(float(expected), dtype))
    smallest_normal = float(np.finfo(numpy_dtype(dtype)).smallest_normal)
    return 0 < truth < smallest_normal and abs(float(got)) in (0.0, smallest_normal)


def verdict_mode(row: dict[str, Any]) -> str | None:
    """The mode of a failing row, None for a passing (or unsupported) one."""
    verdict, message = row.get("verdict"), str(row.get("message") or "")
    if verdict == "error":
        return "raises-on-valid-input"
    if verdict == "inaccurate":
        flushed = flushed_subnormal(row.get("got"), row.get("expected"), str(row.get("dtype")))
        return "flushed-subnormal" if flushed else "over-budget"
    if verdict != "wrong":
        return None
    if message.startswith("returned a result for invalid input"):
        return "answers-invalid-input"
    if message.startswith("output shape"):
        return "wrong-shape"
    got, expected = row.get("got"), row.get("expected")
    if _present(expected) or _present(got):
        got = math.nan if got is None else float(got)
        truth = math.nan if expected is None else _rounded(float(expected), row["dtype"])
        found = kind_mode(got, truth)
        if found:
            return found
    return "nan-for-finite" if not _present(got) else "finite-for-nonfinite"


def row_modes(row: dict[str, Any]) -> list[str]:
    """Every mode of one stored row: its verdict's, or on a passing row its broken invariants."""
    mode = verdict_mode(row)
    if mode is not None:
        return [mode]
    if row.get("verdict") != "pass":
        return []
    failures = row.get("invariant_failures")
    names = [n for n in str(failures).split(",") if n] if _present(failures) else []
    return ["shift-variant" if n == "shift_invariance" else INVARIANT_PREFIX + n for n in names]
