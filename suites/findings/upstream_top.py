"""The most severe confirmed defects of some runs as upstream-ready reports, with an index.

``xentbench findings RUN --upstream-top N --out DIR`` picks the ``defect?`` findings the careful
kernel confirms (``suites.findings.careful.triage``), one per (shared cause, framework tracker),
the wrong kind of number first, then by worst error / allowance (``pick``), and writes each
one's issue body and reproducer (``suites.findings.upstream``) and ``DIR/README.md``, the
index. Findings of xentbench's own code (its NumPy formulas, the careful kernel, the LLM head's
compositions and the simulated vocabulary shards, which no framework ships) are not filed
upstream.

Whether each was already in its tracker is recorded by hand in ``DIR/trackers.toml``, keyed by
the implementation, quantity and failure mode (never the finding id, which a re-rendered sample
may change), so regenerating keeps "already reported" and "not found on DATE". A report whose
framework is not installed here is left as it is, so the command runs once per environment.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path

import pandas as pd

from xentbench.adapters import registry
from xentbench.suites.findings.careful import severity_key, triage
from xentbench.suites.findings.group import Finding
from xentbench.suites.findings.upstream import write_upstream

TRACKERS_FILE = "trackers.toml"
# Implementations whose failing step is xentbench's own code, not a framework's.
OWN = (
    "numpy:stable.*",
    "numpy:naive.*",
    "numpy:head.*",
    "careful:*",
    "*softcapped*",
    "*z_loss*",
    "*simulated shards*",
)
_BACKEND_TRACKERS = {
    "torch": "pytorch/pytorch",
    "onnxruntime": "microsoft/onnxruntime",
    "paddle": "PaddlePaddle/Paddle",
    "mlx": "ml-explore/mlx",
    "tinygrad": "tinygrad/tinygrad",
    "keras_jax": "keras-team/keras",
    "keras_torch": "keras-team/keras",
    "liger_kernel": "linkedin/Liger-Kernel",
}
_WORDS = {
    "nan-for-finite": "NaN for a finite result",
    "nan-for-infinite": "NaN for an infinite result",
    "inf-for-finite": "inf for a finite result",
    "wrong-infinity": "the wrong infinity",
    "finite-for-nonfinite": "a finite number for a NaN or infinite result",
    "answers-invalid-input": "a number for an out-of-range class id",
    "raises-on-valid-input": "raises on valid input",
    "shift-variant": "changes when the logits are shifted",
}


def is_own(implementation: str) -> bool:
    """Whether the implementation's failing step is xentbench's own code (``OWN``)."""
    return any(fnmatchcase(implementation, pattern) for pattern in OWN)


def tracker_of(implementation: str) -> str:
    """The public tracker of the framework that ships an implementation ("" for none: the
    numpy backend's own formulas are xentbench's, its ``scipy.*`` APIs are SciPy's)."""
    backend, _, api = implementation.partition(":")
    if backend == "numpy":
        return "scipy/scipy" if api.startswith("scipy.") else ""
    if backend == "jax":
        return "google-deepmind/optax" if api.startswith("optax.") else "jax-ml/jax"
    if backend == "tensorflow":
        return "keras-team/keras" if api.startswith("keras.") else "tensorflow/tensorflow"
    return _BACKEND_TRACKERS.get(backend, "")


def _case_name(finding: Finding) -> str:
    """The worst case without its op: the same input family across ops."""
    return finding.worst_case.split(" ", 1)[0].split("/", 1)[-1]


def pick(findings: list[Finding], count: int) -> list[Finding]:
    """The ``count`` most severe confirmed framework defects: one per (cause, tracker) and per
    (tracker, failure mode, worst case without its op), so a bug's value and gradient, or one
    bug in several ops of a framework, make one report; each tracker's most severe first, then
    each one's second, so that one framework's many findings do not crowd out the others."""
    candidates = [
        f
        for f in findings
        if triage(f) == "confirmed"
        and tracker_of(f.implementation)
        and not is_own(f.implementation)
    ]
    seen: set[tuple] = set()
    per_tracker: dict[str, int] = {}
    ranked = []
    for finding in sorted(candidates, key=severity_key):
        tracker = tracker_of(finding.implementation)
        keys = {
            ("cause", finding.cause or finding.id, tracker),
            ("same", tracker, finding.failure_mode, _case_name(finding)),
        }
        if keys & seen:
            continue
        seen |= keys
        per_tracker[tracker] = per_tracker.get(tracker, 0) + 1
        ranked.append((per_tracker[tracker], severity_key(finding), finding))
    return [finding for *_, finding in sorted(ranked, key=lambda r: r[:2])][:count]


@dataclass(frozen=True)
class Check:
    """One tracker check: what was looked for, where, when, and what was found."""

    implementation: str
    quantity: str
    failure_mode: str
    tracker: str
    date: str
    url: str = ""  # the issue or pull request already reporting it; "" for none found
    note: str = ""

    def status(self) -> str:
        if self.url:
            return f"**already reported**: {self.url}" + (f" ({self.note})" if self.note else "")
        found = f"not found in {self.tracker} on {self.date}"
        return found + (f" ({self.note})" if self.note else "")


def load_checks(path: Path) -> dict[tuple[str, str, str], Check]:
    """The tracker checks of ``path`` (absent: none) by (implementation, quantity, mode);
    ValueError naming a malformed entry."""
    if not path.exists():
        return {}
    with open(path, "rb") as handle:
        data = tomllib.load(handle)
    checks = {}
    for number, raw in enumerate(data.get("checked", []), 1):
        missing = [k for k in ("implementation", "quantity", "failure_mode", "tracker", "date")]
        missing = [k for k in missing if not str(raw.get(k, "")).strip()]
        if missing:
            raise ValueError(f"{path}: checked entry {number} lacks {', '.join(missing)}")
        fields = {k: str(v) for k, v in raw.items() if k in Check.__dataclass_fields__}
        check = Check(**fields)
        checks[(check.implementation, check.quantity, check.failure_mode)] = check
    return checks


def _what(finding: Finding) -> str:
    dtypes = "/".join(finding.dtypes)
    what = _WORDS.get(finding.failure_mode, f"up to {finding.worst_ratio:.3g} x the allowance")
    quantity = "" if finding.quantity == "value" else f"{finding.quantity}: "
    case = finding.worst_case.split(" ", 1)[0].split("/", 1)[-1]
    return f"{quantity}{what} ({dtypes}; worst on `{case}`)"


def index(picked: list[Finding], checks: dict[tuple[str, str, str], Check]) -> str:
    """The README of the reports: the rule that chose them and each one's tracker status."""
    lines = [
        "# Upstream-ready reports of the most severe confirmed findings",
        "",
        "Written by `xentbench findings RUN --upstream-top N --out DIR` (docs/findings.md,",
        '"Upstream-ready reports"): each `<id>.md` is an issue body and `<id>.py` its standalone',
        "reproducer, which exits 1 while the problem is present. **Which:** the `defect?` findings",
        "the careful kernel confirms (it passes on the inputs where the implementation fails), one",
        "per (shared cause, framework tracker), the wrong kind of number first, then by worst",
        "error / allowance, each tracker's most severe before any tracker's second; xentbench's",
        "own code (NumPy formulas, the LLM head's compositions, the simulated vocabulary shards)",
        "is not filed upstream. A report is written where its framework loads (the command runs",
        "once per framework environment and leaves the others as they are). **Tracker status:**",
        f"from `{TRACKERS_FILE}` beside this file, checked by hand and keyed by the",
        "implementation, quantity and failure mode, so regenerating keeps it.",
        "",
        "| report | API | tracker | what | status |",
        "| --- | --- | --- | --- | --- |",
    ]
    for finding in picked:
        key = (finding.implementation, finding.quantity, finding.failure_mode)
        check = checks.get(key)
        status = check.status() if check else "not checked yet"
        lines.append(
            f"| [{finding.id}]({finding.id}.md) | `{finding.implementation}` | "
            f"{tracker_of(finding.implementation)} | {_what(finding)} | {status} |"
        )
    return "\n".join(lines) + "\n"


def write_top(
    findings: list[Finding], rows: pd.DataFrame, out_dir: Path, count: int
) -> list[tuple[Finding, str]]:
    """Write the index and the reports of the ``count`` most severe confirmed defects; returns
    each picked finding with what became of it (a path, or why it was left as it was)."""
    checks = load_checks(out_dir / TRACKERS_FILE)
    picked = pick(findings, count)
    out_dir.mkdir(parents=True, exist_ok=True)
    done = []
    for finding in picked:
        try:
            registry.load(finding.backend)
        except (registry.BackendUnavailable, KeyError) as exc:
            done.append((finding, f"left as it was: {finding.backend} is not usable here ({exc})"))
            continue
        path = write_upstream(finding, rows, out_dir, findings)
        done.append((finding, f"{path}{_ran(out_dir / f'{finding.id}.py')}"))
    (out_dir / "README.md").write_text(index(picked, checks), encoding="utf-8")
    return done


def _ran(script: Path) -> str:
    """What the reproducer did when run here: it exits 1 while the problem is present."""
    if not script.exists():
        return " (no reproducer)"
    try:
        result = subprocess.run([sys.executable, str(script)], capture_output=True, timeout=600)
    except subprocess.TimeoutExpired:
        return "; its reproducer ran past 600 s"
    return f"; its reproducer exits {result.returncode} here"
