"""The annotate stage: parameters, scenes, rendered pixels and composited images -> a ``SampleBatch``
holding every field the job writes (``fields``), each the ground truth of exactly that image."""

from __future__ import annotations

import numpy as np

from ..data.fields import LABELS, REGISTRY, SampleBatch, ShardField
from .geometry import SceneBatch
from .render import RenderOutput
from .sampling import FaceParams

# A landmark is hidden when the rendered surface at its pixel lies this much nearer than it, or is a prop.
OCCLUSION_TOLERANCE_MM = 10.0
PROP_LABELS = tuple(LABELS.index(name) for name in ("hair", "clothing", "glasses", "hand"))
PHOTO_OCCLUDER = LABELS.index("photo_occluder")  # lies on the face: its depth is the face's


def landmark_visibility(scenes: SceneBatch, rendered: RenderOutput) -> np.ndarray:
    """(B, 68) bool: a landmark is visible when it projects inside the image, the face covers a
    pixel within one pixel of it, and nothing drawn at its pixel lies nearer than it (self-occlusion)
    or is a prop's in front of it (hair over the brows lies closer to the skin than the tolerance),
    or is the photo's own hair or glasses kept over a photo-realistic face."""
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
    shown = rendered.segmentation[batch, r, c]
    occluded |= np.isin(shown, PROP_LABELS) & (drawn < own_depth)  # a prop in front
    occluded |= shown == PHOTO_OCCLUDER  # the photo's hair or glasses over it
    covered = np.zeros_like(inside)
    for dr in (-1, 0, 1):
        for dc in (-1, 0, 1):
            label = rendered.segmentation[batch, np.clip(r + dr, 0, h - 1), np.clip(c + dc, 0, w - 1)]
            covered |= (label > 0) & ~np.isin(label, PROP_LABELS + (PHOTO_OCCLUDER,))  # the face's own pixels
    return inside & covered & ~occluded


def annotate(params: list[FaceParams], scenes: SceneBatch, rendered: RenderOutput, images: np.ndarray,
             fields: dict[str, ShardField]) -> SampleBatch:
    """The samples' arrays, checked against the job's ``fields`` (``fields.shard_fields``)."""
    arrays = {
        "image": images,
        "segmentation": rendered.segmentation,
        "depth": rendered.depth,
        "normal": rendered.normal.astype(np.float16, copy=False),
        "landmarks_2d": scenes.landmarks_2d,
        "landmarks_3d": scenes.landmarks_3d,
        "landmark_visible": landmark_visibility(scenes, rendered),
        "sample_index": np.array([p.sample_index for p in params], np.int64),
        "params/identity": np.stack([p.identity for p in params]),
        "params/expression": np.stack([p.expression for p in params]),
        "params/rotation": np.stack([p.rotation for p in params]),
        "params/translation": np.stack([p.translation for p in params]),
        "params/intrinsics": np.stack([p.intrinsics for p in params]),
        "params/light_sh": np.stack([p.light_sh for p in params]),
        "params/appearance": np.stack([p.appearance for p in params]),
        "params/background": np.stack([p.background for p in params]),
        "params/albedo_source": np.array([p.albedo_source for p in params], np.int64),
        "vertices": scenes.vertices,
    }
    if rendered.depth_fine is not None:
        arrays["depth_fine"] = rendered.depth_fine
        arrays["normal_fine"] = rendered.normal_fine.astype(np.float16)
        arrays["params/detail"] = np.stack([p.detail.as_array() for p in params])
    return SampleBatch.checked({name: arrays[name] for name in fields if name in arrays}, fields)


def annotate_clip(frames: SampleBatch, pairs: dict[str, np.ndarray], fields: dict[str, ShardField]) -> SampleBatch:
    """One clip as a batch of one sample: ``frames`` (K, ...) per-frame arrays (``annotate``'s), ``pairs``
    (K - 1, ...) the flow fields (``flow.clip_flow``); per-sample fields are the first frame's (equal in all)."""
    arrays = {}
    for name in fields:
        level = REGISTRY[name].level
        arrays[name] = frames[name][:1] if level == "sample" else (frames if level == "frame" else pairs)[name][None]
    return SampleBatch.checked(arrays, fields)
