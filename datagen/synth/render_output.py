"""What the render stage gives: a batch's per-pixel outputs (``RenderOutput``), the motion a clip's
frames are drawn with (``SceneMotion``), and a submitted batch whose pixels are on their way
(``PendingRender``, made by ``render.Renderer.submit``). Conventions: rows top to bottom, pixel
centres at +0.5, camera space x right, y up, z towards the viewer (camera.py)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class RenderOutput:
    """Per-pixel outputs of a batch, row 0 = the top of the image.

    colour:       (B, H, W, 4) uint8 sRGB; alpha = fraction of the pixel the face covers
    depth:        (B, H, W) float32 mm along the viewing axis (-z); 0 on background
    normal:       (B, H, W, 3) float32 unit camera-space normals; 0 on background (float16 after
                  ``use_half_normals``: the same values rounded as numpy rounds them)
    segmentation: (B, H, W) uint8 labels (face_parts.LABELS); 0 on background
    depth_fine, normal_fine: the same of the surface displaced by the fine detail (synth/detail.py),
                  equal to depth and normal where a sample has none; None from a renderer without detail
    seen_next, seen_prev: (B, H, W, 4) float32 of the surface point at each pixel, in the next and the
                  previous frame: (x, y) pixels (x right, y down, pixel centres at +0.5), depth mm,
                  +1 facing the camera or -1 turned away; 0 on background; None without ``SceneMotion``
    background:   (B, H, W, 3) uint8 made backgrounds painted on the device (``submit``'s ``backgrounds``;
                  a sample given none: undefined); None without
    """

    colour: np.ndarray
    depth: np.ndarray
    normal: np.ndarray
    segmentation: np.ndarray
    depth_fine: np.ndarray | None = None
    normal_fine: np.ndarray | None = None
    seen_next: np.ndarray | None = None
    seen_prev: np.ndarray | None = None
    background: np.ndarray | None = None


@dataclass(frozen=True)
class SceneMotion:
    """Where each vertex of a batch of frames is in the previous and the next frame of its clip.

    prev_vertices, next_vertices: (B, V, 3) float32 camera space, mm (a clip's first frame: its own)
    prev_props, next_props:       B (N_i, 3) arrays or None: the props' vertices likewise
    prev_intrinsics, next_intrinsics: (B, 4) the cameras of those frames
    """

    prev_vertices: np.ndarray
    next_vertices: np.ndarray
    prev_props: tuple
    next_props: tuple
    prev_intrinsics: np.ndarray
    next_intrinsics: np.ndarray



class PendingRender:
    """A submitted batch (``Renderer.submit``): ``result()`` waits for its pixels and returns them."""

    def __init__(self, pending, names: tuple):
        self.pending, self.names = pending, names

    def result(self) -> RenderOutput:
        arrays = self.pending.result(self.names)
        part = lambda name, channels: np.ascontiguousarray(arrays[name][..., channels]) if name in arrays else None  # noqa: E731
        half = "normal16" in arrays  # (the float16 bits read as uint16)
        return RenderOutput(colour=part("colour", slice(None)), depth=part("depth" if half else "geometry", 0),
                            normal=part("normal16", slice(None)).view(np.float16) if half else part("geometry", slice(1, 4)),
                            segmentation=part("segmentation", 0),
                            depth_fine=part("fine", 0), normal_fine=part("fine", slice(1, 4)),
                            seen_next=part("next", slice(None)), seen_prev=part("prev", slice(None)),
                            background=part("background", slice(None)))
