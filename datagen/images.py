"""Reading photos as (H, W, 3) uint8 RGB, the way a viewer shows them.

- EXIF orientation is applied (a phone photo taken upright is fitted upright); landmark files
  (``.pts``) are read in the coordinates of the upright image.
- 16- and 32-bit images (``I;16``, ``I``, ``F``: scientific and some PNG exports) are scaled
  to 8 bits from their type's range, instead of Pillow's clipping that turns them white.
- Pillow warns about images over ``PIL.Image.MAX_IMAGE_PIXELS`` (89 megapixels by default) and
  refuses those over twice that, as possible decompression bombs. Phone and DSLR photos reach
  50-100 megapixels, so the warning is not shown; the refusal is one clear error.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError


class ImageReadError(ValueError):
    """An image that cannot be read; the message names the file and why."""


def read_rgb(path: str | Path, upright: bool = True) -> np.ndarray:
    """(H, W, 3) uint8 RGB of an image file, upright (``upright``: EXIF orientation applied);
    ImageReadError if it cannot be read."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                return to_rgb8(ImageOps.exif_transpose(image) if upright else image)
    except Image.DecompressionBombError:
        limit = 2 * (Image.MAX_IMAGE_PIXELS or 0) / 1e6
        raise ImageReadError(f"{path}: too large to read (over {limit:.0f} megapixels, Pillow's limit against "
                             f"decompression bombs); downscale it first") from None
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as e:
        raise ImageReadError(f"{path}: unreadable image ({e})") from None


def to_rgb8(image: Image.Image) -> np.ndarray:
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        values = np.asarray(image, np.float64)
        peak = float(values.max()) if values.size else 0.0
        if image.mode.startswith("I;16"):
            top = 65535.0
        elif image.mode == "F" and peak <= 1.0:
            top = 1.0  # floating-point images in [0, 1]
        else:
            top = 65535.0 if peak > 255 else 255.0
        grey = np.clip(np.round(values / top * 255), 0, 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=-1)
    return np.asarray(image.convert("RGB"))


def polygon_mask(shape: tuple[int, int], *polygons) -> np.ndarray:
    """(H, W) bool: the pixels whose centres lie inside any of ``polygons`` ((N, 2) pixel coordinates)."""
    from PIL import ImageDraw

    canvas = Image.new("L", (shape[1], shape[0]))
    for polygon in polygons:
        ImageDraw.Draw(canvas).polygon([tuple(p) for p in np.asarray(polygon, float)], fill=1)
    return np.asarray(canvas, bool)


def crop_photo(image: np.ndarray, box, size: int) -> np.ndarray:
    """The square ``box`` of ``image`` resized to ``size``; outside the photo, edge pixels repeat."""
    x0, y0, side = box
    h, w = image.shape[:2]
    pad = int(np.ceil(max(0, -x0, -y0, x0 + side - w, y0 + side - h))) + 1
    padded = np.pad(image, ((pad, pad), (pad, pad), (0, 0)), mode="edge")
    region = (x0 + pad, y0 + pad, x0 + pad + side, y0 + pad + side)
    return np.asarray(Image.fromarray(padded).resize((size, size), Image.BICUBIC, box=region))
