"""Read a generated dataset: ``ShardedDataset(path)``.

Random access by global position, iteration, and ``vertices(i)``. In a video dataset a sample is a
clip (its per-frame fields have a frame axis); ``pairs()`` serves its consecutive frame pairs. It is a plain sequence
(``len``/``__getitem__``), so ``torch.utils.data.DataLoader`` takes it as a map-style
``Dataset`` as it is; torch is not imported. Files are opened lazily, at most
``max_open_files`` at a time, and re-opened in a forked process (DataLoader workers must not
share an h5py handle).

A fully random order over thousands of shards touches a different file at nearly every sample,
so an LRU of open files cannot help. ``ShardShuffleSampler`` shuffles shards, then samples
within a window of a few shards at a time (as webdataset and TFDS do): every DataLoader worker
opens each shard about once per epoch, and batches still mix ``shards_at_once`` shards.

Every read is verified: shards carry a Fletcher-32 checksum per chunk, which HDF5 checks as it
reads, so a corrupt chunk raises ``ShardError`` instead of reaching a trainer (bench/reader.py
measures the cost). Shards written before those checksums are verified whole, once per process,
against their content checksum when first opened.
"""

from __future__ import annotations

import bisect
import contextlib
import os
import warnings
from collections import OrderedDict
from pathlib import Path

import h5py
import numpy as np

from . import compression  # noqa: F401  (registers hdf5plugin's filters: shards may use them)
from ..errors import ShardError
from .manifest import read_manifest, unlisted_shards


class ShardedDataset:
    def __init__(self, path: str | Path, fields: list[str] | None = None, max_open_files: int = 32,
                 model_dir: str | None = None, verify: bool = True):
        """
        Args:
          path: the dataset folder (with manifest.json).
          fields: the datasets to return from ``ds[i]`` (default: all).
          max_open_files: bound on open HDF5 files in this process.
          model_dir: where to find the model for ``vertices(i)`` when vertices were not stored.
          verify: check shards written before per-chunk checksums whole when first opened (HDF5
            checks the chunk checksums of newer shards on every read, whatever this says).
        """
        self.path = Path(path)
        self.manifest = read_manifest(self.path)
        self.shards = [s for s in self.manifest["shards"] if s["checksum"]]
        if len(self.shards) != len(self.manifest["shards"]):
            missing = len(self.manifest["shards"]) - len(self.shards)
            raise ShardError(f"{self.path}: {missing} of {len(self.manifest['shards'])} shards are not complete; "
                             f"run 'datagen generate' again to finish them")
        strays = unlisted_shards(self.path, self.manifest)
        if strays:
            warnings.warn(f"{self.path} holds {len(strays)} shard files its manifest does not list "
                          f"({', '.join(strays[:3])}): they are not read; 'datagen inspect' reports them", stacklevel=2)
        self._ends = np.cumsum([s["stop"] - s["start"] for s in self.shards]).tolist()
        self.fields = fields
        self.verify = verify
        self._verified: set[int] = set()  # shards without chunk checksums checked whole in this process
        self.max_open_files = max_open_files
        self.model_dir = model_dir
        self._open: OrderedDict = OrderedDict()
        self._pid = os.getpid()
        self._model = None
        self._all_fields = None
        self.files_opened = 0  # in this process: how often a shard file was opened

    def __len__(self) -> int:
        return self._ends[-1] if self._ends else 0

    def locate(self, i: int) -> tuple[int, int]:
        """(shard position, offset inside the shard) of sample position ``i``."""
        if not -len(self) <= i < len(self):
            raise IndexError(f"sample {i} is out of range for {len(self)} samples")
        i %= len(self)
        s = bisect.bisect_right(self._ends, i)
        return s, i - (self._ends[s - 1] if s else 0)

    def _file(self, s: int) -> h5py.File:
        return self._entry(s)[0]

    def _entry(self, s: int) -> tuple[h5py.File, dict]:
        """(open file, its datasets looked up so far) of shard position ``s``."""
        if os.getpid() != self._pid:  # forked (e.g. a DataLoader worker): never reuse the parent's handles
            self._open = OrderedDict()
            self._pid = os.getpid()
            self.files_opened = 0
        entry = self._open.get(s)
        if entry is None:
            path = self.path / self.shards[s]["file"]
            try:
                entry = (h5py.File(path, "r"), {})
            except OSError as e:
                raise ShardError(f"{path}: unreadable ({_first_line(e)}); run 'datagen inspect {self.path}'") from None
            try:
                self._check_on_open(s, entry[0])
            except (OSError, RuntimeError, KeyError, ValueError, ShardError) as e:
                entry[0].close()
                raise self._corrupt(s, str(e).split(": ", 1)[-1] if isinstance(e, ShardError) else _first_line(e)) from None
            self.files_opened += 1
            self._open[s] = entry
            if len(self._open) > self.max_open_files:
                self._open.popitem(last=False)[1][0].close()
        else:
            self._open.move_to_end(s)
        return entry

    def field_names(self) -> list[str]:
        """Every dataset name of a shard (read once from the first shard)."""
        if self._all_fields is None:
            names = []
            self._file(0).visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
            self._all_fields = sorted(names)
        return self._all_fields

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        s, offset = self.locate(int(i))
        f, datasets = self._entry(s)
        with self._reading(s, f"sample {offset}"):
            names = self.fields or self.field_names()
            for name in names:
                if name not in datasets:
                    if name not in f:
                        raise ShardError(f"{self.path}: no field {name!r} (it holds {', '.join(self.field_names())})")
                    datasets[name] = f[name]
            return {name: datasets[name][offset] for name in names}

    @contextlib.contextmanager
    def _reading(self, s: int, what: str):
        """An HDF5 read that fails (a chunk's checksum, damaged metadata) -> one ShardError naming the shard."""
        try:
            yield
        except ShardError:
            raise
        except (OSError, KeyError, RuntimeError, ValueError) as e:
            raise self._corrupt(s, f"{what}: {_first_line(e)}") from None

    def _check_on_open(self, s: int, f: h5py.File) -> None:
        """Cheap checks of a shard as it is opened: it is the manifest's (its content checksum), its
        attributes are the ones written; a shard without chunk checksums is verified whole, once."""
        from .shards import check_attributes, validate_shard

        name = self.shards[s]["file"]
        if f.attrs.get("content_sha256") != self.shards[s]["checksum"]:
            raise ShardError(f"{name}: not the shard the manifest lists (its content checksum differs)")
        check_attributes(f, name)
        if self.verify and s not in self._verified and not _has_chunk_checksums(f):
            validate_shard(self.path / name, self.shards[s]["checksum"])
            self._verified.add(s)

    def _corrupt(self, s: int, reason: str) -> ShardError:
        return ShardError(f"{self.path / self.shards[s]['file']}: corrupt ({reason}); "
                          f"run 'datagen inspect {self.path}', then 'datagen generate' to rewrite it")

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    def attrs(self) -> dict:
        with self._reading(0, "attributes"):
            return dict(self._file(0).attrs)

    def model(self):
        if self._model is None:
            from ..models.registry import resolve_model

            entry = self.manifest["model"]
            where = self.manifest.get("model_path")  # the job's model directory, resolved, if it named one
            written = entry.get("job_model", entry["name"])
            self._model = resolve_model(where if where and Path(where, "model.json").exists() else written,
                                        self.model_dir)
            if self._model.checksum and self._model.checksum != self.manifest["model"]["checksum"]:
                raise ShardError(f"{self.path} was made with another version of model "
                                 f"'{self._model.name}' (checksum differs)")
        return self._model

    @property
    def frames(self) -> int:
        """Frames per sample: 1 for stills, K for a video dataset's clips."""
        return int(self.manifest.get("frames", 1))

    def pairs(self):
        """The consecutive frame pairs of a video dataset (``pairs.FramePairs``)."""
        from .pairs import FramePairs

        return FramePairs(self)

    def vertices(self, i: int, from_params: bool = False) -> np.ndarray:
        """(V, 3) float32 camera-space vertices in mm ((K, V, 3) of a clip): the stored ones, or (when
        none were stored, or ``from_params``) rebuilt from the sample's parameters and the model."""
        s, offset = self.locate(int(i))
        f = self._file(s)
        with self._reading(s, f"sample {offset}"):
            if "vertices" in f and not from_params:
                return f["vertices"][offset]
            identity, expression = f["params/identity"][offset], f["params/expression"][offset]
            rotation, translation = f["params/rotation"][offset], f["params/translation"][offset]
        from ..camera import to_camera

        model = self.model()
        if rotation.ndim == 2:  # a clip: one shape and pose per frame
            shapes = model.vertices(np.repeat(identity[None], len(rotation), 0), expression)
            return to_camera(shapes, model.pivot, rotation, translation).astype(np.float32)
        return to_camera(model.vertices(identity, expression), model.pivot, rotation, translation).astype(np.float32)

    def shard_bounds(self) -> list[tuple[int, int]]:
        """[start, stop) sample positions of every shard, in dataset order."""
        starts = [0] + self._ends[:-1]
        return list(zip(starts, self._ends))

    def close(self) -> None:
        for f, _ in self._open.values():
            f.close()
        self._open.clear()

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_open"] = OrderedDict()  # handles never cross processes
        state["_model"] = None
        return state


def _has_chunk_checksums(f: h5py.File) -> bool:
    found = []
    f.visititems(lambda n, o: found.append(o.fletcher32) if isinstance(o, h5py.Dataset) else None)
    return bool(found) and all(found)


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


class ShardShuffleSampler:
    """Shuffled sample positions that visit a few shards at a time (a ``torch`` ``Sampler`` by duck typing).

    Each epoch: shuffle the shards, cut them into windows of ``shards_at_once``, shuffle the
    samples of each window. Pass it as ``DataLoader(ds, sampler=ShardShuffleSampler(ds))`` and
    call ``set_epoch(epoch)`` before each epoch. Keep ``shards_at_once`` <= the dataset's
    ``max_open_files``, so each worker opens each shard about once per epoch.
    """

    def __init__(self, dataset: ShardedDataset, shards_at_once: int = 8, seed: int = 0):
        if shards_at_once < 1:
            raise ValueError("shards_at_once must be >= 1")
        self.bounds = dataset.shard_bounds()
        self.shards_at_once, self.seed, self.epoch = shards_at_once, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.bounds[-1][1] if self.bounds else 0

    def __iter__(self):
        rng = np.random.default_rng([self.seed, self.epoch])
        order = rng.permutation(len(self.bounds))
        for w in range(0, len(order), self.shards_at_once):
            window = np.concatenate([np.arange(*self.bounds[s]) for s in order[w:w + self.shards_at_once]])
            yield from rng.permutation(window).tolist()
