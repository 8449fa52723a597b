"""Backgrounds behind the face: procedural (colour noise and gradients) or photos (a folder of
images, and the parts of fitted photos away from their head: ``BackgroundImage.keep_out``).

Each background is drawn from the sample's own background stream, so it is regenerated with the sample.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import SpecError
from ..images import ImageReadError, read_rgb
from .sampling import IMAGE_BACKGROUND, sample_rng
from ..spec import JobSpec

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".webp")
MIN_WINDOW = 48  # pixels: the smallest square of a photo outside its keep-out box that may be a background


@dataclass(frozen=True)
class BackgroundImage:
    path: Path
    keep_out: tuple | None = None  # (x0, y0, x1, y1) pixels never shown (a fitted photo's head); None: all of it


def list_background_images(spec: JobSpec, library_photos: list[BackgroundImage] = ()) -> list[BackgroundImage]:
    """The background photos of a job: the sorted image files of ``images_dir``, then
    ``library_photos`` (``photo.library_sources.photo_backgrounds`` of its ``texture_libraries``); empty
    for procedural backgrounds."""
    prior = spec.sampling.background
    if prior.kind == "procedural":
        return []
    files = []
    if prior.images_dir:
        folder = Path(spec.path(prior.images_dir))
        if not folder.is_dir():
            raise SpecError(f"sampling.background.images_dir: {folder} is not a folder")
        files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise SpecError(f"sampling.background.images_dir: {folder} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    return [BackgroundImage(p) for p in files] + list(library_photos)


def make_background(seed: int, index: int, choice: np.ndarray, images: list[BackgroundImage], width: int,
                    height: int) -> np.ndarray:
    """(H, W, 3) uint8 background of one sample. ``choice`` is FaceParams.background."""
    rng = sample_rng(seed, index, "background_pattern")
    if choice[0] == IMAGE_BACKGROUND:
        try:
            return _image_background(rng, images[int(choice[1])], width, height)
        except ImageReadError:
            pass  # an unreadable background image (or one without room beside its head) falls back to a procedural one, deterministically
    return _procedural(rng, width, height)


@dataclass(frozen=True, eq=False)
class ProceduralPattern:
    """A made background's draws: a base colour, a linear ramp of colour across the image, two layers
    of smooth colour blobs (coarse grids upsampled bicubically) and a per-pixel grain. ``paint_pattern``
    paints it with numpy, synth/device_background.py on the device. Colours are 0..1 sRGB."""

    base: np.ndarray  # (3,) float64
    angle: float  # radians: the ramp is cos(angle) x / W + sin(angle) y / H, pixel indices x right, y down
    gradient: np.ndarray  # (3,) colour change over the ramp
    blobs: tuple  # two (cells, cells, 3) uint8 grids: a layer adds weight * (byte / 127.5 - 1)
    weights: tuple  # two floats
    grain: float  # standard deviation of the grain


def procedural_pattern(rng) -> ProceduralPattern:
    base = rng.uniform(0, 1, size=3)
    angle = float(rng.uniform(0, 2 * np.pi))
    gradient = rng.normal(0, 0.25, size=3)
    blobs, weights = [], []
    for cells in (int(rng.integers(2, 6)), int(rng.integers(6, 24))):
        blobs.append(((rng.uniform(-1, 1, size=(cells, cells, 3)).astype(np.float32) + 1) * 127.5).astype(np.uint8))
        weights.append(float(rng.uniform(0.05, 0.35)))
    return ProceduralPattern(base=base, angle=angle, gradient=gradient, blobs=tuple(blobs), weights=tuple(weights),
                             grain=float(rng.uniform(0, 0.04)))


def _procedural(rng, width: int, height: int) -> np.ndarray:
    pattern = procedural_pattern(rng)
    return paint_pattern(pattern, rng.standard_normal((height, width)))


def paint_pattern(pattern: ProceduralPattern, grain: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 background of ``pattern`` with ``grain`` (H, W) standard normal draws, in float64."""
    height, width = grain.shape
    # Computed a colour plane at a time, (3, H, W), and turned to (H, W, 3) at the end: the same
    # float64 operations in the same order as per pixel, without numpy's slow length-3 inner loops.
    xx, yy = _unit_grid(width, height)
    ramp = np.cos(pattern.angle) * xx + np.sin(pattern.angle) * yy  # float64
    planes = np.empty((3, height, width))
    for c in range(3):  # [c:c + 1]: a float64 array, never cast down to a float32 ramp's type (numpy 1.x)
        np.multiply(ramp, pattern.gradient[c:c + 1], out=planes[c])
        planes[c] += pattern.base[c]
    for blobs, weight in zip(pattern.blobs, pattern.weights):
        up = np.asarray(Image.fromarray(blobs).resize((width, height), Image.BICUBIC))
        # weight * (up / 127.5 - 1) through a table of the 256 byte values: the same float64 bits, one pass
        planes += (weight * BYTE_TO_SIGNED)[up.transpose(2, 0, 1)]
    planes += pattern.grain * grain
    np.clip(planes, 0, 1, out=planes)
    planes *= 255
    return planes.transpose(1, 2, 0).astype(np.uint8, order="C")


BYTE_TO_SIGNED = np.arange(256) / 127.5 - 1.0  # a byte b as b / 127.5 - 1, float64


@functools.lru_cache(maxsize=4)
def _unit_grid(width: int, height: int):
    """Pixel coordinates divided by the image size, made once per size."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    return xx / width, yy / height


def _image_background(rng, source: BackgroundImage, width: int, height: int) -> np.ndarray:
    im = Image.fromarray(read_rgb(source.path, upright=False))  # not turned upright: a job's pixels stay the same
    if source.keep_out is not None:
        im = im.crop(window_outside(rng, im.size, source.keep_out))
    with im:
        scale = max(width / im.width, height / im.height) * rng.uniform(1.0, 1.6)
        im = im.resize((max(width, round(im.width * scale)), max(height, round(im.height * scale))), Image.BILINEAR)
        x = int(rng.integers(0, im.width - width + 1))
        y = int(rng.integers(0, im.height - height + 1))
        array = np.asarray(im.crop((x, y, x + width, y + height)))
    return array[:, ::-1].copy() if rng.uniform() < 0.5 else array.copy()


def window_outside(rng, size: tuple[int, int], keep_out) -> tuple[int, int, int, int]:
    """A random square (x0, y0, x1, y1) of an image of ``size`` that misses the box ``keep_out``:
    in the band left, right, above or below it (chosen by area), as large as the band allows."""
    w, h = size
    x0, y0, x1, y1 = (int(np.clip(round(v), 0, limit)) for v, limit in zip(keep_out, (w, h, w, h)))
    bands = [b for b in ((0, 0, x0, h), (x1, 0, w, h), (0, 0, w, y0), (0, y1, w, h))
             if min(b[2] - b[0], b[3] - b[1]) >= MIN_WINDOW]
    if not bands:
        raise ImageReadError(f"no {MIN_WINDOW}-pixel square beside the head")
    areas = np.array([(b[2] - b[0]) * (b[3] - b[1]) for b in bands], float)
    bx0, by0, bx1, by1 = bands[int(rng.choice(len(bands), p=areas / areas.sum()))]
    side = min(bx1 - bx0, by1 - by0)
    x = bx0 + int(rng.integers(0, bx1 - bx0 - side + 1))
    y = by0 + int(rng.integers(0, by1 - by0 - side + 1))
    return x, y, x + side, y + side


def composite(colour: np.ndarray, background: np.ndarray) -> np.ndarray:
    """Blend the rendered face (H, W, 4; alpha = coverage) over a background (H, W, 3) -> (H, W, 3) uint8:
    round(face * a + background * (1 - a)) in float32, a = alpha / 255."""
    alpha = ALPHA_OF_BYTE[colour[..., 3]]
    rest = 1.0 - alpha
    out = np.empty(background.shape, np.uint8)
    for c in range(3):  # a channel at a time: numpy is slow on arrays whose last axis has length 3
        blended = colour[..., c] * alpha
        blended += background[..., c] * rest
        blended += 0.5
        out[..., c] = blended  # rounded down on the cast
    return out


ALPHA_OF_BYTE = np.arange(256, dtype=np.float32) / 255.0  # float32, as float32(a) / 255 rounds
