"""Paths inside a run or report directory: never through a symlink, never outside it; atomic writes.

A run directory is shared state that other people and tools can tamper with: a ``parts`` or
``report.md`` symlink planted there must not make xentbench read, write or delete a file
elsewhere. Every path below a root is checked component by component (``lstat``, no symlink
followed) and every write goes to a temporary file in the same directory, is fsynced and
renamed into place (a rename replaces a symlink itself, never its target).
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path


class UnsafePath(ValueError):
    """A path inside a run or report directory that is a symlink or leads outside it."""


def inside(root: Path, path: Path) -> Path:
    """``path`` (absolute, or relative to ``root``) checked to lie under ``root`` with no
    symlink between them. ``root`` itself may be a symlink (the user chose it); the components
    below it may not. Components that do not exist yet are fine."""
    root = Path(root)
    path = Path(path)
    try:
        relative = path.relative_to(root)
    except ValueError:
        relative = None
    if relative is None or ".." in relative.parts:
        raise UnsafePath(f"{path} is not inside {root}")
    current = root
    for part in relative.parts:
        current = current / part
        try:
            mode = os.lstat(current).st_mode
        except FileNotFoundError:
            break
        if stat.S_ISLNK(mode):
            raise UnsafePath(
                f"{current} is a symlink inside {root}; xentbench never reads or writes through "
                "one there: remove it (or use a fresh directory)"
            )
    return path


def make_dirs(root: Path, path: Path) -> Path:
    """Create ``path`` (and its parents) below ``root``, refusing symlinks on the way."""
    inside(root, path)
    path.mkdir(parents=True, exist_ok=True)
    return inside(root, path)


def atomic_write(root: Path, path: Path, write: Callable[[str], None]) -> Path:
    """Write ``path`` under ``root`` atomically: ``write(temp_name)`` fills a temporary file in
    the same directory, which is fsynced and renamed over ``path`` (the directory fsynced too)."""
    make_dirs(root, path.parent)
    inside(root, path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    return path


def atomic_write_text(root: Path, path: Path, text: str) -> Path:
    """``atomic_write`` of a UTF-8 text."""

    def write(name: str) -> None:
        with open(name, "w", encoding="utf-8") as handle:
            handle.write(text)

    return atomic_write(root, path, write)


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def regular_files(root: Path, directory: Path, pattern: str) -> Iterator[Path]:
    """The regular files matching ``pattern`` in ``directory`` (under ``root``), sorted by name;
    a symlink among them, or a symlinked ``directory``, raises ``UnsafePath``."""
    inside(root, directory)
    if not directory.is_dir():
        return
    for path in sorted(directory.glob(pattern)):
        inside(root, path)
        if path.is_file():
            yield path


def open_no_follow(path: Path, flags: int, mode: int = 0o644) -> int:
    """``os.open`` that refuses a symlink as the last component (``O_NOFOLLOW``)."""
    try:
        return os.open(path, flags | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), mode)
    except OSError as exc:
        if os.path.islink(path):
            raise UnsafePath(
                f"{path} is a symlink; xentbench never writes through one: remove it"
            ) from None
        raise exc
