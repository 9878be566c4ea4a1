"""Reproducers: one standalone script per finding, from its shrunk input.

``build_reproducer`` draws the finding's sample input again (case, dtype, seed), shrinks it
while the failure mode persists (``suites.findings.shrink``), computes the exact value of the
shrunk input with ``reference.exact`` and the budget's allowance, and renders a script that
imports only the framework and NumPy (``suites.findings.snippets``, ``suites.findings.script``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from adapters import registry
from adapters.base import Call
from reference import exact as reference_exact
from reference.dtypes import numpy_dtype
from reference.evaluate import REDUCING, output_shape
from suites.catalog import cases
from suites.findings import snippets
from suites.findings.group import UNRENDERED_FAMILIES, Finding
from suites.findings.script import render
from suites.findings.shrink import Shrunk, shrink
from suites.judge import shift
from suites.judge.budget import K, error_scale
from suites.judge.invariants import sums_to_one_tolerance
from suites.judge.ulps import truth_in, ulp_at


@dataclass
class Reproducer:
    """A finding's script and the size of its input before and after shrinking."""

    finding: Finding
    text: str
    shape: tuple[int, ...]
    original_shape: tuple[int, ...]
    tries: int

    @property
    def size(self) -> int:
        """Number of logits in the shrunk input."""
        return int(np.prod(self.shape))


def _exact_arrays(op: str, quantity: str, dtype: str, logits, labels) -> dict[str, np.ndarray]:
    """hi, lo, the dtype's rounding, its ULP and the allowance per output element; NaN
    throughout for invalid input (nothing to compare: raising is the right answer)."""
    try:
        exact = reference_exact(op, logits, labels, quantity)
    except ValueError:
        nan = np.full(output_shape(op, quantity, logits.shape), np.nan)
        return {name: nan for name in ("hi", "lo", "truth", "ulp", "allowance")}
    requested = numpy_dtype(dtype)
    truth = truth_in(exact, requested)
    ulp = ulp_at(truth, requested)
    scale = error_scale(op, quantity, requested, logits, labels, exact)
    with np.errstate(invalid="ignore", over="ignore"):
        allowance = ulp + K * scale
    return {"hi": exact.hi, "lo": exact.lo, "truth": truth, "ulp": ulp, "allowance": allowance}


def _evidence(finding: Finding) -> str:
    evidence = finding.evidence
    if finding.klass == "defect?":
        return "Class defect?: nothing in suites/findings/known.toml explains it."
    parts = [f"Class {finding.klass} (catalogue entry {finding.entry})."]
    parts += [
        f"{key}: {evidence[key]}" for key in ("url", "state", "quote", "reason") if key in evidence
    ]
    return "\n".join(parts)


def _facts(finding: Finding, call: Call, shrunk: Shrunk, framework: str) -> dict[str, Any]:
    op, sample = finding.op, finding.sample
    logits = shrunk.logits
    facts: dict[str, Any] = {
        "id": finding.id,
        "implementation": finding.implementation,
        "quantity": finding.quantity,
        "failure_mode": finding.failure_mode,
        "klass": finding.klass,
        "evidence": _evidence(finding),
        "versions": "; ".join(finding.versions) or "unknown",
        "case_id": sample.case_id,
        "seed": sample.seed,
        "original": "x".join(map(str, shrunk.original_shape)),
        "framework": framework,
        "dtype": call.dtype,
        "device": call.device,
        "mode": call.mode,
        "logits": logits.astype(np.float64),
        "labels": None if shrunk.labels is None else np.asarray(shrunk.labels),
        "shifted": None,
        "tolerance": sums_to_one_tolerance(call.dtype, logits.shape[-1]),
    }
    if finding.failure_mode == "shift-variant":
        shifts = shift.exact_shifts(logits, call.dtype)
        facts["shifted"] = shift.shifted_logits(logits, shifts).astype(np.float64)
    labels = facts["labels"]
    if labels is not None and labels.dtype.kind == "f":
        facts["labels"] = labels.astype(np.float64)
    arrays = _exact_arrays(op, finding.quantity, call.dtype, logits, shrunk.labels)
    return {**facts, **arrays}


class NotReproducible(ValueError):
    """A finding the reproducer cannot express yet: its calls take options (the options and
    linear families), a forward-mode tangent, or a hunted input kept only in its run."""


def reproducible(finding: Finding) -> str | None:
    """Why ``finding`` has no standalone reproducer yet, or None when it has one."""
    if finding.quantity not in ("value", "grad"):
        return f"quantity {finding.quantity} (its tangent or cotangent is not rendered yet)"
    case_id = finding.sample.case_id
    family = "hunt" if case_id.startswith("hunt/") else case_id.split("/")[1]
    unsupported = [family] if family in UNRENDERED_FAMILIES else []
    if unsupported:
        return (
            f"family {', '.join(unsupported)} (call options and saved inputs are not rendered yet)"
        )
    return None


def build_reproducer(finding: Finding, max_tries: int = 400, max_s: float = 120.0) -> Reproducer:
    """Shrink the finding's sample input and render its script (the backend is loaded here);
    ``NotReproducible`` for a finding ``reproducible`` declines."""
    reason = reproducible(finding)
    if reason is not None:
        raise NotReproducible(f"{finding.id}: no standalone reproducer for {reason}")
    adapter = registry.load(finding.backend)
    sample = finding.sample
    call = Call(
        adapter.implementation(finding.implementation),
        sample.dtype,
        sample.device,
        sample.mode,
        finding.quantity,
    )
    logits, labels = cases.find(sample.case_id).inputs(sample.dtype, sample.seed)
    shrunk = shrink(adapter, call, finding.failure_mode, logits, labels, max_tries, max_s)
    reducing = (finding.op, finding.quantity) in REDUCING
    framework, source = snippets.run_source(finding.implementation, reducing)
    text = render(_facts(finding, call, shrunk, framework), source)
    return Reproducer(finding, text, shrunk.logits.shape, shrunk.original_shape, shrunk.tries)


def write_reproducer(reproducer: Reproducer, out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{reproducer.finding.id}.py"
    path.write_text(reproducer.text, encoding="utf-8")
    return path
