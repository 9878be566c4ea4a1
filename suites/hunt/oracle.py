"""The hunt's oracle: many candidates per call, judged by the suite's own judge.

Candidates of one size are stacked into a batch of ``BATCH`` rows (padded by repeating the
last), so one framework call, one exact evaluation and one judgement cover them all: the
reference costs ~0.8 ms per call whatever the rows (measured; its disk cache ~0.3 ms a hit, so
the hunt caches nothing), and the search ranks candidates with its double-double path without
the proofs of rounding (``suites.hunt.fastref``), sparing the definition's ~1-50 ms per hard
row; ``proven`` judgements (the stored rows) use ``reference.exact``. The batch is judged by
``suites.judge.call.judge``; the rows behind the worst ratios are then peeled off one at a time
(each replaced by the correctly rounded truth and the batch re-measured by
``suites.judge.measure.evaluate``), giving the ``worst_ratio`` of the ``PEEL`` worst rows.
A batch that raises, and a candidate with an invalid label, are judged row by row.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from xentbench.adapters.base import Adapter, Call
from xentbench.reference import exact
from xentbench.suites.hunt.candidates import Candidate, stack
from xentbench.suites.hunt.fastref import search_exact
from xentbench.suites.judge import measure
from xentbench.suites.judge.call import judge

BATCH = 16
PEEL = 3
PAD_UP_TO = 1024  # batches of rows this short are padded to BATCH rows: one shape, one compile


@dataclass(frozen=True)
class Score:
    """A candidate's judgement: broken (wrong kind, raised on valid input, a number for
    invalid input) or its worst_ratio (NaN when not measured)."""

    candidate: Candidate
    verdict: str
    ratio: float
    signature: str = ""  # for a broken one, how: "finite->nan masked", "raised", ...

    @property
    def broken(self) -> bool:
        return self.verdict in ("wrong", "error")

    @property
    def failing(self) -> bool:
        return self.broken or self.verdict == "inaccurate"


@dataclass
class Clock:
    """Where the hunt's time goes: the reference, the framework call, judging, the rest."""

    reference_s: float = 0.0
    call_s: float = 0.0
    judge_s: float = 0.0
    calls: int = 0
    candidates: int = 0
    started: float = field(default_factory=time.perf_counter)

    def split(self) -> str:
        total = max(time.perf_counter() - self.started, 1e-9)
        search = total - self.reference_s - self.call_s - self.judge_s
        parts = (
            ("reference", self.reference_s),
            ("framework", self.call_s),
            ("judge", self.judge_s),
            ("search", search),
        )
        shares = ", ".join(f"{name} {100 * s / total:.0f}%" for name, s in parts)
        return f"{self.candidates} candidates in {self.calls} calls, {total:.1f} s ({shares})"


def reference_value(op: str, quantity: str, logits, labels, clock: Clock, dtype: str = ""):
    """The exact value, or the ValueError the reference raises on invalid input; with
    ``dtype``, the search oracle's value for valid input (``suites.hunt.fastref``)."""
    started = time.perf_counter()
    try:
        if dtype and (labels is None or labels.dtype.kind not in "iu" or _in_range(logits, labels)):
            return search_exact(op, quantity, logits, labels, dtype)
        return exact(op, logits, labels, quantity)
    except ValueError as exc:
        return exc
    finally:
        clock.reference_s += time.perf_counter() - started


def _in_range(logits, labels) -> bool:
    return bool(((labels >= 0) & (labels < logits.shape[-1])).all())


def judge_alone(
    adapter: Adapter, call: Call, candidates: list[Candidate], clock: Clock, *, proven: bool = False
):
    """The judge's columns for exactly these rows as one call, with the inputs used and the
    truth: ``reference.exact`` itself when ``proven``, else the search oracle."""
    impl = call.implementation
    logits, labels = stack(candidates, impl.op, call.dtype)
    oracle_dtype = "" if proven else call.dtype
    truth = reference_value(impl.op, call.quantity, logits, labels, clock, oracle_dtype)
    started = time.perf_counter()
    judged, got = judge(adapter, call, logits, labels, truth)
    clock.call_s += time.perf_counter() - started
    clock.calls += 1
    return judged, got, logits, labels, truth


def score_batch(
    adapter: Adapter, call: Call, candidates: list[Candidate], clock: Clock
) -> list[Score]:
    """Scores for ``candidates`` (one size): the PEEL worst measured, the others NaN."""
    clock.candidates += len(candidates)
    valid = [c for c in candidates if c.valid()]
    scores = [_score_one(adapter, call, c, clock) for c in candidates if not c.valid()]
    for start in range(0, len(valid), BATCH):
        chunk = valid[start : start + BATCH]
        short = chunk[0].classes <= PAD_UP_TO
        padded = chunk + [chunk[-1]] * (BATCH - len(chunk)) if short else chunk
        judged, got, logits, labels, truth = judge_alone(adapter, call, padded, clock)
        if got is None or not judged.get("worst_index"):  # raised, or no element to blame
            scores += [_score_one(adapter, call, c, clock) for c in chunk]
            continue
        scores += _peel(call, chunk, judged, got, logits, labels, truth, clock)
    return scores


def _score_one(adapter, call, candidate: Candidate, clock: Clock) -> Score:
    judged = judge_alone(adapter, call, [candidate], clock)[0]
    verdict = judged["verdict"]
    ratio = float(judged.get("worst_ratio", math.nan))
    if verdict == "error":
        how = "raised"
    elif not candidate.valid():
        how = "invalid input"
    else:
        how = _how(judged, candidate)
    return Score(candidate, verdict, ratio, how)


def _kind(value) -> str:
    if value is None or value != value:
        return "nan"
    return "finite" if math.isfinite(value) else ("+inf" if value > 0 else "-inf")


def _how(columns: dict, candidate: Candidate) -> str:
    """A broken result's failure mode: the kinds expected and got, and whether masks are in."""
    masked = " masked" if np.isneginf(candidate.logits).any() else ""
    return f"{_kind(columns.get('expected'))}->{_kind(columns.get('got'))}{masked}"


def _row_of(worst_index: str) -> int | None:
    return int(worst_index.strip("()").split(",")[0]) if worst_index else None


def _peel(call, chunk, judged, got, logits, labels, truth, clock) -> list[Score]:
    """Per-row worst ratios of the PEEL worst rows, worst first; the rest unmeasured (NaN)."""
    started = time.perf_counter()
    op, quantity, dtype = call.implementation.op, call.quantity, call.dtype
    ratios: dict[int, tuple[str, float, str]] = {}
    fixed = np.array(got, copy=True)
    perfect = truth.rounded(dtype).astype(fixed.dtype)
    columns = judged
    for _ in range(PEEL):
        row = _row_of(columns["worst_index"])
        ratio = columns["worst_ratio"]
        if row is None or ratio != ratio:
            break
        owner = min(row, len(chunk) - 1)  # padding repeats the last candidate
        how = _how(columns, chunk[owner]) if math.isinf(ratio) else ""
        ratios.setdefault(owner, (_row_verdict(ratio), ratio, how))
        rows = [owner] if owner < len(chunk) - 1 else list(range(owner, len(fixed)))
        fixed[rows] = perfect[rows]
        columns = measure.evaluate(op, quantity, dtype, logits, labels, fixed, truth).as_row()
    clock.judge_s += time.perf_counter() - started
    return [Score(c, *ratios.get(i, ("pass", math.nan))) for i, c in enumerate(chunk)]


def _row_verdict(ratio: float) -> str:
    """A peeled row's verdict from its worst ratio (the rule of ``measure.evaluate``)."""
    if math.isinf(ratio):
        return "wrong"
    return "inaccurate" if ratio > 1 else "pass"
