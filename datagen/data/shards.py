"""Sharded HDF5: the dataset format that is datagen's public contract (see README "Dataset format").

One file per shard (``shard-00000.h5``), samples along axis 0, one chunk per sample, each chunk
carrying a Fletcher-32 checksum that HDF5 verifies on every read (so a reader cannot be served a
flipped bit). A shard is assembled in memory, written to ``<name>.<random>.partial``, flushed to
the disk, read back in full and compared byte for byte with the file assembled in memory, and only
then renamed into place: a shard is either complete and valid or absent, also on a full disk. Its content checksum is computed over the arrays (names, dtypes, shapes, bytes),
not the file's bytes, since HDF5 metadata may differ between runs.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from .. import __version__
from ..errors import DatagenError, ShardError
from .compression import compression_options
from .fields import required_names, shard_fields
from ..files import drop_cached_pages, partial_path, replace_durably, write_error
from .manifest import spec_fingerprint
from ..models.morphable_model import MorphableModel, model_checksum
from ..spec import JobSpec

SCHEMA_VERSION = 1
ATTRIBUTES_DIGEST = "attributes_sha256"


class ContentHash:
    """SHA-256 over arrays in a fixed order, fed a batch at a time (same result however batched)."""

    def __init__(self, names):
        self.names = sorted(names)
        self.hashers = {n: hashlib.sha256() for n in self.names}

    def update(self, arrays: dict) -> None:
        """Feed the next rows of some or all arrays."""
        for n in self.names:
            if n in arrays:
                self.hashers[n].update(np.ascontiguousarray(arrays[n]))  # its bytes, without a copy

    def hexdigest(self) -> str:
        top = hashlib.sha256()
        for n in self.names:
            top.update(f"{n}:{self.hashers[n].hexdigest()}\n".encode())
        return top.hexdigest()


class ShardWriter:
    """Writes one shard; the file appears under its name only when every sample is written.

        with ShardWriter(path, spec, model, shard_index, sample_range) as writer:
            writer.write(arrays)   # a batch: dict of (B, ...) arrays, in sample order

    The shard is assembled in memory (HDF5's core driver: one compressed shard, e.g. about
    23 MB for 64 samples at 224x224) and written to disk in one sequential pass by plain file
    I/O, so a full disk, a quota or a vanished folder is one ``OSError`` of this module's own
    write, never an HDF5 error raised late, printed while freeing objects, or fatal to the process.
    The file is then flushed to the disk, dropped from the page cache, read back and compared with
    the file assembled in memory, and only then renamed. (Comparing bytes, not decoding and hashing
    the arrays again, keeps the check at a tenth of a millisecond per sample; that the arrays are
    finite is checked when they are handed to ``write``, and the content checksum is theirs.)
    """

    def __init__(self, path: str | Path, spec: JobSpec, model: MorphableModel, shard_index: int, samples: range):
        self.path = Path(path)
        # Unique per writer: a retried task never shares a file with a straggler writing the same shard.
        self.partial = partial_path(self.path)
        self.fields = shard_fields(spec, model)
        self.samples = samples
        self.count = 0
        self.hash = ContentHash(self.fields)
        self._file = None
        self._out = None  # the .partial file, claimed (and the folder's writability checked) up front
        self._datasets: dict = {}
        self._options = compression_options(spec.output.compression, spec.output.compression_level)
        self._attrs = {
            "schema_version": SCHEMA_VERSION,
            "datagen_version": __version__,
            "job_name": spec.name,
            "job_spec": spec.source_text,
            "spec_fingerprint": spec_fingerprint(spec),
            "seed": spec.seed,
            "model_name": model.name,
            "model_checksum": model_checksum(model),
            "model_licence": model.licence,
            "shard_index": shard_index,
            "sample_start": samples.start,
            "num_samples": len(samples),
        }

    def __enter__(self):
        try:
            self.partial.parent.mkdir(parents=True, exist_ok=True)
            self._out = open(self.partial, "wb")
        except OSError as e:
            raise _write_error(self.path, e) from None
        try:
            self._create_datasets()
        except BaseException:
            self.__exit__(*sys.exc_info())
            raise
        return self

    def _create_datasets(self) -> None:
        # In memory only (backing_store=False), named after the unique .partial (HDF5 takes two core
        # files of one name for the same file); HDF5 1.10's file format: checksums on the metadata
        # too (object headers, chunk indexes), beside the Fletcher-32 checksum of every chunk.
        self._file = h5py.File(self.partial.name, "w", driver="core", backing_store=False, libver=("v110", "latest"))
        n = len(self.samples)
        for name, f in self.fields.items():
            # Per-sample fields: one chunk per sample; per-sample scalars: one chunk for the shard.
            ds = self._file.create_dataset(name, shape=(n, *f.shape), dtype=f.dtype,
                                           chunks=(1, *f.shape) if f.shape else (n,), fletcher32=True,
                                           **(self._options if f.shape else {}))
            ds.attrs["doc"] = f.doc
            for key, value in f.attrs.items():
                ds.attrs[key] = value
            self._datasets[name] = ds

    def write(self, arrays: dict) -> None:
        b = len(arrays["sample_index"])
        expected = list(self.samples[self.count:self.count + b])
        if list(arrays["sample_index"]) != expected:
            raise ValueError(f"{self.path.name}: samples {list(arrays['sample_index'])[:3]}... are not the next ones {expected[:3]}...")
        for name, f in self.fields.items():
            a = arrays[name]
            if a.shape[1:] != f.shape or a.dtype != np.dtype(f.dtype):
                raise ValueError(f"{self.path.name}: {name} has shape {a.shape[1:]} {a.dtype}, schema says {f.shape} {f.dtype}")
            if a.dtype.kind == "f" and not all_finite(a):
                raise ShardError(f"{self.path.name}: {name} holds NaN or infinite values; the shard is not written")
            self._datasets[name][self.count:self.count + b] = a
        self.hash.update(arrays)
        self.count += b

    def __exit__(self, exc_type, exc, tb):
        try:
            if exc_type is None:
                self._finish()
        finally:
            self._close()
            with contextlib.suppress(FileNotFoundError):
                self.partial.unlink()
        return False

    def _finish(self) -> None:
        if self.count != len(self.samples):
            raise ShardError(f"{self.path.name}: {self.count} of {len(self.samples)} samples written")
        for key, value in self._attrs.items():
            self._file.attrs[key] = value
        self._file.attrs["content_sha256"] = self.hash.hexdigest()
        self._file.attrs[ATTRIBUTES_DIGEST] = attributes_digest(self._file)
        self._file.flush()
        image = self._file.id.get_file_image()
        self._close_memory_file()
        try:
            with self._out:
                self._out.write(image)
                self._out.flush()
                os.fsync(self._out.fileno())
                drop_cached_pages(self._out.fileno())  # so that the check below reads the disk, not memory
        except OSError as e:
            raise _write_error(self.path, e) from None
        self._verify_written(image)
        del image
        try:
            replace_durably(self.partial, self.path)
        except OSError as e:
            raise _write_error(self.path, e) from None

    def _verify_written(self, image: bytes) -> None:
        """Read the file back from the disk: it must hold, byte for byte, the file assembled in memory."""
        try:
            with open(self.partial, "rb", buffering=0) as f:
                same = same_bytes(f, memoryview(image))
        except OSError as e:
            raise _write_error(self.path, e) from None
        if not same:
            raise DatagenError(f"{self.path}: the shard read back differs from what was written; is the disk failing?")

    def _close(self) -> None:
        self._close_memory_file()
        if self._out is not None and not self._out.closed:
            with contextlib.suppress(OSError):
                self._out.close()

    def _close_memory_file(self) -> None:
        self._datasets.clear()
        if self._file is not None:
            self._file.close()
            self._file = None

    @property
    def checksum(self) -> str:
        return self.hash.hexdigest()


def all_finite(array: np.ndarray) -> bool:
    if array.dtype == np.float16:  # on the bits: numpy's float16 arithmetic is slow
        return bool(((array.view(np.uint16) & 0x7C00) != 0x7C00).all())
    return bool(np.isfinite(array).all())


def same_bytes(file, expected: memoryview, piece: int = 8 << 20) -> bool:
    """Whether an open binary file holds exactly ``expected`` (read a piece at a time)."""
    at = 0
    while at < len(expected):
        data = file.read(min(piece, len(expected) - at))
        if not data or data != expected[at:at + len(data)].tobytes():  # bytes against bytes: a memcmp
            return False
        at += len(data)
    return file.read(1) == b""


@dataclass(frozen=True)
class ShardInfo:
    path: Path
    shard_index: int
    sample_start: int
    num_samples: int
    checksum: str
    bytes: int


def validate_shard(path: str | Path, expected_checksum: str | None = None, deep: bool = True) -> ShardInfo:
    """Check a shard: it opens, holds every dataset with one length, has no NaN, and (``deep``)
    its arrays hash to its recorded content checksum (and to ``expected_checksum`` if given).

    Raises ShardError with one line saying what is wrong.
    """
    path = Path(path)
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise ShardError(f"{path.name}: unreadable or truncated HDF5 file ({e})") from None
    try:
        with f:
            attrs = dict(f.attrs)
            if "content_sha256" not in attrs:
                raise ShardError(f"{path.name}: no content checksum; the shard was not completed")
            missing = [n for n in required_names() if n not in f]
            if missing:
                raise ShardError(f"{path.name}: missing datasets {', '.join(missing)}")
            names = _dataset_names(f)
            n = int(attrs["num_samples"])
            for name in names:
                if f[name].shape[0] != n:
                    raise ShardError(f"{path.name}: {name} holds {f[name].shape[0]} samples, the shard says {n}")
            if deep:
                digest = ContentHash(names)
                for name in names:
                    data = f[name][()]
                    if data.dtype.kind == "f" and not np.isfinite(data).all():
                        raise ShardError(f"{path.name}: {name} holds NaN or infinite values")
                    digest.update({name: data})
                if digest.hexdigest() != attrs["content_sha256"]:
                    raise ShardError(f"{path.name}: content checksum mismatch; the shard is corrupt")
            check_attributes(f, path.name)
            checksum = str(attrs["content_sha256"])
            if expected_checksum and checksum != expected_checksum:
                raise ShardError(f"{path.name}: checksum differs from the manifest's; the shard is from another run")
            return ShardInfo(path=path, shard_index=int(attrs["shard_index"]), sample_start=int(attrs["sample_start"]),
                             num_samples=n, checksum=checksum, bytes=path.stat().st_size)
    except ShardError:
        raise
    except (OSError, KeyError, ValueError, RuntimeError) as e:
        raise ShardError(f"{path.name}: corrupt HDF5 data ({e})") from None


def _write_error(path: Path, error: Exception) -> DatagenError:
    return write_error(f"{path}: cannot write the shard ({_os_reason(error)})", _os_errno(error))


def _os_errno(error: Exception) -> int | None:
    if isinstance(error, OSError) and error.errno:
        return error.errno
    m = re.search(r"errno = (\d+)", str(error))
    return int(m.group(1)) if m else None


def _os_reason(error: Exception) -> str:
    text = str(error)
    if m := re.search(r"error message = '([^']+)'", text):
        return m.group(1)
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return text.split(" (")[0]


def attributes_digest(f: h5py.File) -> str:
    """SHA-256 over every attribute of the file and of its datasets but this digest itself: HDF5
    keeps string attributes (the job spec, label names, checksums) in a heap that has no checksum
    of its own, so a damaged one would otherwise read back as a different value without error."""
    digest = hashlib.sha256()
    for where, attrs in [("/", f.attrs)] + [(name, f[name].attrs) for name in _dataset_names(f)]:
        for key in sorted(attrs):
            if key != ATTRIBUTES_DIGEST:
                value = attrs[key]
                text = value if isinstance(value, str) else f"{np.asarray(value).dtype.str}:{np.asarray(value).tobytes().hex()}"
                digest.update(f"{where}\0{key}\0{text}\n".encode())
    return digest.hexdigest()


def check_attributes(f: h5py.File, name: str) -> None:
    """Raise ShardError if the shard's attributes are not the ones written (shards from before the
    attribute digest existed carry none, and pass)."""
    recorded = f.attrs.get(ATTRIBUTES_DIGEST)
    if recorded is not None and recorded != attributes_digest(f):
        raise ShardError(f"{name}: its attributes differ from what was written; the shard is corrupt")


def _dataset_names(f: h5py.File) -> list[str]:
    names = []
    f.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None)
    return sorted(names)
