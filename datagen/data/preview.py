"""Contact sheets: what a person looks at to judge a job's samples.

Each sample is a 2x2 block: the image with its 68 landmarks (green visible, red hidden),
the segmentation, the depth and the normals. A job with fine detail shows a strip per sample
(``detail_strips``): its image, three raking-light renders (no detail, its own, another face's)
and its fine normals.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from .fields import LABELS

_PALETTE = np.array([
    (0, 0, 0), (224, 172, 140), (150, 110, 90), (230, 200, 60), (120, 60, 30), (160, 80, 40), (40, 120, 230),
    (60, 170, 250), (220, 40, 60), (150, 20, 40), (90, 20, 80), (245, 245, 245), (110, 70, 200), (40, 160, 90),
    (200, 200, 40), (250, 130, 170), (255, 0, 255),
], np.uint8)
assert len(_PALETTE) == len(LABELS)


def sample_panels(arrays: dict, k: int) -> np.ndarray:
    """The 2x2 block (2H, 2W, 3) uint8 of sample ``k`` of a batch of arrays."""
    image = Image.fromarray(arrays["image"][k])
    draw = ImageDraw.Draw(image)
    r = max(1, image.width // 160)
    for (x, y), visible in zip(arrays["landmarks_2d"][k], arrays["landmark_visible"][k]):
        draw.ellipse((x - r, y - r, x + r, y + r), fill=(40, 255, 40) if visible else (255, 40, 40))
    segmentation = _PALETTE[np.minimum(arrays["segmentation"][k], len(_PALETTE) - 1)]
    depth = arrays["depth"][k]
    mask = depth > 0
    shade = np.zeros_like(depth)
    if mask.any():
        lo, hi = depth[mask].min(), depth[mask].max()
        shade[mask] = 1.0 - 0.8 * (depth[mask] - lo) / max(hi - lo, 1e-6)
    depth_rgb = np.repeat((shade * 255).astype(np.uint8)[..., None], 3, axis=2)
    normal = _normal_picture(arrays["normal"][k], mask)
    top = np.concatenate([np.asarray(image), segmentation], axis=1)
    return np.concatenate([top, np.concatenate([depth_rgb, normal], axis=1)], axis=0)


def contact_sheet(arrays: dict, columns: int | None = None, gap: int = 4) -> Image.Image:
    n = len(arrays["image"])
    columns = columns or int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / columns))
    h, w = arrays["image"].shape[1:3]
    sheet = np.full((rows * (2 * h + gap) - gap, columns * (2 * w + gap) - gap, 3), 255, np.uint8)
    for k in range(n):
        r, c = divmod(k, columns)
        y, x = r * (2 * h + gap), c * (2 * w + gap)
        sheet[y:y + 2 * h, x:x + 2 * w] = sample_panels(arrays, k)
    return Image.fromarray(sheet)


def _normal_picture(normal: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return ((normal.astype(np.float32) * 0.5 + 0.5) * 255 * mask[..., None]).astype(np.uint8)


def detail_strips(rows: list, columns: int = 2, gap: int = 4) -> Image.Image:
    """A sheet of strips, one per row of samples (the sample, then its variants): every variant's
    image, then the first variant's fine normals (``normal_fine``)."""
    h, w = rows[0]["image"].shape[1:3]
    strips = []
    for arrays in rows:
        images = list(arrays["image"]) + [_normal_picture(arrays["normal_fine"][0], arrays["depth"][0] > 0)]
        gaps = [np.full((h, gap, 3), 255, np.uint8)] * len(images)
        strips.append(np.concatenate([x for pair in zip(images, gaps) for x in pair][:-1], 1))
    n_rows = -(-len(strips) // columns)
    sw = strips[0].shape[1]
    sheet = np.full((n_rows * (h + gap) - gap, columns * (sw + 3 * gap) - 3 * gap, 3), 255, np.uint8)
    for k, strip in enumerate(strips):
        r, c = divmod(k, columns)
        sheet[r * (h + gap):r * (h + gap) + h, c * (sw + 3 * gap):c * (sw + 3 * gap) + sw] = strip
    return Image.fromarray(sheet)
