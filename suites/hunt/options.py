"""Hunting cross-entropy as it is called: reductions, ignore_index, label smoothing, weights.

An option call couples its rows (a mean divides by the kept rows or the summed weights), so
the unit searched here is a whole batch of ``ROWS`` rows with its call options, not one row:
one candidate, one framework call, one exact value. The configurations are the realistic ones
people train with (``CONFIGS``): a mean over a padding-heavy batch (90% of the labels
``ignore_index``) and over an all-ignored one, label smoothing 0.1 and extreme (1.0), class
weights spanning 1e-3..1e3, sample weights of that spread with exact zeros, and the LLM head:
a cap of 30, temperature with z-loss, the three together, and 3 vocabulary-parallel shards
with smoothing; for softmax, log_softmax and logsumexp the options they take (a cap of 30,
temperature 0.5, both), with a cotangent drawn per batch for the vector-Jacobian products of
softmax and log_softmax (ones would make softmax's exactly 0). An implementation
gets those its declaration accepts (``Adapter.unsupported_reason``), each with the first
reduction it offers from the configuration's list; an option it lacks is never emulated.

The oracle is ``reference.exact(op, logits, labels, quantity, **options)`` itself: the search
oracle (``suites.hunt.fastref``) covers the plain ops only, and the options family's rational
arithmetic costs ~4-9 ms for a batch of 8 rows of 16 classes (measured), about the cost of a
framework call; rows are kept at C <= 16 so that it stays so. Batches start from the plain
hunt's structured rows (``suites.hunt.seeds``) and evolve by the plain hunt's row mutations
(one row at a time), scaling the whole batch by 2^k, moving the ignored rows, redrawing the
weights, or switching configuration.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from xentbench.adapters.base import COTANGENT_ONLY_OPS, Adapter, Call
from xentbench.reference import exact
from xentbench.reference.dtypes import numpy_dtype
from xentbench.reference.options import ACCEPTED, UNLABELLED
from xentbench.suites.hunt.candidates import SOFT, SPARSE, representable
from xentbench.suites.hunt.mutate import mutant
from xentbench.suites.hunt.seeds import seed_candidates
from xentbench.suites.judge.call import judge

ROWS = 8  # rows per batch: enough for a mean to overflow float16 or a divisor to matter
CLASSES = (3, 16)  # row sizes taken from the seeds (the exact options path is per element)
IGNORE = -100  # torch's default ignore_index
ELITE = 12


@dataclass(frozen=True)
class Config:
    """A realistic option configuration: scalar options, the reductions to try in order (the
    first the implementation accepts is used), and what is drawn per batch."""

    name: str
    reductions: tuple[str, ...]
    scalars: tuple[tuple[str, Any], ...] = ()
    ignored: float = 0.0  # fraction of rows whose label is IGNORE (sparse labels only)
    class_weight: bool = False
    sample_weight: bool = False
    ops: tuple[str, ...] = ()  # only for these ops (empty: every op whose options it takes)


MEANS = ("mean", "mean_over_valid", "sum_over_batch_size")
CONFIGS: tuple[Config, ...] = (
    Config("mean, 90% ignored", MEANS, (("ignore_index", IGNORE),), ignored=0.9),
    Config("mean, all ignored", MEANS, (("ignore_index", IGNORE),), ignored=1.0),
    Config("smoothing 0.1", ("none",), (("label_smoothing", 0.1),)),
    Config("smoothing 0.1, mean", MEANS, (("label_smoothing", 0.1),)),
    Config("smoothing 1.0", ("none",), (("label_smoothing", 1.0),)),
    Config("class weights 1e-3..1e3, mean", (*MEANS, "sum"), class_weight=True),
    Config("sample weights with zeros, mean", (*MEANS, "sum"), sample_weight=True),
    # The LLM head (reference.head) and vocabulary-parallel shards (reference.shards); the
    # batch scaling by 2^k moves the logits through the cap's saturation.
    Config("softcap 30", ("none",), (("softcap", 30.0),)),
    Config("temperature 0.5, z-loss 1e-4", ("none",), (("temperature", 0.5), ("z_loss", 1e-4))),
    Config(
        "softcap 30, temperature 2, z-loss 1e-4",
        ("none",),
        (("softcap", 30.0), ("temperature", 2.0), ("z_loss", 1e-4)),
    ),
    Config("shards 3, smoothing 0.1", ("none",), (("shards", 3), ("label_smoothing", 0.1))),
    # The softmax family's (no z-loss): a hand-written backward missing 1/T shows here.
    Config("temperature 0.5", ("none",), (("temperature", 0.5),), ops=UNLABELLED),
    Config(
        "softcap 30, temperature 2",
        ("none",),
        (("softcap", 30.0), ("temperature", 2.0)),
        ops=UNLABELLED,
    ),
)
# The ops hunted with option configurations.
OPTION_OPS = (SPARSE, SOFT, *UNLABELLED)


@dataclass(frozen=True)
class Batch:
    """One option candidate: float64 logits [ROWS, C] (dtype values or -inf), labels (class
    ids with IGNORE, or soft rows), the configuration and its drawn options (float64)."""

    logits: np.ndarray
    labels: np.ndarray | None  # None for the unlabelled ops
    config: Config
    options: dict[str, Any] = field(compare=False, hash=False)
    origin: str = ""

    @property
    def classes(self) -> int:
        return int(self.logits.shape[1])

    def valid(self) -> bool:
        return True


def supported_configs(adapter: Adapter, call: Call) -> list[tuple[Config, dict[str, Any]]]:
    """The configurations ``call``'s implementation takes, each with its scalar options (the
    first reduction it accepts)."""
    op = call.implementation.op
    found = []
    for config in CONFIGS:
        if (config.ops and op not in config.ops) or (op != SPARSE and config.ignored):
            continue
        for reduction in config.reductions:
            scalars = {"reduction": reduction, **dict(config.scalars)}
            if reduction == "none":
                del scalars["reduction"]
            if not set(scalars) <= set(ACCEPTED[op]):
                continue  # an option the op has not (ignore_index and shards need class ids)
            probe = _probe(config, scalars, _cotangent(call.implementation.op, call.quantity))
            if adapter.unsupported_reason(dataclasses.replace(call, options=probe)) is None:
                found.append((config, scalars))
                break
    return found


def _cotangent(op: str, quantity: str) -> bool:
    """Whether the call takes a drawn cotangent: the vector-Jacobian products of softmax and
    log_softmax."""
    return op in COTANGENT_ONLY_OPS and quantity == "grad"


def _probe(config: Config, scalars: dict[str, Any], cotangent: bool) -> dict[str, Any]:
    """The options' names with placeholder arrays: enough for ``unsupported_reason``."""
    probe = dict(scalars)
    if cotangent:
        probe["cotangent"] = np.ones(1)
    if config.class_weight:
        probe["class_weight"] = np.ones(1)
    if config.sample_weight:
        probe["sample_weight"] = np.ones(1)
    return probe


def _draw_arrays(rng, config: Config, rows: int, classes: int, dtype: str, op: str) -> dict:
    drawn = {}
    if op in COTANGENT_ONLY_OPS:  # passed to grad calls only (``as_call_inputs``)
        drawn["cotangent"] = representable(rng.standard_normal((rows, classes)), dtype)
    if config.class_weight:
        drawn["class_weight"] = representable(10.0 ** rng.uniform(-3.0, 3.0, classes), dtype)
    if config.sample_weight:
        weights = np.where(rng.random(rows) < 0.2, 0.0, 10.0 ** rng.uniform(-3.0, 3.0, rows))
        drawn["sample_weight"] = representable(weights, dtype)
    return drawn


def _ignore(rng, labels: np.ndarray, fraction: float) -> np.ndarray:
    """``fraction`` of the rows (at least one kept unless all are ignored) set to IGNORE."""
    count = len(labels) if fraction >= 1 else min(len(labels) - 1, round(fraction * len(labels)))
    labels = labels.copy()
    labels[rng.permutation(len(labels))[:count]] = IGNORE
    return labels


def first_batches(rng, op: str, dtype: str, configs, per_config: int = 4) -> list[Batch]:
    """``per_config`` batches per configuration, of the structured seed rows of one size."""
    rows = [c for c in seed_candidates(op, dtype, rng) if c.classes in CLASSES and c.valid()]
    batches = []
    for config, scalars in configs:
        for index in range(per_config):
            size = CLASSES[index % len(CLASSES)]
            pool = [c for c in rows if c.classes == size]
            picked = [pool[int(i)] for i in rng.integers(len(pool), size=ROWS)]
            origin = f"{config.name}: " + ",".join(sorted({c.origin.split()[0] for c in picked}))
            batches.append(_assemble(rng, picked, config, scalars, op, dtype, origin[:160]))
    return batches


def _assemble(rng, picked, config, scalars, op, dtype, origin) -> Batch:
    logits = np.stack([c.logits for c in picked])
    if op == SPARSE:
        labels = _ignore(rng, np.array([c.label for c in picked], np.int64), config.ignored)
    elif op in UNLABELLED:
        labels = None
    else:
        labels = np.stack([c.label for c in picked])
    options = {**scalars, **_draw_arrays(rng, config, len(picked), logits.shape[1], dtype, op)}
    return Batch(logits, labels, config, options, origin)


def mutate_batch(rng, parent: Batch, op: str, dtype: str, configs) -> Batch:
    """One move: a row mutated, the batch scaled by 2^k, the ignored rows moved, the weights
    redrawn, or another configuration."""
    move = int(rng.integers(5))
    logits, labels, options = parent.logits.copy(), parent.labels, dict(parent.options)
    labels = None if labels is None else labels.copy()
    config, step = parent.config, ""
    if move == 0:
        row = int(rng.integers(len(logits)))
        kept = labels[row] if op == SPARSE and labels[row] != IGNORE else None
        child = _row_mutant(rng, parent, row, op, dtype)
        if child is not None:
            logits[row] = child.logits
            if labels is not None:
                labels[row] = child.label if kept is not None or op != SPARSE else labels[row]
            step = f"row {row}: {child.origin.split('|')[-1]}"
    elif move == 1:
        k = int(rng.integers(-4, 5))
        logits = representable(np.ldexp(logits, k), dtype)
        step = f"x*2^{k}"
    elif move == 2 and op == SPARSE and config.ignored:
        valid = np.where(labels == IGNORE, rng.integers(logits.shape[1], size=len(labels)), labels)
        labels, step = _ignore(rng, valid, config.ignored), "ignored rows moved"
    elif move == 3 and (config.class_weight or config.sample_weight):
        drawn = _draw_arrays(rng, config, len(logits), logits.shape[1], dtype, op)
        options.update({name: value for name, value in drawn.items() if name != "cotangent"})
        step = "weights redrawn"
    else:
        config, scalars = configs[int(rng.integers(len(configs)))]
        return _assemble(rng, list(_rows_of(parent, op)), config, scalars, op, dtype, config.name)
    origin = f"{parent.origin}|{step}" if step else parent.origin
    return Batch(logits, labels, config, options, origin[-200:])


def _rows_of(batch: Batch, op: str):
    from xentbench.suites.hunt.candidates import Candidate

    labels = [None] * len(batch.logits) if batch.labels is None else batch.labels
    for row, label in zip(batch.logits, labels, strict=True):
        if op == SPARSE:
            label = int(label) if label != IGNORE else 0
        yield Candidate(row, label, batch.origin)


def _row_mutant(rng, batch: Batch, row: int, op: str, dtype: str):
    """A mutant of one row of the same size with a valid label, or None."""
    parent = list(_rows_of(batch, op))[row]
    for _ in range(4):
        child = mutant(rng, parent, op, dtype)
        if child.classes == parent.classes and child.valid():
            return child
    return None


def truth_of(op: str, quantity: str, batch: Batch, dtype: str):
    """The exact value of the batch's call, or the ValueError of invalid input."""
    logits, labels, options = as_call_inputs(batch, op, dtype, quantity)
    try:
        return exact(op, logits, labels, quantity, **options)
    except ValueError as exc:
        return exc


def as_call_inputs(batch: Batch, op: str, dtype: str, quantity: str):
    """(logits, labels, options) of ``quantity``'s call in the dtype (class ids as int64; the
    drawn cotangent for a vector-Jacobian product only)."""
    target = numpy_dtype(dtype)
    labels = batch.labels if op == SPARSE or batch.labels is None else batch.labels.astype(target)
    options = {
        name: value.astype(target) if isinstance(value, np.ndarray) else value
        for name, value in batch.options.items()
        if name != "cotangent" or _cotangent(op, quantity)
    }
    return batch.logits.astype(target), labels, options


def judge_batch(adapter: Adapter, call: Call, batch: Batch):
    """(the judge's columns, the options call, inputs, truth) for one batch."""
    op, dtype = call.implementation.op, call.dtype
    logits, labels, options = as_call_inputs(batch, op, dtype, call.quantity)
    truth = truth_of(op, call.quantity, batch, dtype)
    option_call = dataclasses.replace(call, options=options)
    judged, _ = judge(adapter, option_call, logits, labels, truth)
    return judged, option_call, logits, labels, truth


def ratio_of(judged: dict[str, Any]) -> float:
    ratio = judged.get("worst_ratio", math.nan)
    return math.nan if ratio is None else float(ratio)


__all__ = ["CONFIGS", "SOFT", "SPARSE", "Batch", "Config", "supported_configs"]
