"""The search: for one target (implementation, dtype, device, mode, quantity), evolve inputs
towards the largest ``worst_ratio`` (error / allowance) or a wrong verdict, within a budget.

A population starts from the structured seeds (``suites.hunt.seeds``) and, unless the hunt is
``from_scratch``, the catalog's own rows; each generation mutates (``suites.hunt.mutate``) the
best candidates so far (rank-weighted, now and then a seed again for diversity) and the oracle
(``suites.hunt.oracle``) scores the children. The search keeps the broken inputs (a wrong kind
of number, a raise on valid input, a number for invalid input), the smallest found of each
failure mode (the kinds expected and got, masks or not), and the input of largest finite ratio.
It is deterministic for a seed as long as ``max_evals``, not the time budget, ends it.
"""

from __future__ import annotations

import math
import time
import zlib
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from xentbench.adapters.base import Adapter, Call
from xentbench.suites.hunt import DEFAULT_BUDGET_S
from xentbench.suites.hunt.candidates import SIZES, Candidate, make
from xentbench.suites.hunt.mutate import mutant
from xentbench.suites.hunt.oracle import BATCH, Clock, Score, score_batch
from xentbench.suites.hunt.seeds import large_row_seeds, seed_candidates

ELITE = 12
WARMUP_CAP = 1.0  # first calls at new shapes may add up to this many budgets
RESEED = 0.1  # chance that a parent is drawn from the seeds, not the elite


@dataclass(frozen=True)
class HuntSpec:
    """How hard to hunt: seconds and candidates per target, and whether to start from the
    catalog's rows too (not ``from_scratch``)."""

    budget_s: float = DEFAULT_BUDGET_S
    max_evals: int = 4000
    from_scratch: bool = False
    quantities: tuple[str, ...] = ("value", "grad")
    options: bool = True  # also hunt the option configurations (``suites.hunt.options``)


@dataclass
class Found:
    """What one target's search found, and when."""

    broken: dict[str, Score] = field(default_factory=dict)  # the smallest of each failure mode
    worst: Score | None = None
    first_failure: str = ""  # "0.42 s, 96 candidates"
    clock: Clock = field(default_factory=Clock)
    when: dict[int, str] = field(default_factory=dict)  # id(kept score) -> when it was found

    def now(self) -> str:
        elapsed = time.perf_counter() - self.clock.started
        return f"{elapsed:.2f} s, {self.clock.candidates} candidates"


def target_seed(seed: int, call: Call) -> np.random.Generator:
    """The target's own random stream: the same for a seed, whatever else is hunted."""
    name = f"{call.implementation.name}/{call.dtype}/{call.device}/{call.mode}/{call.quantity}"
    return np.random.default_rng([seed, zlib.crc32(name.encode())])


def hunt(
    adapter: Adapter,
    call: Call,
    spec: HuntSpec,
    seed: int,
    extra_seeds: tuple[Candidate, ...] = (),
) -> Found:
    """Search ``call``'s inputs within ``spec``'s budget; what it found."""
    op, dtype = call.implementation.op, call.dtype
    rng = target_seed(seed, call)
    found = Found()
    deadline = found.clock.started + spec.budget_s
    seeds = [*seed_candidates(op, dtype, rng), *extra_seeds, *large_row_seeds(op, dtype, rng)]
    elite: list[Score] = []
    shapes: set[int] = set()
    warmup = [0.0]  # seconds spent on first calls at a new shape (compilation), not searching

    def over() -> bool:
        late = time.perf_counter() >= deadline + min(warmup[0], WARMUP_CAP * spec.budget_s)
        return found.clock.candidates >= spec.max_evals or late

    def take(batch: list[Candidate]) -> None:
        calls_before = found.clock.call_s
        for score in score_batch(adapter, call, batch, found.clock):
            _keep(found, elite, score)
        if batch[0].classes not in shapes:  # the framework's first call at this shape
            shapes.add(batch[0].classes)
            warmup[0] += found.clock.call_s - calls_before

    for group in _by_size(seeds):
        for start in range(0, len(group), BATCH):
            if over():
                return found
            take(group[start : start + BATCH])
    pending: dict[int, list[Candidate]] = {}
    while not over():
        for _ in range(BATCH):
            child = mutant(rng, _parent(rng, elite, seeds), op, dtype)
            pending.setdefault(child.classes, []).append(child)
        size = max(pending, key=lambda s: (len(pending[s]), -s))
        batch, pending[size] = pending[size][:BATCH], pending[size][BATCH:]
        take(batch)
    return found


def _by_size(candidates: list[Candidate]) -> list[list[Candidate]]:
    groups: dict[int, list[Candidate]] = {}
    for candidate in candidates:
        groups.setdefault(candidate.classes, []).append(candidate)
    return list(groups.values())


def _parent(rng: np.random.Generator, elite: list[Score], seeds: list[Candidate]) -> Candidate:
    if not elite or rng.random() < RESEED:
        return seeds[int(rng.integers(len(seeds)))]
    weights = 1.0 / (1.0 + np.arange(len(elite)))
    return elite[int(rng.choice(len(elite), p=weights / weights.sum()))].candidate


def _keep(found: Found, elite: list[Score], score: Score) -> None:
    """Record a scored candidate: the smallest broken one of each failure mode, the worst
    finite one, the elite."""
    if score.failing and not found.first_failure:
        found.first_failure = found.now()
    if score.broken:
        known = found.broken.get(score.signature)
        if known is None or score.candidate.classes < known.candidate.classes:
            found.broken[score.signature] = score
            found.when[id(score)] = found.now()
        return
    if score.ratio != score.ratio:  # not measured
        return
    if found.worst is None or score.ratio > found.worst.ratio:
        found.worst = score
        found.when[id(score)] = found.now()
    elite.append(score)
    elite.sort(key=lambda s: -s.ratio)
    del elite[ELITE:]


@lru_cache(maxsize=16)
def catalog_seeds(op: str, dtype: str, seed: int, rows_per_case: int = 4) -> tuple[Candidate, ...]:
    """Rows of the catalog's plain cases for ``op`` and ``dtype`` (finite or masked, C in
    range; option cases are the options hunt's business);
    computed once per op and dtype, shared by the targets of a worker."""
    from xentbench.suites.catalog import cases

    found = []
    for case in cases.catalog():
        if case.op != op or dtype not in case.dtypes or case.classes > max(SIZES):
            continue
        logits, labels = case.inputs(dtype, seed)
        x = logits.astype(np.float64)
        if case.options or x.ndim != 2:  # rows of the plain ops only (not [N, C, d] layouts)
            continue
        for row in range(min(rows_per_case, len(x))):
            if np.isnan(x[row]).any() or np.isposinf(x[row]).any():
                continue
            label = None if labels is None else labels[row]
            label = int(label) if label is not None and np.ndim(label) == 0 else label
            found.append(make(x[row], label, f"catalog {case.id}[{row}]", op, dtype))
    return tuple(found)


def elapsed_text(seconds: float) -> str:
    return f"{seconds:.2f} s" if math.isfinite(seconds) else "?"
