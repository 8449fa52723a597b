"""Optical flow and occlusion between consecutive frames of a clip, from the geometry, not the images.

Convention (README "Conventions"): ``flow_forward[t]`` at pixel (i, j) of frame t is where the point
seen at that pixel's centre (i + 0.5, j + 0.5) is in frame t+1 minus where it is in frame t:
(dx, dy) in pixels, x right, y down. ``flow_backward[t]`` is the same from frame t+1 to frame t at the
pixels of frame t+1. On the face and props the point is the surface point the ground-truth pass
samples at the pixel centre, carried by its triangle's barycentric coordinates to the other frame's
mesh (``render.SceneMotion``; the shader projects it with that frame's camera). On the background it
is the background's own motion: the camera shake's shift, or a photo-realistic clip's photo warp.

A pixel is *occluded* when its point cannot be seen in the other frame: it leaves the image, its
triangle turns away from the camera, or something drawn there lies nearer than it by more than
``OCCLUSION_MM`` plus the depth's local slope (the pixel grid's half-pixel offset on a steep surface;
at most ``MAX_SLOPE_MM``).
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import map_coordinates

from .geometry import SceneBatch
from .render import RenderOutput, SceneMotion

OCCLUSION_MM = 2.0
MAX_SLOPE_MM = 10.0  # per pixel: steeper is a silhouette or a thin occluder, not one surface


def clip_motion(scenes: SceneBatch) -> SceneMotion:
    """Each frame's neighbours in a clip's scenes (frames in order; the ends are their own neighbours)."""
    v, k = scenes.vertices, scenes.intrinsics
    shift = lambda a, d: np.concatenate([a[:1], a[:-1]]) if d < 0 else np.concatenate([a[1:], a[-1:]])  # noqa: E731
    props = [p.positions if p is not None else None for p in (scenes.props or (None,) * len(scenes))]
    for a, b in zip(props, props[1:]):
        if (a is None) != (b is None) or (a is not None and a.shape != b.shape):
            raise ValueError("a clip's props must keep their vertices from frame to frame")
    prev_props = tuple([props[0]] + props[:-1])
    next_props = tuple(props[1:] + [props[-1]])
    return SceneMotion(prev_vertices=shift(v, -1), next_vertices=shift(v, 1), prev_props=prev_props,
                       next_props=next_props, prev_intrinsics=shift(k, -1), next_intrinsics=shift(k, 1))


def pixel_centres(h: int, w: int) -> np.ndarray:
    """(H, W, 2) float32 (x, y) of every pixel's centre."""
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32) + 0.5
    return np.stack([xs, ys], -1)


def clip_flow(rendered: RenderOutput, background_forward, background_backward) -> dict[str, np.ndarray]:
    """The pair fields of a clip's K rendered frames: flow_forward, flow_backward (K-1, H, W, 2) float16,
    occluded_forward, occluded_backward (K-1, H, W) bool. ``background_forward[t]``: the background's
    flow from frame t to t+1 (broadcastable to (H, W, 2)); ``background_backward[t]``: back from t+1 to t."""
    depth = rendered.depth
    forward = [pair_flow(rendered.seen_next[t], depth[t], depth[t + 1], background_forward[t]) for t in range(len(depth) - 1)]
    backward = [pair_flow(rendered.seen_prev[t + 1], depth[t + 1], depth[t], background_backward[t])
                for t in range(len(depth) - 1)]
    return {"flow_forward": np.stack([f for f, _ in forward]).astype(np.float16),
            "occluded_forward": np.stack([o for _, o in forward]),
            "flow_backward": np.stack([f for f, _ in backward]).astype(np.float16),
            "occluded_backward": np.stack([o for _, o in backward])}


def pair_flow(seen: np.ndarray, depth: np.ndarray, depth_there: np.ndarray, background) -> tuple[np.ndarray, np.ndarray]:
    """(flow (H, W, 2) float32, occluded (H, W) bool) from one frame to another: ``seen`` is this frame's
    ``RenderOutput.seen_next`` or ``seen_prev``, ``depth`` its depth, ``depth_there`` the other frame's."""
    h, w = depth.shape
    centres = pixel_centres(h, w)
    drawn = depth > 0
    background = np.broadcast_to(np.asarray(background, np.float32), (h, w, 2))
    flow = np.where(drawn[..., None], seen[..., :2] - centres, background)
    there = centres + flow
    col, row = np.floor(there[..., 0]).astype(np.int64), np.floor(there[..., 1]).astype(np.int64)
    inside = (col >= 0) & (col < w) & (row >= 0) & (row < h)
    r, c = np.clip(row, 0, h - 1), np.clip(col, 0, w - 1)
    found = depth_there[r, c]
    # the slope allowance is capped: beside a thin occluder (a strand, a lash) both one-sided slopes are its step
    tolerance = OCCLUSION_MM + np.minimum(depth_slope(depth_there)[r, c], MAX_SLOPE_MM)
    hidden = (found > 0) & (found < seen[..., 2] - tolerance)
    occluded = np.where(drawn, ~inside | (seen[..., 3] < 0) | hidden,
                        ~inside | (found > 0))  # the background behind whatever is drawn there
    return flow.astype(np.float32), occluded


def depth_slope(depth: np.ndarray) -> np.ndarray:
    """(H, W) mm per pixel: the smaller one-sided depth change along x plus along y (a surface's own
    slope; across an occluding edge one side still gives it), 0 off the drawn pixels."""
    def axis_slope(d, axis):
        diff = np.abs(np.diff(d, axis=axis))
        valid = (np.diff(d > 0, axis=axis) == 0)
        diff = np.where(valid, diff, np.inf)
        pad = [(0, 0), (0, 0)]
        pad[axis] = (1, 0)
        before = np.pad(diff, pad, constant_values=np.inf)
        pad[axis] = (0, 1)
        after = np.pad(diff, pad, constant_values=np.inf)
        slope = np.minimum(before, after)
        return np.where(np.isfinite(slope), slope, 0.0)

    return np.where(depth > 0, axis_slope(depth, 0) + axis_slope(depth, 1), 0.0)


def invert_warp_flow(field_from: np.ndarray, field_to: np.ndarray, iterations: int = 6) -> np.ndarray:
    """(H, W, 2) the flow of a warped picture's content from one frame to the next: a pixel x of the first
    frame shows source point x - field_from(x) (photoreal.warp_field's backward shift); the next frame
    shows it at y with y - field_to(y) = x - field_from(x), found by fixed-point iteration (the fields are
    smooth thin-plate splines, far from folding)."""
    h, w = field_from.shape[:2]
    centres = pixel_centres(h, w)
    source = centres - field_from
    y = centres + field_to - field_from
    for _ in range(iterations):
        coords = [y[..., 1] - 0.5, y[..., 0] - 0.5]  # index i is centre i + 0.5
        shift = np.stack([map_coordinates(field_to[..., c], coords, order=1, mode="nearest") for c in range(2)], -1)
        y = source + shift
    return (y - centres).astype(np.float32)
