"""Judging one call: the single place where a call's outcome becomes a verdict.

The accuracy suite, ``xentbench check`` and the hunt all evaluate calls through ``judge``, so a
declared-unsupported call, a raise, a number for invalid input and a measured result are
decided the same way everywhere.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from xentbench.adapters.base import Adapter, Call
from xentbench.reference import Exact
from xentbench.suites.judge import measure
from xentbench.suites.judge.verdicts import verdict_for_exception, verdict_for_invalid_result


def call_columns(adapter: Adapter, call: Call) -> dict[str, Any]:
    """The columns that say which call a row or record is about (one definition for the
    accuracy suite, the hunt and ``check``)."""
    impl = call.implementation
    return {
        "backend": adapter.name,
        "implementation": impl.name,
        "baseline": impl.baseline,
        "op": impl.op,
        "dtype": call.dtype,
        "device": call.device,
        "mode": call.mode,
        "quantity": call.quantity,
    }


def judge(
    adapter: Adapter, call: Call, logits: np.ndarray, labels, exact: Exact | ValueError
) -> tuple[dict[str, Any], np.ndarray | None]:
    """Run one call and judge it: (verdict columns, the result to check further, or None when
    there is nothing to measure). ``exact`` is the reference's value, or the ValueError it
    raises on invalid input (an out-of-range class id): there, raising passes and a returned
    number is wrong. A call the adapter declares unsupported is not run. ``elapsed_s`` times
    the call alone.
    """
    reason = adapter.unsupported_reason(call)
    if reason is not None:
        return {"verdict": "unsupported", "message": reason}, None
    started = time.perf_counter()
    try:
        got = adapter.prepare(call, logits, labels)()
    except Exception as exc:
        verdict = verdict_for_exception(isinstance(exact, ValueError))
        message = f"raised {type(exc).__name__}: {str(exc)[:300]}"
        return {"verdict": verdict, "message": message, "elapsed_s": _since(started)}, None
    elapsed = {"elapsed_s": _since(started)}
    if isinstance(exact, ValueError):
        message = f"returned a result for invalid input: {exact}"
        return {"verdict": verdict_for_invalid_result(), "message": message, **elapsed}, None
    impl = call.implementation
    result = measure.evaluate(
        impl.op, call.quantity, call.dtype, logits, labels, got, exact, call.options
    )
    return {**result.as_row(), **elapsed}, got


def _since(started: float) -> float:
    return time.perf_counter() - started
