"""Fit real photos: ``PhotoFitter`` (``datagen fit`` runs it on the cluster: ``run.fit_job``).

A photo -> landmarks (``landmarks``) -> a square crop around the face, ``CROP_SIZE`` pixels ->
3DMM fit to the landmarks in the crop (``fitting``) -> the photo's skin mask under that fit
(``skin_mask``) -> photometric refinement against the crop's pixels (``photometric``) ->
ground-truth render of the refined fit -> SH lighting and UV albedo (``texture``) -> the photo's
fine detail, and the albedo again under it (``fine_detail``) -> a ``library.FittedPhoto``, which
``library.TextureLibrary`` keeps.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..camera import SH_NORM, crop_intrinsics
from ..errors import DatagenError, PhotoError
from ..models.morphable_model import MorphableModel
from ..synth.face_parts import LABEL
from ..synth.geometry import build_scenes
from ..synth.render import Renderer
from ..synth.sampling import FaceParams
from ..synth.detail import OWN_PHOTO_DETAIL
from .fine_detail import extract_detail, recover_fine_albedo
from .fitting import LandmarkFit, default_intrinsics, fit_landmarks
from ..images import ImageReadError, crop_photo, read_rgb
from .landmarks import photo_landmarks
from .library import FittedPhoto, TextureLibrary
from .photometric import PhotometricRefiner, PhotometricReport
from .photoreal import face_mask
from .skin_mask import excluded_pixels
from .texture import (SEEN, SKIN_LABELS, AlbedoMap, UVRasteriser, estimate_iris, estimate_lighting, linear_to_srgb,
                      recover_albedo, srgb_to_linear, unclipped)

CROP_SIZE = 512
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".tif", ".tiff", ".webp")
FACE_FEATURES = tuple(LABEL[n] for n in ("brow_right", "brow_left", "upper_lip", "lower_lip"))


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

    def __init__(self, model: MorphableModel, crop_size: int = CROP_SIZE, texture_size: int = 512, ctx=None,
                 photometric: bool = True, detail: bool = True):
        self.model, self.crop_size = model, crop_size
        self.detail = detail  # False: no detail map (the albedo keeps the photo's fine shading)
        # the detail bank at the albedo's size: the texels' mean-face positions, and re-rendering with detail
        self.renderer = Renderer(model, crop_size, crop_size, supersample=1, ctx=ctx, detail_size=texture_size)
        self.uv = UVRasteriser(self.renderer, texture_size)
        self.refiner = PhotometricRefiner(model) if photometric else None  # None: the landmark fit is kept

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
        report = None
        if self.refiner is not None:
            try:
                fit, report = self.refine(crop, fit)
            except np.linalg.LinAlgError:
                pass  # a degenerate system: the landmark fit stands, with no report
        return self.recover(name or photo.stem, crop, fit, str(photo), source, report)

    def refine(self, crop: np.ndarray, fit: LandmarkFit) -> tuple[LandmarkFit, PhotometricReport]:
        """The photometric step (``photometric``), comparing only the pixels the skin mask keeps under ``fit``."""
        _, _, excluded, _ = self._ground_truth(crop, fit)
        return self.refiner.refine(fit, srgb_to_linear(crop), excluded)

    def _ground_truth(self, crop: np.ndarray, fit: LandmarkFit):
        """(scenes, the fit's ground-truth render, the excluded and the occluding pixels of ``skin_mask``)."""
        probe = FittedPhoto("", crop, fit, np.zeros((9, 3), np.float32), None, "", "")
        scenes = build_scenes(self.model, [probe.params()], topology=self.renderer.topology)
        truth = self.renderer.render(scenes)
        face = face_mask(truth.segmentation[0], scenes.landmarks_2d[0])
        excluded, occluding = excluded_pixels(crop, truth.segmentation[0], truth.normal[0], fit.landmarks, face)
        return scenes, truth, excluded, occluding  # excluded: hair, glasses, deep shadows ...

    def recover(self, name: str, crop: np.ndarray, fit: LandmarkFit, source: str, landmark_source: str,
                photometric: PhotometricReport | None = None) -> FittedPhoto:
        """Lighting and albedo of a fitted crop. The light is estimated anew over all the skin the
        fit shows (face, head and neck: the albedo map spans them), not only the photometric step's face."""
        scenes, truth, excluded, occluding = self._ground_truth(crop, fit)
        linear = srgb_to_linear(crop)
        normals = truth.normal[0]
        skin = np.isin(truth.segmentation[0], SKIN_LABELS) & ~excluded & (truth.depth[0] > 0)
        skin &= unclipped(linear)  # not clipped shadows or highlights
        if skin.sum() < 200:
            raise PhotoError(f"{source}: the fitted face covers too little visible skin to recover its lighting")
        light = estimate_lighting(linear[skin], normals[skin])
        # An excluded pixel hides its face point from the UV rasteriser (no depth there), so its texel
        # counts as unseen and is filled from the mirror side or by inpainting.
        texels = self.uv.rasterise(scenes, 0, linear, np.where(excluded, 0, truth.depth[0]).astype(np.float32))
        albedo = recover_albedo(texels, light, self.uv.tiles)
        detail = None
        if self.detail:
            reference = self.renderer.detail.reference[..., :3]
            detail = extract_detail(texels, albedo, light, fit.rotation, reference)
            albedo = recover_fine_albedo(texels, light, self.uv.tiles, detail, fit.rotation, reference)
        iris = estimate_iris(linear, normals, light, fit.landmarks, truth.depth[0] > 0)
        return FittedPhoto(name, crop, fit, light, albedo, source, landmark_source, excluded=excluded,
                           occluding=occluding, iris=iris, photometric=photometric, detail=detail)

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

    def rerender(self, fitted: FittedPhoto, params: FaceParams | None = None, detail: bool = False):
        """Render ``fitted``'s face (its own parameters by default) with its recovered albedo, and
        with ``detail`` its own detail map (if it has one) at full strength."""
        params = params or fitted.params()
        if detail and fitted.detail is not None:
            params = dataclasses.replace(params, detail=OWN_PHOTO_DETAIL)
        return self.renderer.render(build_scenes(self.model, [params], [fitted.albedo], self.renderer.topology,
                                                 [fitted.detail]))


def photo_files(inputs) -> list[Path]:
    """Photos named, and the photos inside folders named (sorted)."""
    found = []
    for item in map(Path, inputs):
        if item.is_dir():
            found += sorted(p for p in item.iterdir() if p.suffix.lower() in PHOTO_SUFFIXES)
        else:
            found.append(item)
    return found


def entry_picture(library: str | Path, name: str, model_dir: str | None = None) -> tuple[Image.Image, FittedPhoto]:
    """``datagen textures show``: one library entry's sheet (``entry_sheet``), re-rendered with the
    library's model; an unknown ``name`` is one error listing the entries."""
    from ..models.registry import resolve_model

    lib = TextureLibrary(library)
    names = lib.names()
    if name not in names:
        raise DatagenError(f"'{name}' is not in {library}; its entries: {', '.join(names[:20]) or 'none'}"
                           f"{' ...' if len(names) > 20 else ''}")
    fitted = lib.load(name)
    model = resolve_model(lib.index()["model"], model_dir)
    return entry_sheet(fitted, PhotoFitter(model, photometric=False).rerender(fitted)), fitted


def entry_sheet(fitted: FittedPhoto, rendered) -> Image.Image:
    """Photo crop with given (green) and fitted (red) landmarks | its skin mask (what was excluded
    from the albedo tinted magenta) | re-rendering | albedo | confidence."""
    from PIL import ImageDraw

    photo = Image.fromarray(fitted.crop)
    draw = ImageDraw.Draw(photo)
    for colour, points in (("lime", fitted.fit.landmarks), ("red", fitted.fit.fitted_landmarks)):
        for x, y in points:
            draw.ellipse((x - 2, y - 2, x + 2, y + 2), fill=colour)
    size = fitted.crop.shape[0]
    masked = fitted.crop.copy()
    if fitted.excluded is not None:  # entries fitted before the skin mask have none
        masked[fitted.excluded] = (0.45 * masked[fitted.excluded] + [140, 0, 140]).astype(np.uint8)
    albedo = Image.fromarray(linear_to_srgb(fitted.albedo.albedo)[::-1]).resize((size * fitted.albedo.tiles, size))
    confidence = Image.fromarray(np.round(fitted.albedo.confidence[::-1] * 255).astype(np.uint8)).convert("RGB")
    panels = [photo, Image.fromarray(masked), Image.fromarray(rendered.colour[0][..., :3]), albedo,
              confidence.resize((size * fitted.albedo.tiles, size))]
    sheet = Image.new("RGB", (sum(p.width for p in panels), size))
    x = 0
    for p in panels:
        sheet.paste(p, (x, 0))
        x += p.width
    return sheet


@dataclass(frozen=True)
class FitOutcome:
    """One photo of ``run.fit_job.fit_library``: its library record, or why it was skipped."""

    photo: Path
    seconds: float
    record: dict | None = None
    landmark_source: str = ""
    skipped: str = ""
    photometric: PhotometricReport | None = None

    def describe(self) -> str:
        """One line for a person: the fit's landmark error (before and after the photometric step,
        and the photometric error), texels seen and excluded, time; or why it was skipped."""
        if self.skipped:
            return f"skipped {self.skipped}"
        r, p = self.record, self.photometric
        errors = (f"landmark error {r['error_px']:.2f} px of the {CROP_SIZE}-px crop ({100 * r['error_iod']:.1f}% "
                  f"of the inter-ocular distance)") if p is None else p.describe()
        return (f"{self.photo}: {errors}, {100 * r['seen_fraction']:.0f}% of texels seen, "
                f"{r.get('excluded_pixels', 0)} pixels not skin, {self.seconds:.2f} s [{self.landmark_source}]")
