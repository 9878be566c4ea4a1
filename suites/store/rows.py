"""Rows in a run directory: one writer, one reader, for the schema of ``suites.store.schema``.

A run directory holds ``run.json`` (machine, versions, commands; ``suites.store.run_json``) and,
per suite and backend, ``<suite>-<backend>.parquet``. While a backend runs, rows land in small
part files under ``parts/<suite>-<backend>/`` written atomically (temp file + fsync + rename), so
an interrupted run loses at most the rows in flight and a re-run resumes from what is stored.
Merging reads the parts it finds and deletes exactly those, by name. Nothing is read or written
through a symlink inside the run directory (``suites.store.safe_paths``); one run at a time is
``suites.run.lock``'s, and the workers of one backend side by side (``run --split``) write and
merge under a lock on the run directory (``_merging``).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from xentbench.suites.store.safe_paths import atomic_write, inside, regular_files
from xentbench.suites.store.schema import (
    KEYS,
    READABLE_VERSIONS,
    SCHEMA_VERSION,
    SCHEMAS,
    SUITES,
    CorruptRun,
    IncompatibleRun,
    key_of,
)

if TYPE_CHECKING:  # pandas only where rows are loaded: the CLI starts without it
    import pandas as pd

_VERSION_KEY = b"xentbench.schema_version"


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
            with _merging(self.run_dir):  # a merge beside it may remove the parts folder
                _atomic_write_parquet(self.run_dir, table, self.parts_dir / name)
            self._pending = []
        self._last_flush = time.monotonic()

    def close(self) -> Path:
        """Flush, merge stored and new rows into ``<suite>-<backend>.parquet``, then delete the
        part files that were merged, by name (parts written meanwhile stay for the next merge)."""
        self.flush()
        merged = results_path(self.run_dir, self.suite, self.backend)
        with _merging(self.run_dir):  # another worker's merge would overwrite this one's
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


_held = threading.local()  # the run directories this thread holds ``_merging`` on


@contextlib.contextmanager
def _merging(run_dir: Path) -> Iterator[None]:
    """An exclusive ``flock`` on the run directory itself (no lock file to leave behind),
    released with the descriptor however the holder ends; re-entrant within a thread."""
    Path(run_dir).mkdir(parents=True, exist_ok=True)  # as the first write would make it
    key = os.path.realpath(run_dir)
    held = _held.__dict__.setdefault("dirs", set())
    if key in held:
        yield
        return
    fd = os.open(run_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        held.add(key)
        yield
    finally:
        held.discard(key)
        os.close(fd)


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
    import pandas as pd

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
