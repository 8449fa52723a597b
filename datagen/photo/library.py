"""Texture libraries: fitted photos on disk (``datagen fit`` writes them, jobs read them).

An entry is a folder::

    <library>/<name>/photo.png        the crop (sRGB), what re-rendering composites into
                    albedo.npy        skin albedo, linear RGB float16, row 0 = v 0 (the data)
                    albedo.png        the same as a picture: sRGB, clipped to 1, v = 1 at the top
                    confidence.png    per-texel confidence x 255, v = 1 at the top
                    excluded.png      crop pixels the fitted face covers with skin that show
                                      something else (hair, glasses, a hand, deep shadow;
                                      ``skin_mask``): 255, else 0. Entries fitted before it
                                      have none (nothing excluded)
                    fit.json          fitted parameters (identity, expression, rotation,
                                      translation, intrinsics of the crop), light_sh, landmark
                                      errors, source photo, landmark source, licence note

and ``<library>/index.json`` lists the entries and the model they were fitted with (a UV layout
belongs to one model). Entries and the index are written whole or not at all (``files``), so a
library holds complete entries only. A fitted texture carries the rights of its photo.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import DatagenError
from ..files import atomic_directory, atomic_write_text
from ..images import ImageReadError
from ..models.morphable_model import MorphableModel, model_checksum
from ..synth.background import BackgroundImage, window_outside
from ..synth.sampling import APPEARANCE_NAMES, FaceParams
from .fitting import LandmarkFit
from .texture import SEEN, AlbedoMap, linear_to_srgb

INDEX = "index.json"
LICENCE_NOTE = "inherits the licence of the source photo"


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
        self.path.mkdir(parents=True, exist_ok=True)
        index = self.index() if (self.path / INDEX).exists() else {
            "format": "datagen-textures", "version": 1, "model": model.name, "model_checksum": model_checksum(model),
            "entries": []}
        if index["model_checksum"] != model_checksum(model):
            raise DatagenError(f"{self.path} holds textures fitted with model '{index['model']}'; a UV layout "
                               f"belongs to one model: use another --out for '{model.name}'")
        with atomic_directory(self.path / fitted.name) as tmp:
            record = self._write_entry(fitted, tmp)
        index["entries"] = [e for e in index["entries"] if e["name"] != fitted.name] + [record]
        atomic_write_text(self.path / INDEX, json.dumps(index, indent=1))
        return record

    @staticmethod
    def _write_entry(fitted: FittedPhoto, tmp: Path) -> dict:
        Image.fromarray(fitted.crop).save(tmp / "photo.png")
        np.save(tmp / "albedo.npy", fitted.albedo.albedo.astype(np.float16))
        Image.fromarray(linear_to_srgb(fitted.albedo.albedo)[::-1]).save(tmp / "albedo.png")
        Image.fromarray(np.round(fitted.albedo.confidence[::-1] * 255).astype(np.uint8)).save(tmp / "confidence.png")
        if fitted.excluded is not None:
            Image.fromarray(fitted.excluded.astype(np.uint8) * 255).save(tmp / "excluded.png")
        record = {"name": fitted.name, "source": fitted.source, "landmark_source": fitted.landmark_source,
                  "licence": fitted.licence, "error_px": fitted.fit.error_px, "error_iod": fitted.fit.error_iod,
                  "tiles": fitted.albedo.tiles, "seen_fraction": float((fitted.albedo.confidence >= SEEN).mean()),
                  "excluded_pixels": int(fitted.excluded.sum()) if fitted.excluded is not None else 0,
                  "fitted": time.strftime("%Y-%m-%dT%H:%M:%S")}
        (tmp / "fit.json").write_text(json.dumps({**record, **fitted.fit.as_dict(),
                                                  "light_sh": fitted.light_sh.tolist()}, indent=1))
        return record

    def load(self, name: str) -> FittedPhoto:
        folder = self.path / name
        try:
            data = json.loads((folder / "fit.json").read_text())
            crop = np.asarray(Image.open(folder / "photo.png").convert("RGB"))
            albedo = np.load(folder / "albedo.npy").astype(np.float32)
            confidence = np.asarray(Image.open(folder / "confidence.png"), np.float32)[::-1] / 255
            excluded = (np.asarray(Image.open(folder / "excluded.png")) > 127) if (folder / "excluded.png").exists() else None
        except (OSError, ValueError, KeyError, EOFError) as e:
            raise DatagenError(f"{folder}: unreadable texture entry ({e}); fit the photo again") from None
        arrays = {k: np.asarray(data[k], np.float32) for k in
                  ("identity", "expression", "rotation", "translation", "intrinsics", "landmarks", "fitted_landmarks")}
        fit = LandmarkFit(**arrays, error_px=data["error_px"], error_iod=data["error_iod"])
        return FittedPhoto(name, crop, fit, np.asarray(data["light_sh"], np.float32),
                           AlbedoMap(np.ascontiguousarray(albedo), np.ascontiguousarray(confidence), data["tiles"]),
                           data["source"], data["landmark_source"], data["licence"], excluded)


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


def _entries(path, lacking: str) -> list[dict]:
    entries = TextureLibrary(path).index()["entries"]
    if not entries:
        raise DatagenError(f"{path}: the texture library is empty, so it has {lacking}; add photos with 'datagen fit'")
    return entries


def library_lights(libraries) -> list[np.ndarray]:
    """The (9, 3) SH lighting recovered from every photo of texture ``libraries`` (a job's real environments)."""
    lights = []
    for path in libraries:
        for entry in _entries(path, "no lighting to give"):
            fit = Path(path) / entry["name"] / "fit.json"
            try:
                lights.append(np.asarray(json.loads(fit.read_text())["light_sh"], np.float32).reshape(9, 3))
            except (OSError, ValueError, KeyError) as e:
                raise DatagenError(f"{fit.parent}: unreadable texture entry ({e}); fit the photo again") from None
    return lights


HEAD_MARGIN = (0.15, 0.9, 0.15, 0.35)  # the head around the 68 landmarks' box: its width left and right, its height above (forehead, hair) and below (neck)


def photo_backgrounds(libraries) -> list[BackgroundImage]:
    """The photos of texture ``libraries`` as background images whose head (the landmarks' box grown
    by ``HEAD_MARGIN``) is never shown; photos without a band beside the head wide enough are left out."""
    images = []
    for path in libraries:
        for entry in _entries(path, "no photos to give as backgrounds"):
            folder = Path(path) / entry["name"]
            try:
                landmarks = np.asarray(json.loads((folder / "fit.json").read_text())["landmarks"], float)
                with Image.open(folder / "photo.png") as im:
                    size = im.size
            except (OSError, ValueError, KeyError) as e:
                raise DatagenError(f"{folder}: unreadable texture entry ({e}); fit the photo again") from None
            (x0, y0), (x1, y1) = landmarks.min(0), landmarks.max(0)
            left, above, right, below = HEAD_MARGIN
            box = (x0 - left * (x1 - x0), y0 - above * (y1 - y0), x1 + right * (x1 - x0), y1 + below * (y1 - y0))
            try:
                window_outside(np.random.default_rng(0), size, box)
            except ImageReadError:
                continue
            images.append(BackgroundImage(folder / "photo.png", tuple(float(v) for v in box)))
    return images


def load_photos(libraries, model: MorphableModel) -> list[FittedPhoto]:
    """Every entry of the texture ``libraries``, in order (a job's albedo sources / photos to re-render)."""
    photos = []
    for path in libraries:
        library = TextureLibrary(path)
        photos += [library.load(entry["name"]) for entry in checked_library(path, model)["entries"]]
    return photos
