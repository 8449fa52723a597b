"""Turn rendered pixels and geometry into a training sample's arrays: the shard schema's fields."""

from __future__ import annotations

import numpy as np

from .geometry import SceneBatch
from .render import RenderOutput

# A landmark is hidden when the rendered surface at its pixel lies this much nearer than it.
OCCLUSION_TOLERANCE_MM = 10.0


def landmark_visibility(scenes: SceneBatch, rendered: RenderOutput) -> np.ndarray:
    """(B, 68) bool: a landmark is visible when it projects inside the image, the face covers a
    pixel within one pixel of it, and nothing drawn at its pixel lies nearer than it (self-occlusion)."""
    b, h, w = rendered.depth.shape
    xy = scenes.landmarks_2d
    col = np.floor(xy[..., 0]).astype(np.int64)
    row = np.floor(xy[..., 1]).astype(np.int64)
    inside = (col >= 0) & (col < w) & (row >= 0) & (row < h)
    c, r = np.clip(col, 0, w - 1), np.clip(row, 0, h - 1)
    batch = np.arange(b)[:, None]
    own_depth = -scenes.landmarks_3d[..., 2]
    drawn = rendered.depth[batch, r, c]
    occluded = (drawn > 0) & (drawn < own_depth - OCCLUSION_TOLERANCE_MM)
    covered = np.zeros_like(inside)
    for dr in (-1, 0, 1):
        for dc in (-1, 0, 1):
            covered |= rendered.segmentation[batch, np.clip(r + dr, 0, h - 1), np.clip(c + dc, 0, w - 1)] > 0
    return inside & covered & ~occluded
