"""The results store: one tidy schema per suite, one writer, one reader.

A run directory holds ``run.json`` (machine, versions, commands) and, per suite and backend,
``<suite>-<backend>.parquet``. While a backend runs, rows land in small part files under
``parts/<suite>-<backend>/`` written atomically (temp file + fsync + rename), so an interrupted
run loses at most the rows in flight and a re-run resumes from what is stored. Merging reads the
parts it finds and deletes exactly those, by name. Nothing is read or written through a symlink
inside the run directory (``suites.store.safe_paths``); one writer at a time is
``suites.run.lock``'s.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from xentbench.suites.store.safe_paths import (
    atomic_write,
    atomic_write_text,
    inside,
    open_no_follow,
    regular_files,
)

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
SCHEMA_VERSION = 5
READABLE_VERSIONS = frozenset({1, 2, 3, 4, 5})
_VERSION_KEY = b"xentbench.schema_version"


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


def _table(suite: str, rows: list[dict[str, Any]]) -> pa.Table:
    schema = SCHEMAS[suite]
    unknown = set().union(*(row.keys() for row in rows)) - set(schema.names)
    if unknown:
        raise ValueError(f"{suite} rows have columns outside the schema: {sorted(unknown)}")
    columns = {
        field.name: [_stored(row.get(field.name), field.type) for row in rows] for field in schema
    }
    return pa.table(columns, schema=_versioned(schema))


def _versioned(schema: pa.Schema) -> pa.Schema:
    return schema.with_metadata({_VERSION_KEY: str(SCHEMA_VERSION).encode()})


def _read(path: Path, suite: str) -> pa.Table:
    """One parquet file of ``suite``, its schema version checked (files before versioning: 1)."""
    try:
        metadata = pq.read_schema(path).metadata or {}
    except (pa.ArrowException, OSError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise CorruptRun(f"{path} is not a readable results file ({exc})") from None
    version = int(metadata.get(_VERSION_KEY, b"1"))
    if version not in READABLE_VERSIONS:
        raise IncompatibleRun(
            f"{path} has results schema version {version}; this xentbench reads versions "
            f"{', '.join(map(str, sorted(READABLE_VERSIONS)))}: use the matching xentbench, "
            "or start a new run directory"
        )
    try:
        return _plain_options(suite, pq.read_table(path, schema=SCHEMAS[suite]))
    except (pa.ArrowException, OSError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise CorruptRun(f"{path} is not a readable {suite} results file ({exc})") from None


def _plain_options(suite: str, table: pa.Table) -> pa.Table:
    """Timing rows from before schema 4 (no ``options``) were plain calls: "" as today's."""
    if suite != "timing":
        return table
    index = table.schema.get_field_index("options")
    filled = pc.fill_null(table.column(index), "")
    return table.set_column(index, table.schema.field(index), filled)


def _stored(value: Any, type_: pa.DataType) -> Any:
    """A row value as the column stores it: NaN, which pandas uses for a missing string or
    integer (rows read back with ``load``), becomes null outside float columns."""
    if isinstance(value, float) and value != value and not pa.types.is_floating(type_):
        return None
    return value


def _atomic_write_parquet(root: Path, table: pa.Table, path: Path) -> None:
    atomic_write(root, path, lambda name: pq.write_table(table, name))


class RowWriter:
    """Appends rows for one (suite, backend) as atomic part files; ``close`` merges them."""

    def __init__(self, run_dir: Path, suite: str, backend: str, flush_every_s: float = 2.0):
        if suite not in SUITES:
            raise ValueError(f"unknown suite {suite!r}; valid: {', '.join(SUITES)}")
        self.run_dir = Path(run_dir)
        self.suite = suite
        self.backend = backend
        self.parts_dir = self.run_dir / "parts" / f"{suite}-{backend}"
        self.flush_every_s = flush_every_s
        self._pending: list[dict[str, Any]] = []
        self._last_flush = time.monotonic()

    def write(self, row: dict[str, Any]) -> None:
        self._pending.append(row)
        if time.monotonic() - self._last_flush >= self.flush_every_s:
            self.flush()

    def flush(self) -> None:
        if self._pending:
            name = f"part-{time.time_ns()}-{os.getpid()}.parquet"
            table = _table(self.suite, self._pending)
            _atomic_write_parquet(self.run_dir, table, self.parts_dir / name)
            self._pending = []
        self._last_flush = time.monotonic()

    def close(self) -> Path:
        """Flush, merge stored and new rows into ``<suite>-<backend>.parquet``, then delete the
        part files that were merged, by name (parts written meanwhile stay for the next merge)."""
        self.flush()
        merged = results_path(self.run_dir, self.suite, self.backend)
        parts = _parts(self.run_dir, self.suite, self.backend)
        frames = [_read(path, self.suite) for path in [merged, *parts] if path.exists()]
        if frames:
            table = pa.concat_tables(frames)
            _atomic_write_parquet(self.run_dir, _dedupe(self.suite, table), merged)
        for part in parts:
            with contextlib.suppress(FileNotFoundError):
                part.unlink()
        with contextlib.suppress(OSError):
            self.parts_dir.rmdir()
            self.parts_dir.parent.rmdir()  # parts/ itself, once no backend has parts left
        return merged


def results_path(run_dir: Path, suite: str, backend: str) -> Path:
    return inside(Path(run_dir), Path(run_dir) / f"{suite}-{backend}.parquet")


def _parts(run_dir: Path, suite: str, backend: str) -> list[Path]:
    """The part files of one backend, oldest first (names start with the write time in ns)."""
    directory = Path(run_dir) / "parts" / f"{suite}-{backend}"
    return list(regular_files(Path(run_dir), directory, "part-*.parquet"))


def _read_backend(run_dir: Path, suite: str, backend: str) -> Iterator[pa.Table]:
    merged = results_path(run_dir, suite, backend)
    if merged.exists():
        yield _read(merged, suite)
    for part in _parts(run_dir, suite, backend):
        yield _read(part, suite)


def _dedupe(suite: str, table: pa.Table) -> pa.Table:
    """Keep the last row of each evaluation key (a re-run replaces, never duplicates)."""
    frame = table.to_pandas()
    frame = frame.drop_duplicates(subset=list(KEYS[suite]), keep="last")
    return pa.Table.from_pandas(frame, schema=_versioned(SCHEMAS[suite]), preserve_index=False)


def stored_keys(run_dir: Path, suite: str, backend: str) -> set[tuple]:
    """Keys of the rows already stored for this backend (what a resumed run skips). A key
    whose latest row records a harness error (timeout, dead worker) is not done: it is retried."""
    latest: dict[tuple, bool] = {}
    for table in _read_backend(run_dir, suite, backend):
        columns = [table.column(name).to_pylist() for name in KEYS[suite]]
        failed = table.column("harness_error").to_pylist()
        latest.update(zip(zip(*columns, strict=True), failed, strict=True))
    return {key for key, harness_error in latest.items() if not harness_error}


def stored_rows(run_dir: Path, suite: str, backend: str) -> dict[tuple, dict[str, Any]]:
    """The latest stored row of each key of this backend (a timing round pools with them)."""
    latest: dict[tuple, dict[str, Any]] = {}
    for table in _read_backend(run_dir, suite, backend):
        latest.update((key_of(suite, row), row) for row in table.to_pylist())
    return latest


def stored_versions(run_dir: Path, suite: str, backend: str) -> set[str]:
    """The backend versions recorded in this backend's stored rows."""
    versions: set[str] = set()
    for table in _read_backend(run_dir, suite, backend):
        versions.update(v for v in table.column("backend_version").to_pylist() if v)
    return versions


def stored_backends(run_dir: Path, suite: str) -> list[str]:
    """The backends with stored rows (merged files or parts) of ``suite`` in ``run_dir``."""
    run_dir = Path(run_dir)
    merged = regular_files(run_dir, run_dir, f"{suite}-*.parquet")
    backends = {p.stem.split("-", 1)[1] for p in merged}
    parts = run_dir / "parts"
    inside(run_dir, parts)
    if parts.is_dir():
        for directory in parts.glob(f"{suite}-*"):
            inside(run_dir, directory)
            backends.add(directory.name.split("-", 1)[1])
    return sorted(backends)


def load(run_dirs: Iterable[Path], suite: str) -> pd.DataFrame:
    """All rows of ``suite`` from the given run directories (merged files and parts)."""
    frames = []
    for run_dir in run_dirs:
        frames += _load_run(Path(run_dir), suite)
    if not frames:
        return SCHEMAS[suite].empty_table().to_pandas()
    return pd.concat(frames, ignore_index=True)


def _load_run(run_dir: Path, suite: str, attempts: int = 5) -> list[pd.DataFrame]:
    """One run's frames, one per backend; read again if a writer merged parts meanwhile."""
    for attempt in range(attempts):
        try:
            frames = []
            for backend in stored_backends(run_dir, suite):
                tables = list(_read_backend(run_dir, suite, backend))
                if tables:
                    frames.append(_dedupe(suite, pa.concat_tables(tables)).to_pandas())
            return frames
        except FileNotFoundError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.05)
    return []


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock on ``.<name>.lock`` beside ``path`` (never through a symlink)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = open_no_follow(path.with_name(f".{path.name}.lock"), os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def read_run_info(run_dir: Path) -> dict[str, Any]:
    """The run's ``run.json`` ({} if none), its schema version checked (none recorded: 1)."""
    path = inside(Path(run_dir), Path(run_dir) / "run.json")
    try:
        info = json.loads(path.read_text()) if path.exists() else {}
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise CorruptRun(f"{path} is not readable JSON ({exc})") from None
    if not isinstance(info, dict):
        raise CorruptRun(f"{path} does not hold a JSON object")
    version = info.get("schema_version", 1)
    if version not in READABLE_VERSIONS:
        raise IncompatibleRun(
            f"{path} records results schema version {version}; this xentbench reads versions "
            f"{', '.join(map(str, sorted(READABLE_VERSIONS)))}"
        )
    return info


def update_run_info(run_dir: Path, update: dict[str, Any]) -> dict[str, Any]:
    """Merge ``update`` into ``run.json`` (dicts merged one level deep), under a file lock.

    Several worker processes (one per backend, possibly in different virtual environments)
    record their versions into the same run, so the merge is read-modify-write under a lock.
    """
    path = inside(Path(run_dir), Path(run_dir) / "run.json")
    with _locked(path):
        info = read_run_info(run_dir)
        for key, value in update.items():
            if isinstance(value, dict) and isinstance(info.get(key), dict):
                info[key] = {**info[key], **value}
            elif isinstance(value, list) and isinstance(info.get(key), list):
                info[key] = info[key] + [item for item in value if item not in info[key]]
            else:
                info[key] = value
        text = json.dumps(info, indent=2, sort_keys=True, default=str)
        atomic_write_text(Path(run_dir), path, text)
    return info
