"""The results schema: one tidy schema per suite, its version and history, the evaluation keys.

Every row the suites produce is a dict of these columns; ``suites.store.rows`` writes and reads
them as parquet, ``suites.store.run_json`` the run's ``run.json``. A version this xentbench
cannot read raises ``IncompatibleRun``, an unreadable file ``CorruptRun``.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

SUITES: tuple[str, ...] = ("accuracy", "timing")

# The version of the results schema below, written into run.json and every parquet file's
# metadata and checked on read. Readers accept every version in READABLE_VERSIONS (columns a
# newer version added read as null); bump it whenever a column changes meaning or is removed.
# 3: the budget of BUDGET_RULE (float32 internals for 16-bit dtypes); budget_ulps, expected and
# got describe the element of worst_ratio, beside the new ulp_error, abs_error and allowance;
# ULPs use the rule's ruler; tier and baseline added. Timing rows keep their raw samples and
# what the process got (contention), the calibration kernel's times, the rounds pooled and the
# peak memory.
# 4: timing rows carry their call ``options`` (part of the timing key; older runs read "") and
# ``others_cpu_s`` and ``waited_s``; ``contended`` is decided by other processes' CPU time on
# the timed cores, our threads' run-queue wait and the CPU share, no longer by the involuntary
# switch rate (suites.timing.contention).
# 5: timing rows keep each round's median (``round_medians_s``): compare decides a change from
# the rounds, whose spread is the between-time noise that pooled samples hide.
# 6: accuracy rows carry ``nats_error``, the largest |got - t| of a value in nats (log-probs,
# logsumexp, losses; suites.judge.measure.NATS_OPS), beside the ULP error; older runs read null.
SCHEMA_VERSION = 6
READABLE_VERSIONS = frozenset({1, 2, 3, 4, 5, 6})


class IncompatibleRun(ValueError):
    """A run directory written with a results schema this version cannot read."""


class CorruptRun(ValueError):
    """A results file or run.json that cannot be read (truncated, not parquet/JSON)."""


# Columns common to every row: which run, which machine, which backend and call.
_COMMON: list[tuple[str, pa.DataType]] = [
    ("run_id", pa.string()),
    ("host", pa.string()),
    ("backend", pa.string()),
    ("backend_version", pa.string()),
    ("implementation", pa.string()),
    ("op", pa.string()),
    ("dtype", pa.string()),
    ("device", pa.string()),
    ("mode", pa.string()),
    ("verdict", pa.string()),
    ("message", pa.string()),
    # Why the harness, not the implementation, produced this row (a timeout, a worker that
    # died): null for a real result. Such rows are retried by the next run into the directory.
    ("harness_error", pa.string()),
]

ACCURACY_SCHEMA = pa.schema(
    [
        *_COMMON,
        ("quantity", pa.string()),
        ("case_id", pa.string()),
        ("family", pa.string()),
        ("n_classes", pa.int64()),
        ("n_elements", pa.int64()),
        ("options", pa.string()),  # the call options, reference.options.canonical; "" for none
        ("max_abs_logit", pa.float64()),
        ("baseline", pa.bool_()),
        ("tier", pa.string()),
        ("worst_ratio", pa.float64()),
        ("ulp_error", pa.float64()),
        ("abs_error", pa.float64()),
        ("nats_error", pa.float64()),  # the largest |got - t| of a value in nats; else NaN
        ("allowance", pa.float64()),
        ("max_ulp_error", pa.float64()),
        ("mean_ulp_error", pa.float64()),
        ("max_rel_error", pa.float64()),
        ("budget_ulps", pa.float64()),
        ("nonfinite_mismatches", pa.int64()),
        ("worst_index", pa.string()),
        ("worst_input", pa.string()),
        ("expected", pa.float64()),
        ("got", pa.float64()),
        ("invariant_failures", pa.string()),
        ("shift", pa.float64()),
        ("shift_verdict", pa.string()),
        ("shift_max_ulp_error", pa.float64()),
        ("elapsed_s", pa.float64()),
        # Where the evaluated input came from: "catalog" (a case) or "hunt" (found by
        # ``xentbench hunt``, case id ``hunt/<op>/<hash>``); null in runs before the column.
        ("source", pa.string()),
    ]
)

TIMING_SCHEMA = pa.schema(
    [
        *_COMMON,
        ("pass", pa.string()),
        # The call options (reference.options.canonical): "" for the plain call, else the
        # realistic training configuration (suites.timing.configs).
        ("options", pa.string()),
        ("shape", pa.string()),
        ("batch", pa.int64()),
        ("n_classes", pa.int64()),
        ("n_elements", pa.int64()),
        ("median_s", pa.float64()),
        ("iqr_s", pa.float64()),
        ("min_s", pa.float64()),
        ("repeats", pa.int64()),
        ("calls_per_repeat", pa.int64()),
        ("compile_s", pa.float64()),
        ("bytes", pa.int64()),
        ("gbps", pa.float64()),
        ("roofline_fraction", pa.float64()),
        ("overhead_s", pa.float64()),
        # Raw samples: the per-call time of every repeat, of every round (--repeat-runs) pooled.
        ("times_s", pa.list_(pa.float64())),
        ("rounds", pa.int64()),
        # The median of each round's samples, in round order (--repeat-runs): compare's unit.
        ("round_medians_s", pa.list_(pa.float64())),
        # What the process got while its kept repeats ran (suites.timing.contention).
        ("threads", pa.int64()),
        ("cpu_s", pa.float64()),
        ("wall_s", pa.float64()),
        ("involuntary_switches", pa.int64()),
        # CPU seconds other processes used on the timed cores meanwhile (null: not measurable).
        ("others_cpu_s", pa.float64()),
        # Seconds our threads waited on the run queue for a CPU (null: no schedstat).
        ("waited_s", pa.float64()),
        ("contended", pa.bool_()),
        ("retries", pa.int64()),
        # The calibration kernel's per-call time before and after each round's measurement.
        ("calibration_s", pa.list_(pa.float64())),
        # Peak bytes one call allocates (--memory on CPU; allocator statistics on a GPU).
        ("peak_bytes", pa.int64()),
    ]
)

SCHEMAS: dict[str, pa.Schema] = {"accuracy": ACCURACY_SCHEMA, "timing": TIMING_SCHEMA}

# The evaluation key: one row per key per run; resume and compare join on it.
KEYS: dict[str, tuple[str, ...]] = {
    "accuracy": ("implementation", "case_id", "dtype", "device", "mode", "quantity"),
    "timing": ("implementation", "shape", "dtype", "device", "mode", "pass", "options"),
}


def key_of(suite: str, row: dict[str, Any]) -> tuple:
    """The evaluation key of a row (or row template): its ``KEYS[suite]`` columns in order."""
    return tuple(row[column] for column in KEYS[suite])
