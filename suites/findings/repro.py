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

from xentbench.adapters import registry
from xentbench.adapters.base import Call, backend_and_api
from xentbench.reference import exact as reference_exact
from xentbench.reference.dtypes import numpy_dtype
from xentbench.reference.evaluate import LINEAR_OP, REDUCING, output_shape
from xentbench.suites.catalog import cases
from xentbench.suites.findings import option_snippets, snippets
from xentbench.suites.findings.group import Finding
from xentbench.suites.findings.script import render
from xentbench.suites.findings.shrink import Shrunk, shrink
from xentbench.suites.findings.slicing import Input
from xentbench.suites.hunt import hunted
from xentbench.suites.judge import shift
from xentbench.suites.judge.allowance import call_allowance
from xentbench.suites.judge.budget import Output
from xentbench.suites.judge.invariants import sums_to_one_tolerance
from xentbench.suites.judge.ulps import truth_in, ulp_at


@dataclass
class Reproducer:
    """A finding's script and the size of its input before and after shrinking."""

    finding: Finding
    text: str
    shape: tuple[int, ...]
    original_shape: tuple[int, ...]
    tries: int
    # What the script holds: the shrunk input (logits, labels, options), its dtype and the
    # exact values (hi, truth, allowance), for a report to quote (suites.findings.upstream).
    facts: dict[str, Any] | None = None

    @property
    def size(self) -> int:
        """Number of logits in the shrunk input (the linear op: rows x classes)."""
        return int(np.prod(self.shape[:2]))


def _exact_arrays(call: Call, item: Input, quantity: str) -> dict[str, np.ndarray]:
    """hi, lo, the dtype's rounding, its ULP and the allowance per output element, the
    allowance chosen as ``suites.judge.measure.evaluate`` chooses it; NaN throughout for
    invalid input (nothing to compare: raising is the right answer)."""
    op, dtype, options = call.implementation.op, call.dtype, item.options
    logits, labels = item.logits, item.labels
    try:
        exact = reference_exact(op, logits, labels, quantity, **options)
    except ValueError:
        nan = np.full(_output_shape(op, quantity, item), np.nan)
        return {name: nan for name in ("hi", "lo", "truth", "ulp", "allowance")}
    requested = numpy_dtype(dtype)
    truth = truth_in(exact, requested)
    allowed = call_allowance(Output(op, quantity, requested, logits, labels, exact), options)
    return {
        "hi": exact.hi,
        "lo": exact.lo,
        "truth": truth,
        "ulp": ulp_at(truth, requested),
        "allowance": allowed.absolute,
    }


def _output_shape(op: str, quantity: str, item: Input) -> tuple[int, ...]:
    if op == LINEAR_OP:
        return (len(item.logits),) if quantity == "value" else (0,)
    if item.options.get("reduction", "none") != "none" and quantity == "value":
        return ()
    return output_shape(op, quantity, item.logits.shape)


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
    sample, item = finding.sample, shrunk.item
    logits = item.logits
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
        "shrunk": "x".join(map(str, item.shape)),
        "framework": framework,
        "dtype": call.dtype,
        "device": call.device,
        "mode": call.mode,
        "logits": logits.astype(np.float64),
        "labels": None if item.labels is None else np.asarray(item.labels),
        "options": item.options,
        "shifted": None,
        "tolerance": sums_to_one_tolerance(call.dtype, logits.shape[-1]),
    }
    if finding.failure_mode == "shift-variant":
        shifts = shift.exact_shifts(logits, call.dtype)
        facts["shifted"] = shift.shifted_logits(logits, shifts).astype(np.float64)
    labels = facts["labels"]
    if labels is not None and labels.dtype.kind == "f":
        facts["labels"] = labels.astype(np.float64)
    return {**facts, **_exact_arrays(call, item, finding.quantity)}


class NotReproducible(ValueError):
    """A finding the reproducer cannot express: its call takes options or a tangent that no
    framework snippet renders (ONNX Runtime's and NumPy's option calls), or its hunted input is
    no longer in its run directory."""


def _hunted_options(sample) -> Path:
    return hunted.hunted_files(sample.run_dir, sample.case_id.rsplit("/", 1)[-1])["options"]


def _hunted_input(sample) -> Input:
    """A hunted sample's saved input (``<run>/hunt/<hash>-logits.npy``, ``-labels.npy`` and,
    for the options family, ``-options.npz``: arrays in the dtype's values, scalars as 0-d)."""
    digest = sample.case_id.rsplit("/", 1)[-1]
    files = hunted.hunted_files(sample.run_dir, digest)
    if not files["logits"].exists():
        raise NotReproducible(f"hunted input {files['logits']} is missing (run moved or pruned?)")
    labels = np.load(files["labels"], allow_pickle=False) if files["labels"].exists() else None
    options = (
        hunted.load_hunted_options(sample.run_dir, digest) if files["options"].exists() else {}
    )
    return Input(np.load(files["logits"], allow_pickle=False), labels, options)


def sample_input(finding: Finding) -> tuple[Input, bool]:
    """The sample's input with its call options, and whether the case is plain (no options:
    invariants and the shift check are judged as the accuracy suite does)."""
    sample = finding.sample
    if sample.case_id.startswith("hunt/"):
        hunted = _hunted_input(sample)
        return hunted, not hunted.options
    case = cases.find(sample.case_id)
    logits, labels = case.inputs(sample.dtype, sample.seed)
    options = case.call_options(sample.dtype, sample.seed, finding.quantity)
    return Input(logits, labels, dict(options)), not case.options


def _needs_option_snippet(finding: Finding, item: Input) -> bool:
    return bool(item.options) or finding.quantity not in ("value", "grad")


def reproducible(finding: Finding) -> str | None:
    """Why ``finding`` has no standalone reproducer, or None when it has one (decided from the
    implementation and the sample's case, before anything is drawn)."""
    case_id, backend = finding.sample.case_id, backend_and_api(finding.implementation)[0]
    hunted = case_id.startswith("hunt/")
    with_options = finding.quantity not in ("value", "grad") or (
        _hunted_options(finding.sample).exists() if hunted else bool(_case_options(case_id))
    )
    if with_options and backend in _PLAIN_ONLY:
        return f"{backend} calls with options or a tangent (no snippet renders them yet)"
    return None


def _case_options(case_id: str) -> tuple:
    try:
        case = cases.find(case_id)
    except (KeyError, ValueError):
        return ()
    return (*case.options, *(("weight",) if case.op == LINEAR_OP else ()))


# Built-in backends whose reproducers render only plain calls (plugins go through the
# registry, which passes options on).
_PLAIN_ONLY = ("numpy", "onnxruntime")


def build_reproducer(finding: Finding, max_tries: int = 400, max_s: float = 120.0) -> Reproducer:
    """Shrink the finding's sample input and render its script (the backend is loaded here);
    ``NotReproducible`` for a finding ``reproducible`` declines."""
    reason = reproducible(finding)
    if reason is not None:
        raise NotReproducible(f"{finding.id}: no standalone reproducer for {reason}")
    adapter = registry.load(finding.backend)
    sample = finding.sample
    item, plain = sample_input(finding)
    call = Call(
        adapter.implementation(finding.implementation),
        sample.dtype,
        sample.device,
        sample.mode,
        finding.quantity,
        options=item.options,
    )
    shrunk = shrink(adapter, call, finding.failure_mode, item, max_tries, max_s, plain=plain)
    rendered = None
    if _needs_option_snippet(finding, item):
        rendered = option_snippets.run_source(finding.implementation)
    if rendered is None:
        reducing = (finding.op, finding.quantity) in REDUCING
        rendered = snippets.run_source(finding.implementation, reducing)
    framework, source = rendered
    facts = _facts(finding, call, shrunk, framework)
    text = render(facts, source)
    return Reproducer(finding, text, shrunk.item.shape, shrunk.original_shape, shrunk.tries, facts)


def write_reproducer(reproducer: Reproducer, out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{reproducer.finding.id}.py"
    path.write_text(reproducer.text, encoding="utf-8")
    return path
