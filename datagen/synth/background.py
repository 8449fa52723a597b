"""Backgrounds behind the face: procedural (colour noise and gradients) or a folder of images.

Each background is drawn from the sample's own background stream, so it is regenerated with the sample.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import SpecError
from ..images import ImageReadError, read_rgb
from .sampling import sample_rng
from ..spec import JobSpec

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".webp")


def list_background_images(spec: JobSpec) -> list[Path]:
    """The sorted image files of ``images_dir`` (empty for procedural backgrounds)."""
    prior = spec.sampling.background
    if prior.kind == "procedural":
        return []
    folder = Path(spec.path(prior.images_dir))
    if not folder.is_dir():
        raise SpecError(f"sampling.background.images_dir: {folder} is not a folder")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise SpecError(f"sampling.background.images_dir: {folder} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    return files


def make_background(seed: int, index: int, choice: np.ndarray, images: list[Path], width: int, height: int) -> np.ndarray:
    """(H, W, 3) uint8 background of one sample. ``choice`` is FaceParams.background."""
    rng = sample_rng(seed, index, "background_pattern")
    if choice[0] == 1:
        try:
            return _image_background(rng, images[int(choice[1])], width, height)
        except ImageReadError:
            pass  # an unreadable background image falls back to a procedural one, deterministically
    return _procedural(rng, width, height)


def _procedural(rng, width: int, height: int) -> np.ndarray:
    base = rng.uniform(0, 1, size=3)
    xx, yy = _unit_grid(width, height)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = (np.cos(angle) * xx + np.sin(angle) * yy)[..., None]
    image = base + rng.normal(0, 0.25, size=3) * ramp
    for cells in (int(rng.integers(2, 6)), int(rng.integers(6, 24))):
        blobs = rng.uniform(-1, 1, size=(cells, cells, 3)).astype(np.float32)
        up = np.asarray(Image.fromarray(((blobs + 1) * 127.5).astype(np.uint8)).resize((width, height), Image.BICUBIC))
        image = image + rng.uniform(0.05, 0.35) * (up / 127.5 - 1.0)
    image = image + rng.uniform(0, 0.04) * rng.standard_normal((height, width, 1))
    return (np.clip(image, 0, 1) * 255).astype(np.uint8)


@functools.lru_cache(maxsize=4)
def _unit_grid(width: int, height: int):
    """Pixel coordinates divided by the image size, made once per size."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    return xx / width, yy / height


def _image_background(rng, path: Path, width: int, height: int) -> np.ndarray:
    with Image.fromarray(read_rgb(path, upright=False)) as im:  # as before: a job's pixels stay the same
        scale = max(width / im.width, height / im.height) * rng.uniform(1.0, 1.6)
        im = im.resize((max(width, round(im.width * scale)), max(height, round(im.height * scale))), Image.BILINEAR)
        x = int(rng.integers(0, im.width - width + 1))
        y = int(rng.integers(0, im.height - height + 1))
        array = np.asarray(im.crop((x, y, x + width, y + height)))
    return array[:, ::-1].copy() if rng.uniform() < 0.5 else array.copy()


def composite(colour: np.ndarray, background: np.ndarray) -> np.ndarray:
    """Blend the rendered face (H, W, 4; alpha = coverage) over a background (H, W, 3) -> (H, W, 3) uint8."""
    alpha = colour[..., 3:4].astype(np.float32) / 255.0
    blended = colour[..., :3] * alpha + background * (1.0 - alpha)
    return (blended + 0.5).astype(np.uint8)
