"""Texture libraries: fitted photos on disk (``datagen fit`` writes them, jobs read them).

An entry is a folder::

    <library>/<name>/photo.png        the crop (sRGB), what re-rendering composites into
                    albedo.npy        skin albedo, linear RGB float16, row 0 = v 0 (the data)
                    albedo.png        the same as a picture: sRGB, clipped to 1, v = 1 at the top
                    confidence.png    per-texel confidence x 255, v = 1 at the top
                    detail.npz        the photo's fine detail (``fine_detail``): displacement mm
                                      (float16) and confidence, at the albedo's size; older entries
                                      have none
                    excluded.png      crop pixels the fitted face covers with skin that show
                                      something else (``skin_mask``): 255 hair or glasses on
                                      the skin, 128 a deep shadow or a highlight, else 0.
                                      Entries fitted before it have none (nothing excluded)
                    fit.json          fitted parameters (identity, expression, rotation, translation,
                                      intrinsics of the crop), light_sh, landmark errors, the
                                      photometric step's report (null: a landmark-only fit),
                                      source photo, landmark source, licence note

``<library>/index.json`` lists the entries (sorted by name) and the model they were fitted with
(a UV layout belongs to one model), and ``<library>/catalogue.npz`` holds every entry's fitted
parameters and lighting in arrays, so that a job over 100,000 entries reads one file to sample
from them (``PhotoCatalogue``) and reads an entry's pictures (about 10 MB in memory) only when a
sample uses it, keeping the last ``CACHED_ENTRIES`` in memory. Entries, the index and the
catalogue are written whole or not at all (``files``), so a library holds complete entries
only; an entry written but not yet indexed (a fit killed between the two) is indexed by the next
run (``TextureLibrary.index_entries``). A fitted texture carries the rights of its photo.
"""

from __future__ import annotations

import io
import json
import time
import uuid
import zipfile
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import DatagenError
from ..files import PARTIAL, atomic_directory, atomic_write_bytes, atomic_write_text, write_error
from ..models.morphable_model import MorphableModel, model_checksum
from ..synth.sampling import APPEARANCE_NAMES, FaceParams
from .fine_detail import DetailMap, load_detail, save_detail
from .fitting import LandmarkFit
from .photometric import PhotometricReport
from .texture import SEEN, AlbedoMap, linear_to_srgb

INDEX = "index.json"
CATALOGUE = "catalogue.npz"
CATALOGUED = ("identity", "expression", "rotation", "translation", "intrinsics", "light_sh")
ROWS = CATALOGUED + ("crop_size", "iris")  # the catalogue's per-entry arrays (iris NaN where not seen)
CACHED_ENTRIES = 32  # entries whose pictures a process keeps in memory (least recently used dropped)
LICENCE_NOTE = "inherits the licence of the source photo"
RECORD_KEYS = ("name", "id", "source", "landmark_source", "licence", "error_px", "error_iod", "tiles",
               "seen_fraction", "excluded_pixels", "photometric_error", "fitted")  # an index entry (fit.json holds them too)


@dataclass
class FittedPhoto:
    name: str
    crop: np.ndarray  # (S, S, 3) uint8 sRGB
    fit: LandmarkFit  # in crop pixels
    light_sh: np.ndarray  # (9, 3) float32
    albedo: AlbedoMap
    source: str
    landmark_source: str
    licence: str = LICENCE_NOTE
    excluded: np.ndarray | None = None  # (S, S) bool: crop pixels of the face's skin that show no skin (skin_mask)
    occluding: np.ndarray | None = None  # (S, S) bool: those of them that show something on the skin (hair, glasses)
    iris: np.ndarray | None = None  # (3,) the photo's iris albedo, linear RGB (texture.estimate_iris)
    photometric: PhotometricReport | None = None  # what the photometric step did (None: landmarks only)
    detail: DetailMap | None = None  # the photo's fine detail (fine_detail; None: fitted before detail maps)

    @property
    def crop_size(self) -> int:
        return self.crop.shape[0]

    def params(self, appearance: np.ndarray | None = None) -> FaceParams:
        """The fitted face as datagen parameters (specular off: the photo's highlights are in the albedo)."""
        return FaceParams(sample_index=-1, identity=self.fit.identity, expression=self.fit.expression,
                          rotation=self.fit.rotation, translation=self.fit.translation,
                          intrinsics=self.fit.intrinsics, light_sh=self.light_sh,
                          appearance=neutral_appearance() if appearance is None else appearance,
                          background=np.array([0, -1], np.int64))


def neutral_appearance() -> np.ndarray:
    values = dict.fromkeys(APPEARANCE_NAMES, 0.5)
    values.update(specular=0.0, shininess=20.0, pattern_offset_u=0.0, pattern_offset_v=0.0)
    return np.array([values[n] for n in APPEARANCE_NAMES], np.float32)


class TextureLibrary:
    def __init__(self, path: str | Path):
        self.path = Path(path)

    def index(self) -> dict:
        try:
            return json.loads((self.path / INDEX).read_text())
        except FileNotFoundError:
            raise DatagenError(f"{self.path}: not a texture library (no {INDEX}); make one with 'datagen fit'") from None
        except ValueError as e:
            raise DatagenError(f"{self.path / INDEX}: corrupt index ({e})") from None

    def names(self) -> list[str]:
        return [e["name"] for e in self.index()["entries"]]

    def entries(self) -> list[dict]:
        return self.index()["entries"] if (self.path / INDEX).exists() else []

    def add(self, fitted: FittedPhoto, model: MorphableModel) -> dict:
        """Write one entry (replacing one of the same name) and update the index."""
        self.check_model(model)
        record = self.write_entry(fitted)
        self.index_entries(model, [record])
        return record

    def check_model(self, model: MorphableModel) -> None:
        """One clear error if the library holds textures of another model (a UV layout is one model's)."""
        if (self.path / INDEX).exists() and self.index()["model_checksum"] != model_checksum(model):
            raise DatagenError(f"{self.path} holds textures fitted with model '{self.index()['model']}'; a UV "
                               f"layout belongs to one model: use another --out for '{model.name}'")

    def write_entry(self, fitted: FittedPhoto) -> dict:
        """Write one entry's folder, whole or not at all (replacing one of the same name); its index record."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            with atomic_directory(self.path / fitted.name) as tmp:
                return self._write_entry(fitted, tmp)
        except OSError as e:
            raise write_error(f"{self.path / fitted.name}: cannot write the texture entry ({e.strerror or e})",
                              e.errno) from None

    def index_entries(self, model: MorphableModel, records=(), rescan: bool = False) -> dict:
        """Add ``records`` (from ``write_entry``) to the index and the catalogue, both rewritten whole;
        with ``rescan``, first bring the index up to the entry folders: folders written since the
        index (a fit killed before indexing them, or refitted) are read from their fit.json, and
        records whose folder is gone are dropped. Returns the index."""
        exists = (self.path / INDEX).exists()
        index = self.index() if exists else {
            "format": "datagen-textures", "version": 2, "model": model.name, "model_checksum": model_checksum(model),
            "entries": []}
        entries = {e["name"]: e for e in index["entries"]}
        if rescan:
            since = (self.path / INDEX).stat().st_mtime - 60 if exists else 0.0  # clocks and file systems differ
            entries = {n: e for n, e in entries.items() if (self.path / n / "fit.json").exists()}
            for fit in self.path.glob("*/fit.json"):
                name = fit.parent.name
                if PARTIAL in name or (name in entries and fit.stat().st_mtime < since):
                    continue
                record = _record_of(fit)
                if record is not None and _entry_id(record) != _entry_id(entries.get(name, {})):
                    entries[name] = record
        entries.update((r["name"], r) for r in records)
        index["entries"] = [entries[name] for name in sorted(entries)]
        index["version"] = 2
        try:
            self._write_catalogue(index["entries"])
            atomic_write_text(self.path / INDEX, json.dumps(index, indent=1, sort_keys=True))
        except OSError as e:
            raise write_error(f"{self.path}: cannot write the library's index ({e.strerror or e})", e.errno) from None
        return index

    def _write_catalogue(self, entries: list[dict]) -> None:
        try:
            old = self.catalogue() if (self.path / CATALOGUE).exists() else {"names": [], "ids": []}
        except DatagenError:  # unreadable: rebuilt from the entries' folders
            old = {"names": [], "ids": []}
        if any(key not in old for key in ROWS):  # a catalogue of fewer arrays: rebuilt
            old = {"names": [], "ids": []}
        known = {(name, entry_id): k for k, (name, entry_id) in enumerate(zip(old["names"], old["ids"]))}
        rows = {key: [] for key in ROWS}
        for entry in entries:
            k = known.get((entry["name"], _entry_id(entry)))
            values = {key: old[key][k] for key in rows} if k is not None else self._catalogue_row(entry["name"])
            for key in rows:
                rows[key].append(values[key])
        arrays = {key: np.asarray(v, np.float32 if key != "crop_size" else np.int32) for key, v in rows.items()}
        buffer = io.BytesIO()
        np.savez(buffer, names=np.array([e["name"] for e in entries], str),
                 ids=np.array([_entry_id(e) for e in entries], str), **arrays)
        atomic_write_bytes(self.path / CATALOGUE, buffer.getvalue())

    def _catalogue_row(self, name: str) -> dict:
        folder = self.path / name
        try:
            data = json.loads((folder / "fit.json").read_text())
            with Image.open(folder / "photo.png") as im:
                size = im.size[0]
            iris = np.asarray(data.get("iris") or [np.nan] * 3, np.float32)  # entries fitted before: unknown
            return {**{key: np.asarray(data[key], np.float32) for key in CATALOGUED}, "crop_size": size, "iris": iris}
        except (OSError, ValueError, KeyError) as e:
            raise DatagenError(f"{folder}: unreadable texture entry ({e}); fit the photo again") from None

    def catalogue(self) -> dict:
        """The catalogue's arrays: names, ids (of the entries' fits), crop_size and ``CATALOGUED`` (a row per entry)."""
        try:
            with np.load(self.path / CATALOGUE) as data:
                return {key: data[key] for key in data.files}
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
            raise DatagenError(f"{self.path / CATALOGUE}: unreadable catalogue ({e}); run 'datagen fit' on the "
                               f"library again to rewrite it") from None

    @staticmethod
    def _write_entry(fitted: FittedPhoto, tmp: Path) -> dict:
        Image.fromarray(fitted.crop).save(tmp / "photo.png")
        np.save(tmp / "albedo.npy", fitted.albedo.albedo.astype(np.float16))
        Image.fromarray(linear_to_srgb(fitted.albedo.albedo)[::-1]).save(tmp / "albedo.png")
        Image.fromarray(np.round(fitted.albedo.confidence[::-1] * 255).astype(np.uint8)).save(tmp / "confidence.png")
        if fitted.detail is not None:
            save_detail(tmp, fitted.detail)
        if fitted.excluded is not None:  # 255: hair or glasses on the skin; 128: a shadow or highlight
            occluding = fitted.occluding if fitted.occluding is not None else fitted.excluded
            Image.fromarray(np.where(occluding, 255, np.where(fitted.excluded, 128, 0)).astype(np.uint8)).save(
                tmp / "excluded.png")
        record = {"name": fitted.name, "source": fitted.source, "landmark_source": fitted.landmark_source,
                  "licence": fitted.licence, "error_px": fitted.fit.error_px, "error_iod": fitted.fit.error_iod,
                  "tiles": fitted.albedo.tiles, "seen_fraction": float((fitted.albedo.confidence >= SEEN).mean()),
                  "excluded_pixels": int(fitted.excluded.sum()) if fitted.excluded is not None else 0,
                  "photometric_error": fitted.photometric and fitted.photometric.photometric_error_after,
                  "fitted": time.strftime("%Y-%m-%dT%H:%M:%S"), "id": uuid.uuid4().hex[:16]}
        extra = {"iris": None if fitted.iris is None else [float(v) for v in fitted.iris], "light_sh": fitted.light_sh.tolist(),
                 "photometric": fitted.photometric and fitted.photometric.as_dict()}
        (tmp / "fit.json").write_text(json.dumps({**record, **fitted.fit.as_dict(), **extra}, indent=1))
        return record

    def load(self, name: str) -> FittedPhoto:
        folder = self.path / name
        try:
            data = json.loads((folder / "fit.json").read_text())
            crop = np.asarray(Image.open(folder / "photo.png").convert("RGB"))
            albedo = np.load(folder / "albedo.npy").astype(np.float32)
            confidence = np.asarray(Image.open(folder / "confidence.png"), np.float32)[::-1] / 255
            codes = np.asarray(Image.open(folder / "excluded.png")) if (folder / "excluded.png").exists() else None
        except (OSError, ValueError, KeyError, EOFError) as e:
            raise DatagenError(f"{folder}: unreadable texture entry ({e}); fit the photo again") from None
        arrays = {k: np.asarray(data[k], np.float32) for k in
                  ("identity", "expression", "rotation", "translation", "intrinsics", "landmarks", "fitted_landmarks")}
        fit = LandmarkFit(**arrays, error_px=data["error_px"], error_iod=data["error_iod"])
        return FittedPhoto(name, crop, fit, np.asarray(data["light_sh"], np.float32),
                           AlbedoMap(np.ascontiguousarray(albedo), np.ascontiguousarray(confidence), data["tiles"]),
                           data["source"], data["landmark_source"], data["licence"],
                           None if codes is None else codes > 0, None if codes is None else codes > 191,
                           None if data.get("iris") is None else np.asarray(data["iris"], np.float32),
                           None if data.get("photometric") is None else PhotometricReport(**data["photometric"]),
                           load_detail(folder, albedo.shape))


def entry_line(e: dict) -> str:
    """``datagen textures list``'s line of an index entry."""
    photometric = "" if e.get("photometric_error") is None else f"photometric {e['photometric_error']:.3f}  "
    return (f"  {e['name']:<24} error {100 * e['error_iod']:4.1f}% IOD  {photometric}seen "
            f"{100 * e['seen_fraction']:3.0f}%  {e['source']}  ({e['licence']})")


def checked_library(path: str | Path, model: MorphableModel) -> dict:
    """The index of the texture library at ``path``, after checking it was fitted with ``model``
    (its UV layout) and holds entries; one clear error otherwise."""
    index = TextureLibrary(path).index()
    if index.get("model_checksum") != model_checksum(model):
        raise DatagenError(f"{path}: its textures were fitted with model '{index.get('model')}', not this job's "
                           f"'{model.name}' (or another version of it); fit the photos again with --model")
    if not index["entries"]:
        raise DatagenError(f"{path}: the texture library is empty; add photos with 'datagen fit'")
    return index


def _entry_id(entry: dict) -> str:
    return entry.get("id") or entry.get("fitted", "")  # entries written before ids had only their time stamp


def _record_of(fit: Path) -> dict | None:
    """The index record of the entry whose fit.json is ``fit`` (named after its folder); None if unreadable."""
    try:
        data = json.loads(fit.read_text())
    except (OSError, ValueError):
        return None  # a damaged entry is not indexed: its photo is fitted again
    return {**{k: data[k] for k in RECORD_KEYS if k in data}, "name": fit.parent.name}


@dataclass(frozen=True)
class FitParams:
    """What sampling needs of a fitted photo's fit (a ``LandmarkFit`` has the same fields)."""

    identity: np.ndarray
    expression: np.ndarray
    rotation: np.ndarray
    translation: np.ndarray
    intrinsics: np.ndarray  # of the crop


@dataclass(frozen=True)
class CatalogueEntry:
    """One fitted photo as sampling sees it: its fit and lighting, without its pictures."""

    name: str
    fit: FitParams
    light_sh: np.ndarray
    crop_size: int
    iris: np.ndarray | None = None  # the photo's iris albedo (None: its eyes were not seen)


class PhotoCatalogue(Sequence):
    """The entries of texture ``libraries``, in order (a job's albedo sources / photos to re-render).

    ``catalogue[k]`` is a ``CatalogueEntry`` (read from each library's catalogue.npz at once);
    ``catalogue.load(k)`` the whole ``FittedPhoto``, read on first use and kept among the last
    ``cache`` used, so that a worker's memory does not grow with the library.
    """

    def __init__(self, libraries, model: MorphableModel, cache: int = CACHED_ENTRIES):
        self.cache, self._loaded = cache, OrderedDict()
        self._where, parts = [], []
        for path in libraries:
            library = TextureLibrary(path)
            entries = checked_library(path, model)["entries"]
            parts.append(self._rows(library, entries))
            self._where += [(library, e["name"]) for e in entries]
        self._rows_ = {key: np.concatenate([part[key] for part in parts]) for key in ROWS} if parts else {}

    @staticmethod
    def _rows(library: TextureLibrary, entries: list[dict]) -> dict:
        """The catalogue's rows for ``entries``; an entry the catalogue lacks or holds another fit of
        (a library written before catalogues, or one a fit is rewriting) is read from its folder."""
        try:
            stored = library.catalogue() if (library.path / CATALOGUE).exists() else None
        except DatagenError:
            stored = None
        if stored is not None and any(key not in stored for key in ROWS):
            stored = None
        at = {} if stored is None else {(n, i): k for k, (n, i) in enumerate(zip(stored["names"], stored["ids"]))}
        rows = []
        for entry in entries:
            k = at.get((entry["name"], _entry_id(entry)))
            rows.append({key: stored[key][k] for key in ROWS} if k is not None
                        else library._catalogue_row(entry["name"]))
        return {key: np.array([r[key] for r in rows], np.float32 if key != "crop_size" else np.int32).reshape(
            (len(rows),) + (np.shape(rows[0][key]) if rows else ())) for key in ROWS}

    def __len__(self) -> int:
        return len(self._where)

    def __getitem__(self, k: int) -> CatalogueEntry:
        if not -len(self) <= k < len(self):
            raise IndexError(k)
        rows = self._rows_
        fit = FitParams(**{key: rows[key][k] for key in CATALOGUED if key != "light_sh"})
        iris = rows["iris"][k]
        return CatalogueEntry(self._where[k][1], fit, rows["light_sh"][k], int(rows["crop_size"][k]),
                              iris if np.isfinite(iris).all() else None)

    def load(self, k: int) -> FittedPhoto:
        if k not in self._loaded:
            library, name = self._where[k]
            self._loaded[k] = library.load(name)
            while len(self._loaded) > self.cache:
                self._loaded.popitem(last=False)
        self._loaded.move_to_end(k)
        return self._loaded[k]


def load_photos(libraries, model: MorphableModel) -> PhotoCatalogue:
    """The entries of the texture ``libraries`` (a ``PhotoCatalogue``: pictures read when used)."""
    return PhotoCatalogue(libraries, model)
