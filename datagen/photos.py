"""Fit real photos and keep them in a texture library: ``datagen fit`` and ``datagen textures``.

A photo -> landmarks (``landmarks``) -> a square crop around the face, ``CROP_SIZE`` pixels ->
3DMM fit in the crop (``fitting``) -> ground-truth render of the fit -> SH lighting and UV albedo
(``texture``) -> a library entry. An entry is a folder::

    <library>/<name>/photo.png        the crop (sRGB), what re-rendering composites into
                    albedo.npy        skin albedo, linear RGB float16, row 0 = v 0 (the data)
                    albedo.png        the same as a picture: sRGB, clipped to 1, v = 1 at the top
                    confidence.png    per-texel confidence x 255, v = 1 at the top
                    fit.json          fitted parameters (identity, expression, rotation,
                                      translation, intrinsics of the crop), light_sh, landmark
                                      errors, source photo, landmark source, licence note

and ``<library>/index.json`` lists the entries and the model they were fitted with (a UV layout
belongs to one model). Entries and the index are written to temporary names and renamed, so a
library holds complete entries only. A fitted texture carries the rights of its photo.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .camera import SH_NORM, crop_intrinsics
from .errors import DatagenError
from .fitting import LandmarkFit, default_intrinsics, fit_landmarks
from .geometry import build_scenes
from .images import ImageReadError, crop_photo, read_rgb
from .landmarks import photo_landmarks
from .morphable_model import MorphableModel, model_checksum
from .render import Renderer
from .sampling import APPEARANCE_NAMES, FaceParams
from .face_parts import LABEL
from .files import atomic_directory, atomic_write_text
from .texture import SEEN, SKIN_LABELS, AlbedoMap, UVRasteriser, estimate_lighting, linear_to_srgb, recover_albedo, srgb_to_linear

CROP_SIZE = 512
INDEX = "index.json"
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".tif", ".tiff", ".webp")
LICENCE_NOTE = "inherits the licence of the source photo"
FACE_FEATURES = tuple(LABEL[n] for n in ("brow_right", "brow_left", "upper_lip", "lower_lip"))


class PhotoError(DatagenError):
    """A photo that cannot be read or fitted."""


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


def read_photo(path: str | Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB, upright (see ``images.read_rgb``), or one PhotoError naming the file."""
    try:
        return read_rgb(path)
    except ImageReadError as e:
        raise PhotoError(str(e).replace("unreadable image", "unreadable photo")) from None


def crop_box(landmarks: np.ndarray, scale: float = 1.9) -> tuple[float, float, float]:
    """(x0, y0, side): a square around the landmarks' box, ``scale`` times its larger side, a little
    above its centre (the forehead and hair lie above the brows)."""
    lo, hi = landmarks.min(0), landmarks.max(0)
    side = scale * float(max(hi - lo))
    cx, cy = (lo + hi) / 2
    cy -= 0.1 * side
    return cx - side / 2, cy - side / 2, side


class PhotoFitter:
    """Set up once (renderer, UV rasteriser), then ``fit(photo)`` per photo."""

    def __init__(self, model: MorphableModel, crop_size: int = CROP_SIZE, texture_size: int = 512, ctx=None):
        self.model, self.crop_size = model, crop_size
        self.renderer = Renderer(model, crop_size, crop_size, supersample=1, ctx=ctx)
        self.uv = UVRasteriser(self.renderer, texture_size)

    def fit(self, photo: str | Path, pts: str | Path | None = None, detect: bool = True,
            name: str | None = None) -> FittedPhoto:
        photo = Path(photo)
        image = read_photo(photo)
        landmarks, source = photo_landmarks(photo, image, Path(pts) if pts else None, detect)
        h, w = image.shape[:2]
        box = crop_box(landmarks)
        k = self.crop_size / box[2]
        crop = crop_photo(image, box, self.crop_size)
        intrinsics = crop_intrinsics(default_intrinsics(w, h), box, self.crop_size).astype(np.float32)
        fit = fit_landmarks(self.model, (landmarks - box[:2]) * k, self.crop_size, self.crop_size, intrinsics)
        return self.recover(name or photo.stem, crop, fit, str(photo), source)

    def recover(self, name: str, crop: np.ndarray, fit: LandmarkFit, source: str, landmark_source: str) -> FittedPhoto:
        """Lighting and albedo of a fitted crop."""
        probe = FittedPhoto(name, crop, fit, np.zeros((9, 3), np.float32), None, source, landmark_source)
        params = probe.params()
        scenes = build_scenes(self.model, [params], topology=self.renderer.topology)
        truth = self.renderer.render(scenes)
        linear = srgb_to_linear(crop)
        skin = np.isin(truth.segmentation[0], SKIN_LABELS) & (truth.depth[0] > 0)
        skin &= (linear.mean(-1) > 0.01) & (linear.max(-1) < 0.98)  # not clipped shadows or highlights
        if skin.sum() < 200:
            raise PhotoError(f"{source}: the fitted face covers too little visible skin to recover its lighting")
        light = estimate_lighting(linear[skin], truth.normal[0][skin])
        texels = self.uv.rasterise(scenes, 0, linear, truth.depth[0])
        albedo = recover_albedo(texels, light, self.uv.tiles)
        return FittedPhoto(name, crop, fit, light, albedo, source, landmark_source)

    def seen_mask(self, fitted: FittedPhoto) -> np.ndarray:
        """(S, S) bool: crop pixels whose face point's albedo was seen in the photo (not filled)."""
        flat = np.zeros((9, 3), np.float32)
        flat[0] = 1 / SH_NORM[0]  # E(n) = 1: the render shows the map itself
        seen = (fitted.albedo.confidence >= SEEN).astype(np.float32)
        probe = AlbedoMap(np.repeat(seen[..., None], 3, -1), seen, fitted.albedo.tiles)
        params = dataclasses.replace(fitted.params(), light_sh=flat)
        scenes = build_scenes(self.model, [params], [probe], self.renderer.topology)
        out = self.renderer.render(scenes)
        return (out.colour[0][..., 0] > 250) & (out.depth[0] > 0) & np.isin(out.segmentation[0], SKIN_LABELS + FACE_FEATURES)

    def rerender(self, fitted: FittedPhoto, params: FaceParams | None = None):
        """Render ``fitted``'s face (its own parameters by default) with its recovered albedo."""
        params = params or fitted.params()
        return self.renderer.render(build_scenes(self.model, [params], [fitted.albedo], self.renderer.topology))


# --- the library on disk


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
        record = {"name": fitted.name, "source": fitted.source, "landmark_source": fitted.landmark_source,
                  "licence": fitted.licence, "error_px": fitted.fit.error_px, "error_iod": fitted.fit.error_iod,
                  "tiles": fitted.albedo.tiles, "seen_fraction": float((fitted.albedo.confidence >= SEEN).mean()),
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
        except (OSError, ValueError, KeyError, EOFError) as e:
            raise DatagenError(f"{folder}: unreadable texture entry ({e}); fit the photo again") from None
        arrays = {k: np.asarray(data[k], np.float32) for k in
                  ("identity", "expression", "rotation", "translation", "intrinsics", "landmarks", "fitted_landmarks")}
        fit = LandmarkFit(**arrays, error_px=data["error_px"], error_iod=data["error_iod"])
        return FittedPhoto(name, crop, fit, np.asarray(data["light_sh"], np.float32),
                           AlbedoMap(np.ascontiguousarray(albedo), np.ascontiguousarray(confidence), data["tiles"]),
                           data["source"], data["landmark_source"], data["licence"])


def photo_files(inputs) -> list[Path]:
    """Photos named, and the photos inside folders named (sorted)."""
    found = []
    for item in map(Path, inputs):
        if item.is_dir():
            found += sorted(p for p in item.iterdir() if p.suffix.lower() in PHOTO_SUFFIXES)
        else:
            found.append(item)
    return found


def entry_sheet(fitted: FittedPhoto, rendered) -> Image.Image:
    """Photo crop with given (green) and fitted (red) landmarks | re-rendering | albedo | confidence."""
    from PIL import ImageDraw

    photo = Image.fromarray(fitted.crop)
    draw = ImageDraw.Draw(photo)
    for colour, points in (("lime", fitted.fit.landmarks), ("red", fitted.fit.fitted_landmarks)):
        for x, y in points:
            draw.ellipse((x - 2, y - 2, x + 2, y + 2), fill=colour)
    size = fitted.crop.shape[0]
    albedo = Image.fromarray(linear_to_srgb(fitted.albedo.albedo)[::-1]).resize((size * fitted.albedo.tiles, size))
    confidence = Image.fromarray(np.round(fitted.albedo.confidence[::-1] * 255).astype(np.uint8)).convert("RGB")
    panels = [photo, Image.fromarray(rendered.colour[0][..., :3]), albedo,
              confidence.resize((size * fitted.albedo.tiles, size))]
    sheet = Image.new("RGB", (sum(p.width for p in panels), size))
    x = 0
    for p in panels:
        sheet.paste(p, (x, 0))
        x += p.width
    return sheet


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


def load_photos(libraries, model: MorphableModel) -> list[FittedPhoto]:
    """Every entry of the texture ``libraries``, in order (a job's albedo sources / photos to re-render)."""
    photos = []
    for path in libraries:
        library = TextureLibrary(path)
        photos += [library.load(entry["name"]) for entry in checked_library(path, model)["entries"]]
    return photos
