"""The exact reference cached on disk by content hash, so each case is computed once.

A result is keyed by the sha256 of the op, the quantity, ``REFERENCE_VERSION`` and the exact
bytes, dtype and shape of the inputs, and stored as ``<key>.npz`` holding ``hi`` and ``lo``.
Files are written to a temporary name and renamed (``os.replace`` is atomic), so concurrent
runs never read half a file; a file that cannot be read back is recomputed and rewritten.
Invalid input is not cached: the reference's ValueError reaches the caller every time.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

import xentbench.reference.evaluate as evaluate
import xentbench.reference.linear as linear

# Bump whenever the reference's numbers may change (a fix in rounding, edges, the fast path),
# so results cached by an older reference are never served again.
REFERENCE_VERSION = "2"

CACHE_ENV = "XENTBENCH_CACHE"

# Seconds this process spent in ``cached_exact`` (reading, computing and writing), for the
# time breakdown a run records (``suites.run.phases``).
_seconds = [0.0]


def seconds_spent() -> float:
    """Seconds this process has spent in ``cached_exact`` so far."""
    return _seconds[0]


def user_cache_root() -> Path:
    """Where xentbench keeps what it can recompute, shared by every checkout and clone of
    this user (as pip's cache is): ``$XDG_CACHE_HOME/xentbench``, else ``~/.cache/xentbench``."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "xentbench"


def cache_directory() -> Path:
    """``$XENTBENCH_CACHE`` when set, else ``reference/`` under ``user_cache_root()``."""
    configured = os.environ.get(CACHE_ENV)
    return Path(configured) if configured else user_cache_root() / "reference"


def _hash_array(digest, name: str, array: np.ndarray | None) -> None:
    if array is None:
        digest.update(f"{name}:none;".encode())
        return
    # dtype.name tells bfloat16 from other 2-byte types; dtype.str adds the byte order.
    header = f"{name}:{array.dtype.name}:{array.dtype.str}:{array.shape};"
    digest.update(header.encode())
    digest.update(np.ascontiguousarray(array).tobytes())


def cache_key(
    op: str,
    logits: np.ndarray,
    labels: np.ndarray | None,
    quantity: str,
    options: dict | None = None,
) -> str:
    """The sha256 hex digest naming one reference result (options, when given, included)."""
    digest = hashlib.sha256()
    digest.update(f"xentbench-reference:{REFERENCE_VERSION};{op};{quantity};".encode())
    if op == evaluate.LINEAR_OP:  # the linear reference has its own version
        digest.update(f"linear:{linear.VERSION};".encode())
    _hash_array(digest, "logits", np.asarray(logits))
    _hash_array(digest, "labels", None if labels is None else np.asarray(labels))
    for name, value in sorted((options or {}).items()):
        if isinstance(value, np.ndarray):
            _hash_array(digest, f"option.{name}", value)
        else:
            digest.update(f"option.{name}={value!r};".encode())
    return digest.hexdigest()


def _read(path: Path) -> evaluate.Exact | None:
    """The stored result, or None when the file is missing or unreadable."""
    try:
        with np.load(path, allow_pickle=False) as stored:
            hi, lo = stored["hi"], stored["lo"]
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None  # corrupt or truncated: recompute and overwrite
    if hi.shape != lo.shape or hi.dtype != np.float64 or lo.dtype != np.float64:
        return None
    return evaluate.Exact(hi, lo)


def _write(path: Path, result: evaluate.Exact) -> None:
    """Write ``result`` to ``path`` atomically: a temporary file in the same folder, then rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            np.savez(file, hi=result.hi, lo=result.lo)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _expected_shape(op: str, quantity: str, logits: np.ndarray, options) -> tuple[int, ...]:
    return evaluate.output_shape(op, quantity, logits.shape, options)


def cached_exact(
    op: str,
    logits: np.ndarray,
    labels: np.ndarray | None = None,
    quantity: str = "value",
    cache_dir: Path | None = None,
    options: dict | None = None,
) -> evaluate.Exact:
    """``reference.exact(op, logits, labels, quantity, **options)``, read from or written to
    the disk cache."""
    start = time.perf_counter()
    try:
        return _cached_exact(op, logits, labels, quantity, cache_dir, options)
    finally:
        _seconds[0] += time.perf_counter() - start


def _cached_exact(op, logits, labels, quantity, cache_dir, options) -> evaluate.Exact:
    logits = np.asarray(logits)
    labels = None if labels is None else np.asarray(labels)
    options = options or {}
    key = cache_key(op, logits, labels, quantity, options)
    path = Path(cache_dir or cache_directory()) / f"{key}.npz"
    stored = _read(path)
    family = options and op != evaluate.LINEAR_OP  # the options family's shapes vary with them
    if stored is not None and (
        family or stored.hi.shape == _expected_shape(op, quantity, logits, options)
    ):
        return stored
    result = evaluate.exact(op, logits, labels, quantity, **options)  # ValueError: uncached
    _write(path, result)
    return result
