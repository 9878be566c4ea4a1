"""The rounds of a timing run: how many by default, and one key's samples pooled over them.

With ``--repeat-runs`` the whole grid is measured round after round, each round in a worker
process of its own; a key's row holds the samples of every round so far (``Pool``), so a
later round adds to what the store keeps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from xentbench.suites.timing import contention, harness

# Rounds of a default timing run (--repeat-runs), each in its own process. On a shared machine
# an op's time drifts by ~15% (log std) between samplings minutes apart, and by ~10% more
# between processes, while staying steady within one 0.2 s sampling, so one sampling per op
# cannot tell a 1.5x slowdown from drift; the rounds' spread is the noise compare tests
# against. Measured on the 2-core VM, the first 3, 4 and 5 rounds of a run caught 82%, 94%
# and 97% of a 1.5x slowdown (reports/bench/timing-rounds-apart/rules.md).
DEFAULT_ROUNDS = 5
# Rounds of each run of an A/B pair (run --against), whose rounds take turns. With 5 the
# interleaved pair in reports/bench/timing-interleaved caught 92.4% of a 1.5x slowdown
# (Welch's t; resampling its round medians put 6, 7 and 8 rounds at 94%, 95% and 96%); with
# 7, two pairs caught 96.7% and 96.9% (moderated t) with no false alarm
# (reports/bench/timing-interleaved-7*).
AB_DEFAULT_ROUNDS = 7


@dataclass
class Pool:
    """The samples of one key over the rounds so far, and what the process got for them."""

    times_s: list[float] = field(default_factory=list)
    round_medians_s: list[float] = field(default_factory=list)
    calibration_s: list[float] = field(default_factory=list)
    usage: contention.Usage = contention.NO_USAGE
    contended: bool = False
    retries: int = 0
    rounds: int = 0
    calls_per_repeat: int = 0  # the latest round's (each round calibrates its own)
    first_call_s: float | None = None
    notes: list[str] = field(default_factory=list)

    overhead_s: float | None = None  # an earlier round's (measured once per key and run)

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Pool:
        """The pool a stored row of earlier rounds (another worker process's) holds."""
        others = row.get("others_cpu_s")
        usage = contention.Usage(
            row["wall_s"] or 0.0,
            row["cpu_s"] or 0.0,
            row["involuntary_switches"] or 0,
            None if others is None else (row["cpu_s"] or 0.0) + others,
            waited_s=row.get("waited_s"),
        )
        summary = harness.spread_note(row["median_s"], row["iqr_s"])
        notes = [note for note in (row.get("message") or "").split("; ") if note]
        compile_s = row.get("compile_s")
        return cls(
            times_s=list(row["times_s"]),
            round_medians_s=list(row.get("round_medians_s") or [row["median_s"]]),
            calibration_s=list(row.get("calibration_s") or []),
            usage=usage,
            contended=bool(row.get("contended")),
            retries=row.get("retries") or 0,
            rounds=row.get("rounds") or 1,
            calls_per_repeat=row["calls_per_repeat"],
            first_call_s=None if compile_s is None else compile_s + row["median_s"],
            notes=[note for note in notes if note != summary],
            overhead_s=row.get("overhead_s"),
        )

    def add(self, m: harness.Measurement, calibration: tuple[float, float]) -> None:
        self.times_s += m.times_s
        self.round_medians_s.append(m.median_s)
        self.calibration_s += calibration
        self.usage += m.usage
        self.contended |= m.contended
        self.retries += m.retries
        self.rounds += 1
        self.calls_per_repeat = m.calls_per_repeat
        if self.first_call_s is None:  # compilation happens in the first round only
            self.first_call_s = m.first_call_s
        if m.note:
            self.notes.append(m.note if self.rounds == 1 else f"round {self.rounds}: {m.note}")


def poolable(row: dict[str, Any]) -> bool:
    """A stored row a later round can add to: measured, with its samples (schema 3 on)."""
    return row.get("verdict") == "ok" and bool(row.get("times_s"))


def pooled_rounds(row: dict[str, Any]) -> float:
    """How many rounds a stored row holds for resuming: infinite where no round can add to
    it (unsupported, an error, no samples), so every round counts it done."""
    return (row.get("rounds") or 1) if poolable(row) else math.inf
