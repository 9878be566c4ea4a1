"""One cause, many findings: findings of different implementations, backends or dtypes that
share a mechanism recognisable from the output, listed once with their members.

A finding's cause key is read from its failure mode and its worst evaluation:

- ``flushed-subnormal``: one cause per backend, over every op and quantity (flush-to-zero is
  a setting of the framework's arithmetic, not of one kernel);
- a kind mismatch (NaN, an infinity, a finite number for a non-finite truth) or an answer for
  invalid input: one cause per (op, quantity, failure mode, worst case);
- ``over-budget``: one cause per (op, quantity, worst case, worst error / allowance to three
  digits): the same ratio on the same input is the same arithmetic, whoever ships it.

Other modes (raises, shapes, invariants) stay one finding, one cause.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

from xentbench.suites.findings.group import Finding

SHARED_MODES = ("nan-for-finite", "nan-for-infinite", "inf-for-finite", "wrong-infinity")
SHARED_MODES += ("finite-for-nonfinite", "answers-invalid-input", "over-budget")


@dataclass
class Cause:
    """A mechanism and the findings it explains."""

    id: str
    description: str
    members: list[Finding]

    @property
    def implementations(self) -> list[str]:
        return sorted({f.implementation for f in self.members})

    @property
    def backends(self) -> list[str]:
        return sorted({f.backend for f in self.members})

    def as_record(self) -> dict:
        return {
            "id": self.id,
            "description": self.description,
            "backends": self.backends,
            "members": [f.id for f in self.members],
            "implementations": self.implementations,
        }


def _worst_case(finding: Finding) -> str:
    return finding.worst_case.split(" ", 1)[0] if finding.worst_case else finding.cases[0]


def cause_key(finding: Finding) -> tuple[str, ...]:
    """What a finding's failure is recognisably made of; findings with the same key share a
    cause (a key naming the finding itself for modes no other finding can share)."""
    mode = finding.failure_mode
    if mode == "flushed-subnormal":
        return (mode, finding.backend)
    if mode not in SHARED_MODES:
        return (mode, finding.id)
    key = (mode, finding.op, finding.quantity, _worst_case(finding))
    if mode == "over-budget":
        ratio = finding.worst_ratio
        return (*key, "nan" if math.isnan(ratio) else f"{ratio:.3g}")
    return key


def describe(key: tuple[str, ...], members: list[Finding]) -> str:
    """A cause in words, from its key and members."""
    mode = key[0]
    backends = sorted({f.backend for f in members})
    dtypes = sorted({d for f in members for d in f.dtypes})
    if mode == "flushed-subnormal":
        return (
            f"subnormal outputs flushed to zero (or to the smallest normal) — every {key[1]} "
            f"implementation flagged here, {', '.join(dtypes)}"
        )
    where = f"{key[1]} {key[2]} on {key[3].split('/', 1)[-1]}"
    if mode == "over-budget":
        return (
            f"the same error, {key[4]} x the allowance, in {', '.join(backends)}: {where} "
            f"({', '.join(dtypes)}) — one arithmetic shared by {len(members)} implementations"
        )
    return f"{mode}: {where} in {', '.join(backends)} ({', '.join(dtypes)})"


def _cause_id(key: tuple[str, ...]) -> str:
    return "xc-" + hashlib.sha256("|".join(key).encode()).hexdigest()[:8]


def assign_causes(findings: list[Finding]) -> list[Cause]:
    """Give every finding its ``cause`` id and return the causes with more than one member,
    the largest first."""
    grouped: dict[tuple[str, ...], list[Finding]] = {}
    for finding in findings:
        grouped.setdefault(cause_key(finding), []).append(finding)
    causes = []
    for key, members in grouped.items():
        cause_id = _cause_id(key)
        for finding in members:
            finding.cause = cause_id
        if len(members) > 1:
            causes.append(Cause(cause_id, describe(key, members), members))
    return sorted(causes, key=lambda c: (-len(c.members), c.id))
