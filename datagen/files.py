"""Files that appear whole or not at all: write to a temporary name beside the target, flush
it to the disk, rename it over the target, and flush the folder (so the rename itself survives
a crash). A reader never sees a half-written file; a killed writer leaves a ``*.partial`` file
that ``remove_partial_files`` (or the next run) deletes.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
import uuid
from pathlib import Path

from .errors import DatagenError, DiskFullError

PARTIAL = ".partial"

# Errors of the file system, not of the data: the same on every retry until a person frees space.
STORAGE_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS)


def write_error(message: str, code: int | None) -> DatagenError:
    """``DiskFullError`` for a full (or read-only) file system, else ``DatagenError``."""
    return (DiskFullError if code in STORAGE_FULL else DatagenError)(message)


def partial_path(path: Path) -> Path:
    """A temporary name beside ``path``, unique per writer (two writers never share one)."""
    return path.with_name(f"{path.name}.{uuid.uuid4().hex[:8]}{PARTIAL}")


def fsync_file(path: Path) -> None:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def drop_cached_pages(fd: int) -> None:
    """Ask the kernel to forget a flushed file's cached pages, so that the next read comes from the
    disk (a no-op where unsupported, and on tmpfs, whose pages are the storage)."""
    if hasattr(os, "posix_fadvise"):
        with contextlib.suppress(OSError):
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)


def fsync_folder(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not every file system lets a folder be opened and synced
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def replace_durably(source: Path, target: Path) -> None:
    """Rename the complete file ``source`` to ``target`` and make both survive a crash."""
    fsync_file(source)
    os.replace(source, target)
    fsync_folder(target.parent)


@contextlib.contextmanager
def atomic_file(path: str | Path):
    """``with atomic_file(path) as tmp:`` write ``tmp``; it becomes ``path`` only if the block ends."""
    path = Path(path)
    tmp = partial_path(path)
    try:
        yield tmp
        replace_durably(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


@contextlib.contextmanager
def atomic_directory(path: str | Path):
    """``with atomic_directory(path) as tmp:`` fill the folder ``tmp``; it replaces ``path`` whole
    only if the block ends (an existing ``path`` is moved aside first, so it is never half there)."""
    path = Path(path)
    tmp = partial_path(path)
    tmp.mkdir(parents=True)
    try:
        yield tmp
        old = path.with_name(f"{tmp.name}.old")
        if path.exists():
            os.replace(path, old)
        os.replace(tmp, path)
        fsync_folder(path.parent)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_file(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def write_text_or_fail(path: str | Path, text: str, what: str) -> None:
    """``atomic_write_text``, with a failure as one ``DatagenError`` (``DiskFullError`` when full)."""
    try:
        atomic_write_text(path, text)
    except OSError as e:
        raise write_error(f"{path}: cannot write the {what} ({e.strerror or e})", e.errno) from None


def remove_partial_files(folder: Path) -> None:
    """Files a killed or interrupted writer left half-written: never valid, always safe to delete."""
    for stale in Path(folder).glob(f"*{PARTIAL}"):
        with contextlib.suppress(FileNotFoundError):
            stale.unlink()


def file_sha256(path: str | Path) -> str:
    """The SHA-256 (hex) of a file's bytes, read in blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
