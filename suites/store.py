"""The results store: one tidy schema per suite, one writer, one reader.

A run directory holds ``run.json`` (machine, versions, commands) and, per suite and backend,
``<suite>-<backend>.parquet``. While a backend runs, rows land in small part files under
``parts/<suite>-<backend>/`` written atomically (temp file + rename), so an interrupted run
loses at most the rows in flight and a re-run resumes from what is stored.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

SUITES: tuple[str, ...] = ("accuracy", "timing")

# The version of the results schema below, written into run.json and every parquet file's
# metadata and checked on read. Readers accept every version in READABLE_VERSIONS (columns a
# newer version added read as null); bump it whenever a column changes meaning or is removed.
SCHEMA_VERSION = 2
READABLE_VERSIONS = frozenset({1, 2})
_VERSION_KEY = b"xentbench.schema_version"


class IncompatibleRun(ValueError):
    """A run directory written with a results schema this version cannot read."""


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
]

ACCURACY_SCHEMA = pa.schema(
    [
        *_COMMON,
        ("quantity", pa.string()),
        ("case_id", pa.string()),
        ("family", pa.string()),
        ("n_classes", pa.int64()),
        ("n_elements", pa.int64()),
        ("max_abs_logit", pa.float64()),
        ("worst_ratio", pa.float64()),
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
    ]
)

SCHEMAS: dict[str, pa.Schema] = {"accuracy": ACCURACY_SCHEMA, "timing": TIMING_SCHEMA}

# The evaluation key: one row per key per run; resume and compare join on it.
KEYS: dict[str, tuple[str, ...]] = {
    "accuracy": ("implementation", "case_id", "dtype", "device", "mode", "quantity"),
    "timing": ("implementation", "shape", "dtype", "device", "mode", "pass"),
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
    metadata = pq.read_schema(path).metadata or {}
    version = int(metadata.get(_VERSION_KEY, b"1"))
    if version not in READABLE_VERSIONS:
        raise IncompatibleRun(
            f"{path} has results schema version {version}; this xentbench reads versions "
            f"{', '.join(map(str, sorted(READABLE_VERSIONS)))}: use the matching xentbench, "
            "or start a new run directory"
        )
    return pq.read_table(path, schema=SCHEMAS[suite])


def _stored(value: Any, type_: pa.DataType) -> Any:
    """A row value as the column stores it: NaN, which pandas uses for a missing string or
    integer (rows read back with ``load``), becomes null outside float columns."""
    if isinstance(value, float) and value != value and not pa.types.is_floating(type_):
        return None
    return value


def _atomic_write_parquet(table: pa.Table, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".parquet")
    os.close(fd)
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


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
            _atomic_write_parquet(_table(self.suite, self._pending), self.parts_dir / name)
            self._pending = []
        self._last_flush = time.monotonic()

    def close(self) -> Path:
        """Flush, merge stored and new rows into ``<suite>-<backend>.parquet``, drop parts."""
        self.flush()
        merged = results_path(self.run_dir, self.suite, self.backend)
        frames = [frame for frame in _read_backend(self.run_dir, self.suite, self.backend)]
        if frames:
            table = pa.concat_tables(frames)
            _atomic_write_parquet(_dedupe(self.suite, table), merged)
        for part in sorted(self.parts_dir.glob("part-*.parquet")):
            part.unlink()
        with contextlib.suppress(OSError):
            self.parts_dir.rmdir()
            self.parts_dir.parent.rmdir()  # parts/ itself, once no backend has parts left
        return merged


def results_path(run_dir: Path, suite: str, backend: str) -> Path:
    return Path(run_dir) / f"{suite}-{backend}.parquet"


def _read_backend(run_dir: Path, suite: str, backend: str) -> Iterator[pa.Table]:
    merged = results_path(run_dir, suite, backend)
    if merged.exists():
        yield _read(merged, suite)
    for part in sorted((Path(run_dir) / "parts" / f"{suite}-{backend}").glob("part-*.parquet")):
        yield _read(part, suite)


def _dedupe(suite: str, table: pa.Table) -> pa.Table:
    """Keep the last row of each evaluation key (a re-run replaces, never duplicates)."""
    frame = table.to_pandas()
    frame = frame.drop_duplicates(subset=list(KEYS[suite]), keep="last")
    return pa.Table.from_pandas(frame, schema=_versioned(SCHEMAS[suite]), preserve_index=False)


def stored_keys(run_dir: Path, suite: str, backend: str) -> set[tuple]:
    """Keys of the rows already stored for this backend (what a resumed run skips)."""
    keys: set[tuple] = set()
    for table in _read_backend(run_dir, suite, backend):
        columns = [table.column(name).to_pylist() for name in KEYS[suite]]
        keys.update(zip(*columns, strict=True))
    return keys


def load(run_dirs: Iterable[Path], suite: str) -> pd.DataFrame:
    """All rows of ``suite`` from the given run directories (merged files and parts)."""
    frames = []
    for run_dir in run_dirs:
        run_dir = Path(run_dir)
        backends = {p.stem.split("-", 1)[1] for p in run_dir.glob(f"{suite}-*.parquet")}
        backends |= {p.name.split("-", 1)[1] for p in (run_dir / "parts").glob(f"{suite}-*")}
        for backend in sorted(backends):
            tables = list(_read_backend(run_dir, suite, backend))
            if tables:
                frames.append(_dedupe(suite, pa.concat_tables(tables)).to_pandas())
    if not frames:
        return SCHEMAS[suite].empty_table().to_pandas()
    return pd.concat(frames, ignore_index=True)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def read_run_info(run_dir: Path) -> dict[str, Any]:
    """The run's ``run.json`` ({} if none), its schema version checked (none recorded: 1)."""
    path = Path(run_dir) / "run.json"
    info = json.loads(path.read_text()) if path.exists() else {}
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
    path = Path(run_dir) / "run.json"
    with _locked(path):
        info = read_run_info(run_dir)
        for key, value in update.items():
            if isinstance(value, dict) and isinstance(info.get(key), dict):
                info[key] = {**info[key], **value}
            elif isinstance(value, list) and isinstance(info.get(key), list):
                info[key] = info[key] + [item for item in value if item not in info[key]]
            else:
                info[key] = value
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
        with os.fdopen(fd, "w") as handle:
            json.dump(info, handle, indent=2, sort_keys=True, default=str)
        os.replace(tmp, path)
    return info
