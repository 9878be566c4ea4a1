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
runner plans one round at a time (``only_round``, pooling with the stored rows of the earlier
rounds), each in a worker process of its own or, in the default profile, one after the other
in one worker (``suites.timing.profiles``).
"""

from __future__ import annotations

import functools
import gc
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from xentbench.adapters.base import GRADIENT_OPS, Adapter, Call, numpy_dtype
from xentbench.suites.catalog.selection import Selection
from xentbench.suites.store.schema import key_of
from xentbench.suites.timing import configs, contention, harness, memory
from xentbench.suites.timing.inputs import OVERHEAD_SHAPE, InputFactory, moved_bytes
from xentbench.suites.timing.rounds import Pool, poolable

PASSES: dict[str, str] = {"forward": "value", "forward+backward": "grad"}  # pass -> quantity
_FREE_EAGERLY_ELEMENTS = 1 << 20  # collect garbage after tasks at least this big


def shape_name(batch: int, classes: int) -> str:
    return f"{batch}x{classes}"


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
class _Plan:
    """What every task of one plan shares: adapter, inputs, bandwidth, overhead cache, options."""

    adapter: Adapter
    inputs: InputFactory
    bandwidth_gbps: float
    measure_options: dict[str, float]
    overheads: dict[tuple, float | None] = field(default_factory=dict)
    pools: dict[tuple, Pool] = field(default_factory=dict)
    memory: bool = False
    overhead_options: dict[str, float] = field(default_factory=dict)  # beyond measure_options

    def overhead_s(self, call: Call) -> float | None:
        """Median on a [1, 2] input (the fixed per-call cost), once per signature; None on error."""
        signature = (call.implementation.name, call.dtype, call.device, call.mode, call.quantity)
        signature += (configs.options_label(call),)
        if signature not in self.overheads:
            tiny_inputs = InputFactory(self.inputs.seed)  # leaves the shared masters alone
            try:
                options = {**self.measure_options, **self.overhead_options}
                self.overheads[signature] = _prepare_and_measure(
                    self.adapter, tiny_inputs, call, OVERHEAD_SHAPE, options
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


def _measured_row(plan: _Plan, call: Call, row: dict, pool: Pool) -> dict:
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
    pool = plan.pools.setdefault(key_of("timing", row), Pool())
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
    overhead_window_s: float | None = None,
) -> list[TimingTask]:
    """Every timing task ``selection`` asks of ``adapter``, shape by shape (inputs are reused).

    Passes: ``forward`` for every implementation, ``forward+backward`` (quantity ``grad``) for
    those declaring ``gradient=True``; each in the plain configuration and, for the sparse
    cross-entropies that declare its options, the training one (``suites.timing.configs``:
    mean over non-ignored rows, a quarter ignored, label smoothing 0.1); for the cross-entropies
    declaring ``softcap``, the LLM head's (soft-cap 30, z-loss 1e-4); the head's compositions
    never plain. Unsupported
    combinations still get a task whose row says why, so reports show the gap instead of
    silently omitting it. ``rounds`` repeats the whole grid (interleaved: round 2 starts after
    round 1 has visited every task); ``only_round`` plans one of them, in a process of its own
    (the runner's way: see ``suites.run.runner``), pooling with the ``stored`` rows of the
    earlier rounds; ``memory`` adds the CPU peak memory of each op, measured once, in the last
    round; ``overhead_window_s`` samples the per-call overhead in a shorter window, without the
    contention check's retries (a profile's choice: ``suites.timing.profiles``).
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
    if overhead_window_s is not None:
        plan.overhead_options = {"min_window_s": overhead_window_s}
        plan.overhead_options |= (
            {"max_retries": 0} if overhead_window_s < harness.MIN_WINDOW_S else {}
        )
    earlier = {key: row for key, row in (stored or {}).items() if poolable(row)}
    plan.pools = {key: Pool.from_row(row) for key, row in earlier.items()}
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
            calls += configs.training_calls(calls) + configs.head_calls(calls)
            calls = [call for call in calls if configs.is_timed(call)]
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
