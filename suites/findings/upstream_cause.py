"""What an upstream report says first: the finding on its shrunk input (got, expected and a
careful kernel's result, exact), one named cause, and the other findings that share it.

The cause is a hypothesis read from the failure mode, the dtype and the careful kernel's result on
the same input, worded as a maintainer would check it; the findings sharing a cause
(``suites.findings.causes``) show whether other libraries do the same arithmetic.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from xentbench.adapters import registry
from xentbench.adapters.base import Call
from xentbench.adapters.careful_adapter import careful
from xentbench.reference.dtypes import numpy_dtype
from xentbench.suites.findings.group import Finding

SIXTEEN_BIT = ("float16", "bfloat16")
MAX_SHOWN = 16  # inputs of at most this many logits are quoted in full

# failure mode -> the mechanism that most often produces it.
_CAUSES = {
    "inf-for-finite": (
        "an intermediate overflows although the result fits: an exponential taken before the "
        "row maximum is subtracted, a sum accumulated in a dtype too narrow to hold it, or (for "
        "logits spanning more than the dtype's range) x_i - max(x) itself, which a term "
        "y_i (max(x) + log s) - y_i x_i avoids"
    ),
    "nan-for-finite": (
        "an undefined intermediate (inf - inf, 0 * inf or 0 / 0) where the limit is finite"
    ),
    "nan-for-infinite": "an undefined intermediate (inf - inf) where the limit is infinite",
    "wrong-infinity": "an infinity of the wrong sign from an unguarded intermediate",
    "finite-for-nonfinite": (
        "a NaN input is dropped: the row maximum or the sum skips it (a max that ignores NaN), "
        "so NaN does not propagate"
    ),
    "answers-invalid-input": (
        "the class id is not range-checked: a negative one indexes from the end (wraps around)"
    ),
    "raises-on-valid-input": (
        "the call raises instead of computing a valid input (the exception is quoted under "
        "Expected against got)"
    ),
    "flushed-subnormal": "the CPU's flush-to-zero mode (subnormal results become 0)",
    "shift-variant": "the result depends on the logits' offset: the max shift is missing or late",
}


def cause_line(finding: Finding) -> str:
    """One named cause for the finding (a hypothesis to check, not a diagnosis)."""
    dtype = finding.worst_case.rsplit(" ", 1)[-1] if finding.worst_case else finding.dtypes[0]
    careful_passes = (
        not math.isnan(finding.careful_worst_ratio) and finding.careful_worst_ratio <= 1
    )
    if finding.failure_mode == "over-budget":
        if dtype in SIXTEEN_BIT and careful_passes:
            return (
                f"intermediates rounded to {dtype} (or accumulated in it): the same algorithm "
                f"with float32 internals and one rounding of the output stays within the bound "
                f"on the same input ({finding.careful_ratio:.3g} x its bound)."
            )
        return (
            "lost digits in the algorithm itself (a cancellation or a sum without the max "
            "shift): a careful kernel in the same precision stays within the bound."
        )
    return _CAUSES.get(finding.failure_mode, finding.failure_mode) + "."


def _quoted(values: np.ndarray | None) -> str:
    if values is None:
        return "None"
    array = np.asarray(values)
    if array.size > MAX_SHOWN:
        return f"an array of shape {array.shape} (in the reproducer below)"
    return np.array2string(array, separator=", ", floatmode="unique", max_line_width=90)


def _run(finding: Finding, facts: dict[str, Any]) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(the implementation's, the careful kernel's) result on the shrunk input; None where it
    raised or cannot run here."""
    dtype = str(facts["dtype"])
    logits = np.asarray(facts["logits"]).astype(np.float64).astype(numpy_dtype(dtype))
    labels = facts.get("labels")
    if labels is not None and np.asarray(labels).dtype.kind == "f":
        labels = np.asarray(labels).astype(numpy_dtype(dtype))
    options = dict(facts.get("options") or {})
    got = theirs = None
    try:
        adapter = registry.load(finding.backend)
        impl = adapter.implementation(finding.implementation)
        call = Call(impl, dtype, facts["device"], facts["mode"], finding.quantity, options)
        got = np.asarray(adapter.prepare(call, logits, labels)(), dtype=np.float64)
    except Exception:  # raising is itself an answer: the report says "raises"
        got = None
    try:
        theirs = careful(finding.op, finding.quantity, logits, labels, dtype, options=options)
        theirs = np.asarray(theirs, dtype=np.float64)
    except Exception:  # an input the careful kernel refuses: no comparison
        theirs = None
    return got, theirs


def minimal_summary(finding: Finding, facts: dict[str, Any]) -> list[str]:
    """Got, expected and the careful kernel's result on the shrunk input, exact."""
    got, theirs = _run(finding, facts)
    dtype = facts["dtype"]
    lines = [
        f"On this {dtype} input (shrunk from the xentbench case `{facts['case_id']}`, "
        f"{facts['original']} -> {facts['shrunk']}):",
        "",
        f"- logits: `{_quoted(facts['logits'])}`",
    ]
    if facts.get("labels") is not None:
        lines.append(f"- labels: `{_quoted(facts['labels'])}`")
    if facts.get("options"):
        shown = {
            k: (_quoted(v) if isinstance(v, np.ndarray) else v) for k, v in facts["options"].items()
        }
        lines.append(f"- options: `{shown}`")
    lines += [
        f"- `{finding.implementation.partition(':')[2]}` {finding.quantity} returns: "
        f"`{'raises' if got is None else _quoted(got)}`",
        f"- expected (exact, rounded to {dtype}): `{_quoted(facts['truth'])}`",
        f"- a careful kernel (float32 internals for 16-bit, one rounding) returns: "
        f"`{'—' if theirs is None else _quoted(theirs)}`",
        f"- error allowance per element (absolute): `{_quoted(facts['allowance'])}`",
    ]
    return lines


def shared_with(finding: Finding, findings: list[Finding] | None) -> list[str]:
    """The other findings of the same cause (same mechanism, other implementations)."""
    if not findings or not finding.cause:
        return []
    others = [f for f in findings if f.cause == finding.cause and f.id != finding.id]
    if not others:
        return []
    lines = ["The same failure, on the same input, in other implementations (one cause):"]
    lines += [f"- `{f.implementation}` {f.quantity} ({f.klass}, `{f.id}`)" for f in others]
    return lines
