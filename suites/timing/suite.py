"""Timing tasks: one adapter and one ``Selection`` in, one tidy ``TIMING_SCHEMA`` row per task out.

A task is one (implementation, shape, dtype, device, mode, pass). Its inputs are generated
from the selection's seed and converted by the adapter (``prepare``) before any timing; only
``PreparedCall.run`` is timed (see ``suites.timing.harness``). Each row also carries what a reader
needs to judge the number: bytes moved, throughput against the machine's memory bandwidth,
and the implementation's fixed per-call overhead measured on a tiny input.

Every row keeps its raw samples (``times_s``), what the process got while they were taken
(``suites.timing.contention``) and the calibration kernel's time just before and after. With
``rounds`` > 1 (``--repeat-runs``) the whole grid is measured ``rounds`` times over, round after
round, so a slow phase of a shared machine spreads over every implementation and shape instead
of hitting one; each round's task returns the row of its key with the samples of the rounds
so far pooled (the store keeps the last), so an interrupted run keeps what it measured. The
runner gives each round a worker process of its own (``only_round``, pooling with the stored
rows of the earlier rounds); planned without it, the rounds run in one process.
"""

from __future__ import annotations

import functools
import gc
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from xentbench.adapters.base import GRADIENT_OPS, LABELLED_OPS, Adapter, Call, numpy_dtype
from xentbench.reference.evaluate import output_shape
from xentbench.suites.catalog.selection import Selection
from xentbench.suites.store.schema import key_of
from xentbench.suites.timing import configs, contention, harness, memory

PASSES: dict[str, str] = {"forward": "value", "forward+backward": "grad"}  # pass -> quantity
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
OVERHEAD_SHAPE = (1, 2)
LOGITS_SCALE = 4.0  # logits ~ normal(0, 4): both signs, several units apart, like real classifiers
_FREE_EAGERLY_ELEMENTS = 1 << 20  # collect garbage after tasks at least this big
_KIND_STREAM = {"logits": 0, "soft": 1, "sparse": 2, "sigmoid": 3}
_LABEL_KIND = {
    "softmax_cross_entropy": "soft",
    "sparse_softmax_cross_entropy": "sparse",
    "sigmoid_cross_entropy": "sigmoid",
}


def shape_name(batch: int, classes: int) -> str:
    return f"{batch}x{classes}"


def moved_bytes(
    op: str, batch: int, classes: int, itemsize: int, pass_: str, reduced: bool = False
) -> int:
    """Bytes a memory-bound implementation must move: inputs read plus outputs written.

    Logits are read once; labels are read once (int64 class ids for the sparse op, logits-shaped
    otherwise); the output is logits-shaped for softmax, log_softmax and the sigmoid loss and one
    value per row for the reductions (one value in all when ``reduced``: a mean or sum over
    the batch). ``forward+backward`` also writes the logits-shaped gradient. This is the least
    traffic of a fused single pass, so ``roofline_fraction`` is the share of the memory-bound
    optimum an implementation reaches (above 1 only for inputs that fit in cache, where DRAM
    bandwidth is not the limit).
    """
    full = batch * classes * itemsize
    per_row = batch * itemsize
    labels = {"soft": full, "sigmoid": full, "sparse": batch * 8}.get(_LABEL_KIND.get(op), 0)
    output = full if output_shape(op, "value", (batch, classes)) == (batch, classes) else per_row
    output = itemsize if reduced else output
    gradient = full if pass_ == "forward+backward" else 0
    return full + labels + output + gradient


def _generate(kind: str, batch: int, classes: int, seed: int) -> np.ndarray:
    """One input in float64 (int64 for class ids), from its own seeded stream."""
    rng = np.random.default_rng([seed, batch, classes, _KIND_STREAM[kind]])
    if kind == "logits":
        return rng.normal(0.0, LOGITS_SCALE, size=(batch, classes))
    if kind == "sparse":
        return rng.integers(0, classes, size=batch, dtype=np.int64)
    values = rng.random((batch, classes))
    if kind == "soft":
        values /= values.sum(axis=-1, keepdims=True)  # one probability distribution per row
    return values


class InputFactory:
    """Seeded inputs for any op and dtype, keeping the float64 masters of one shape at a time.

    Tasks are planned shape by shape, so consecutive tasks reuse the masters and only round
    them to their dtype; asking for another shape (or ``clear``) frees the previous ones.
    """

    def __init__(self, seed: int):
        self.seed = seed
        self._shape: tuple[int, int] | None = None
        self._masters: dict[str, np.ndarray] = {}

    def clear(self) -> None:
        self._shape, self._masters = None, {}

    def _master(self, kind: str, batch: int, classes: int) -> np.ndarray:
        if self._shape != (batch, classes):
            self.clear()
            self._shape = (batch, classes)
        if kind not in self._masters:
            self._masters[kind] = _generate(kind, batch, classes, self.seed)
        return self._masters[kind]

    def inputs(
        self, op: str, batch: int, classes: int, dtype: str
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """(logits, labels) as ``Adapter.prepare`` expects them, rounded to ``dtype``."""
        target = numpy_dtype(dtype)
        logits = self._master("logits", batch, classes).astype(target)
        if op not in LABELLED_OPS:
            return logits, None
        labels = self._master(_LABEL_KIND[op], batch, classes)
        return logits, labels if labels.dtype == np.int64 else labels.astype(target)


@dataclass
class TimingTask:
    """One timing evaluation: its results key, a progress label, and how to produce its row."""

    key: tuple
    label: str
    template: dict[str, Any]  # the row without measurements: what a crash row records
    evaluate: Callable[[], dict[str, Any]] = field(repr=False)


def _prepare_and_measure(
    adapter: Adapter, inputs: InputFactory, call: Call, shape: tuple[int, int], options: dict
) -> tuple[harness.Measurement, int | None]:
    """Make and convert inputs (untimed), then time ``run``; framework errors propagate.

    Returns the measurement and, on an accelerator, the peak bytes of one more call.
    """
    logits, labels = inputs.inputs(call.implementation.op, *shape, call.dtype)
    if labels is not None:
        labels = configs.padded(labels, call.options, inputs.seed)
    prepared = adapter.prepare(call, logits, labels)
    del logits, labels  # the adapter keeps what it needs; large copies go with the task
    measured = harness.measure(prepared.run, device=call.device, **options)
    return measured, memory.device_peak_bytes(adapter.name, prepared.run, call.device)


@dataclass
class _Pool:
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
    def from_row(cls, row: dict[str, Any]) -> _Pool:
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


@dataclass
class _Plan:
    """What every task of one plan shares: adapter, inputs, bandwidth, overhead cache, options."""

    adapter: Adapter
    inputs: InputFactory
    bandwidth_gbps: float
    measure_options: dict[str, float]
    overheads: dict[tuple, float | None] = field(default_factory=dict)
    pools: dict[tuple, _Pool] = field(default_factory=dict)
    memory: bool = False

    def overhead_s(self, call: Call) -> float | None:
        """Median on a [1, 2] input (the fixed per-call cost), once per signature; None on error."""
        signature = (call.implementation.name, call.dtype, call.device, call.mode, call.quantity)
        signature += (configs.options_label(call),)
        if signature not in self.overheads:
            tiny_inputs = InputFactory(self.inputs.seed)  # leaves the shared masters alone
            try:
                self.overheads[signature] = _prepare_and_measure(
                    self.adapter, tiny_inputs, call, OVERHEAD_SHAPE, self.measure_options
                )[0].median_s
            except Exception:  # the task's own measurement reports any error
                self.overheads[signature] = None
        return self.overheads[signature]


_MEASURED_COLUMNS = (
    "median_s",
    "iqr_s",
    "min_s",
    "repeats",
    "calls_per_repeat",
    "compile_s",
    "gbps",
    "roofline_fraction",
    "overhead_s",
    "times_s",
    "rounds",
    "round_medians_s",
    "threads",
    "cpu_s",
    "wall_s",
    "involuntary_switches",
    "others_cpu_s",
    "waited_s",
    "contended",
    "retries",
    "calibration_s",
    "peak_bytes",
)


def _base_row(adapter: Adapter, call: Call, pass_: str, batch: int, classes: int) -> dict:
    """Every column but the runner's (run_id, host, backend_version); measurements empty."""
    impl = call.implementation
    itemsize = numpy_dtype(call.dtype).itemsize
    return {
        "backend": adapter.name,
        "implementation": impl.name,
        "op": impl.op,
        "dtype": call.dtype,
        "device": call.device,
        "mode": call.mode,
        "pass": pass_,
        "options": configs.options_label(call),
        "shape": shape_name(batch, classes),
        "batch": batch,
        "n_classes": classes,
        "n_elements": batch * classes,
        "verdict": None,
        "message": "",
        "bytes": moved_bytes(impl.op, batch, classes, itemsize, pass_, configs.reduces_rows(call)),
        **dict.fromkeys(_MEASURED_COLUMNS),
    }


def _measured_row(plan: _Plan, call: Call, row: dict, pool: _Pool) -> dict:
    """The row of a key from its pooled samples (every round so far)."""
    q25, median, q75 = np.percentile(pool.times_s, [25, 50, 75])
    median = float(median)
    gbps = row["bytes"] / median / 1e9 if median > 0 else None
    summary = harness.spread_note(median, float(q75 - q25))
    return {
        **row,
        "verdict": "ok",
        "message": "; ".join([*pool.notes, summary] if summary else pool.notes),
        "median_s": median,
        "iqr_s": float(q75 - q25),
        "min_s": min(pool.times_s),
        "repeats": len(pool.times_s),
        "calls_per_repeat": pool.calls_per_repeat,
        "compile_s": max(0.0, pool.first_call_s - median) if call.mode == "compiled" else None,
        "gbps": gbps,
        "roofline_fraction": gbps / plan.bandwidth_gbps if gbps and plan.bandwidth_gbps else None,
        "overhead_s": pool.overhead_s if pool.overhead_s is not None else plan.overhead_s(call),
        "times_s": list(pool.times_s),
        "rounds": pool.rounds,
        "round_medians_s": list(pool.round_medians_s),
        "threads": contention.framework_threads(),
        "cpu_s": pool.usage.cpu_s,
        "wall_s": pool.usage.wall_s,
        "involuntary_switches": pool.usage.involuntary_switches,
        "others_cpu_s": pool.usage.others_s,
        "waited_s": pool.usage.waited_s,
        "contended": pool.contended,
        "retries": pool.retries,
        "calibration_s": list(pool.calibration_s),
    }


def _memory_request(plan: _Plan, call: Call, row: dict) -> dict[str, Any]:
    return {
        "backend": plan.adapter.name,
        "implementation": call.implementation.name,
        "dtype": call.dtype,
        "device": call.device,
        "mode": call.mode,
        "quantity": call.quantity,
        "batch": row["batch"],
        "classes": row["n_classes"],
        "seed": plan.inputs.seed,
        "options": call.options,  # scalars only (suites.timing.configs), so JSON carries them
    }


def _evaluate_row(plan: _Plan, call: Call, row: dict, final_round: bool) -> dict[str, Any]:
    """The row for one task; never raises for framework errors (they become ``error`` rows)."""
    reason = plan.adapter.unsupported_reason(call)
    if reason is not None:
        return {**row, "verdict": "unsupported", "message": reason}
    shape = (row["batch"], row["n_classes"])
    try:
        calibration_before = harness.calibration_s()
        measurement, peak = _prepare_and_measure(
            plan.adapter, plan.inputs, call, shape, plan.measure_options
        )
        calibration_after = harness.calibration_s()
    except Exception as exc:  # a framework failure is a result, not a crash
        error = f"{type(exc).__name__}: {exc}"
        earlier = plan.pools.get(key_of("timing", row))
        if earlier is None:
            return {**row, "verdict": "error", "message": error}
        # Earlier rounds measured it: keep their samples, say what this round hit.
        earlier.notes.append(f"round {earlier.rounds + 1}: {error}")
        return {**_measured_row(plan, call, row, earlier), "peak_bytes": None}
    pool = plan.pools.setdefault(key_of("timing", row), _Pool())
    pool.add(measurement, (calibration_before, calibration_after))
    measured = _measured_row(plan, call, row, pool)
    if plan.memory and final_round and call.device == "cpu":
        peak, why_not = memory.cpu_peak_bytes(_memory_request(plan, call, row))
        if why_not:
            measured["message"] = "; ".join(filter(None, [measured["message"], why_not]))
    measured["peak_bytes"] = peak
    return measured


def _evaluate(
    plan: _Plan, call: Call, row: dict, last_of_shape: bool, final_round: bool
) -> dict[str, Any]:
    """``_evaluate_row``, then free the shape's inputs after its last task."""
    try:
        return _evaluate_row(plan, call, row, final_round)
    finally:
        # Device tensors caught in reference cycles go now, not mid-timing: the young
        # generations after each big task (a full collection costs ~1 s with TensorFlow
        # loaded), everything once a shape is done.
        if last_of_shape:
            plan.inputs.clear()
            gc.collect()
        elif row["n_elements"] >= _FREE_EAGERLY_ELEMENTS:
            gc.collect(1)


def _poolable(row: dict[str, Any]) -> bool:
    """A stored row a later round can add to: measured, with its samples (schema 3 on)."""
    return row.get("verdict") == "ok" and bool(row.get("times_s"))


def pooled_rounds(row: dict[str, Any]) -> float:
    """How many rounds a stored row holds for resuming: infinite where no round can add to
    it (unsupported, an error, no samples), so every round counts it done."""
    return (row.get("rounds") or 1) if _poolable(row) else math.inf


def _timed(impl) -> tuple[str, ...]:
    """The quantities a plain timing measures: the value and, for the ops whose gradient of the
    summed output is defined without a cotangent, forward+backward (not jvp or VJPs)."""
    return tuple(
        q for q in impl.quantities if q == "value" or (q == "grad" and impl.op in GRADIENT_OPS)
    )


def plan_timing(
    adapter: Adapter,
    selection: Selection,
    *,
    bandwidth_gbps: float,
    min_repeat_s: float = harness.DEFAULT_MIN_REPEAT_S,
    repeats: int = harness.DEFAULT_REPEATS,
    max_total_s: float = harness.DEFAULT_MAX_TOTAL_S,
    max_retries: int = harness.DEFAULT_MAX_RETRIES,
    rounds: int = 1,
    only_round: int | None = None,
    stored: dict[tuple, dict[str, Any]] | None = None,
    memory: bool = False,
) -> list[TimingTask]:
    """Every timing task ``selection`` asks of ``adapter``, shape by shape (inputs are reused).

    Passes: ``forward`` for every implementation, ``forward+backward`` (quantity ``grad``) for
    those declaring ``gradient=True``; each in the plain configuration and, for the sparse
    cross-entropies that declare its options, the training one (``suites.timing.configs``:
    mean over non-ignored rows, a quarter ignored, label smoothing 0.1). Unsupported
    combinations still get a task whose row says why, so reports show the gap instead of
    silently omitting it. ``rounds`` repeats the whole grid (interleaved: round 2 starts after
    round 1 has visited every task); ``only_round`` plans one of them, in a process of its own
    (the runner's way: see ``suites.run.runner``), pooling with the ``stored`` rows of the
    earlier rounds; ``memory`` adds the CPU peak memory of each op, measured once, in the last
    round.
    """
    if rounds < 1:
        raise ValueError(f"rounds must be at least 1, got {rounds}")
    if only_round is not None and not 1 <= only_round <= rounds:
        raise ValueError(f"only_round must be in 1..{rounds}, got {only_round}")
    options = {
        "min_repeat_s": min_repeat_s,
        "repeats": repeats,
        "max_total_s": max_total_s,
        "max_retries": max_retries,
    }
    plan = _Plan(adapter, InputFactory(selection.seed), bandwidth_gbps, options, memory=memory)
    earlier = {key: row for key, row in (stored or {}).items() if _poolable(row)}
    plan.pools = {key: _Pool.from_row(row) for key, row in earlier.items()}
    pass_of = {quantity: pass_ for pass_, quantity in PASSES.items()}
    wanted = [impl for impl in adapter.implementations() if selection.wants_implementation(impl)]
    # The linear op takes hidden states and a weight, not logits: tests/bench/linear_ce_benchmark.py
    # times it (with its peak memory); this suite's inputs are logits.
    wanted = [impl for impl in wanted if impl.op != "linear_cross_entropy"]
    # Baselines (a naive formula, probabilities where logits belong) demonstrate accuracy
    # lessons; their speed is nobody's choice, so they are timed only when --impl asks for
    # implementations by name. This keeps the default grid's time with the training rows added.
    if selection.implementations == ("*",):
        wanted = [impl for impl in wanted if not impl.baseline]
    tasks: list[TimingTask] = []
    for round_ in range(1, rounds + 1) if only_round is None else (only_round,):
        for batch, classes in selection.shapes:
            calls = [call for impl in wanted for call in selection.calls(impl, _timed(impl))]
            calls += configs.training_calls(calls)
            for index, call in enumerate(calls):
                row = _base_row(adapter, call, pass_of[call.quantity], batch, classes)
                key = key_of("timing", row)
                label = " ".join(str(part) for part in key)
                if rounds > 1:
                    label = f"[{round_}/{rounds}] {label}"
                last = index == len(calls) - 1
                evaluate = functools.partial(_evaluate, plan, call, row, last, round_ == rounds)
                template = earlier.get(key, row)  # a crash must not drop the earlier rounds
                tasks.append(TimingTask(key=key, label=label, template=template, evaluate=evaluate))
    return tasks
