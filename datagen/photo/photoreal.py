"""The photo behind a re-rendered face (photo-realistic jobs): the fitted photo, warped with the head.

When a fitted face is rendered with a new pose or expression, the head's outline moves; the hair
and background around it must move with it or the composite shows a double outline. The warp is
a smooth 2D field (thin-plate spline, scipy) through the displacements of a fixed set of head
vertices from the photo's fitted pose to the new one, pinned to zero along the image border, so
that the head drags the nearby hair and background with it and the far background stays put.
"""

from __future__ import annotations

import numpy as np
from PIL import Image
from scipy.interpolate import RBFInterpolator
from scipy.ndimage import map_coordinates, zoom

from ..synth.face_parts import LABEL, MATERIAL, face_parts
from ..camera import project, resize_intrinsics, to_camera
from ..models.morphable_model import MorphableModel

WARP_POINTS = 400
GRID = 32  # the warp field is evaluated on a GRID x GRID lattice, then interpolated
SMOOTHING = 50.0  # thin-plate smoothing: a gentle field, not one that wiggles through every point


def warp_vertex_ids(model: MorphableModel, count: int = WARP_POINTS) -> np.ndarray:
    """About ``count`` drawn skin vertices (face, head, neck), evenly spread over the vertex list."""
    parts = face_parts(model)
    drawn = np.unique(model.triangles[parts.drawn_triangles])
    skin = drawn[parts.material[drawn] == MATERIAL["skin"]]
    return skin[np.linspace(0, len(skin) - 1, min(count, len(skin))).astype(int)]


class PhotoBackdrop:
    """Per fitted photo: the photo at the output size and its head points in the fitted pose."""

    def __init__(self, photos: list, model: MorphableModel, width: int, height: int):
        self.ids = warp_vertex_ids(model)
        self.width, self.height = width, height
        self.images, self.fitted_points, self.greyscale = [], [], []
        for photo in photos:
            channels = photo.crop.astype(np.int16)
            self.greyscale.append(bool(np.abs(channels - channels.mean(-1, keepdims=True)).max() <= 2))
            crop = photo.crop.shape[0]
            self.images.append(np.asarray(Image.fromarray(photo.crop).resize((width, height), Image.LANCZOS)))
            fit = photo.fit
            vertices = model.vertices(fit.identity, fit.expression)[self.ids]
            camera = to_camera(vertices, model.pivot, fit.rotation, fit.translation)
            self.fitted_points.append(project(camera[None], resize_intrinsics(fit.intrinsics, crop, width, height)[None])[0])

    def __call__(self, photo_index: int, camera_vertices: np.ndarray, intrinsics: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8: photo ``photo_index`` warped to follow the head now at ``camera_vertices`` (V, 3)."""
        new = project(camera_vertices[self.ids][None], intrinsics[None])[0]
        return warp_image(self.images[photo_index], self.fitted_points[photo_index], new)


def warp_image(image: np.ndarray, old: np.ndarray, new: np.ndarray) -> np.ndarray:
    """Backward-warp ``image`` so that the content at points ``old`` lands at ``new`` (pixels, (N, 2))."""
    h, w = image.shape[:2]
    border = np.linspace(0, 1, 9)
    anchors = np.concatenate([np.stack([border * w, np.zeros(9)], 1), np.stack([border * w, np.full(9, h)], 1),
                              np.stack([np.zeros(9), border * h], 1), np.stack([np.full(9, w), border * h], 1)])
    inside = np.all((new > -0.25 * w) & (new < 1.25 * w), axis=1)  # far-off points only stiffen the fit
    points = np.concatenate([new[inside], anchors])
    shift = np.concatenate([(new - old)[inside], np.zeros_like(anchors)])
    field = RBFInterpolator(points, shift, kernel="thin_plate_spline", smoothing=SMOOTHING)
    gy, gx = np.meshgrid(np.linspace(0, h, GRID), np.linspace(0, w, GRID), indexing="ij")
    coarse = field(np.stack([gx.ravel(), gy.ravel()], 1)).reshape(GRID, GRID, 2)
    dense = np.stack([zoom(coarse[..., c], (h / GRID, w / GRID), order=1, mode="nearest", grid_mode=True)
                      for c in range(2)], -1)[:h, :w]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    source = [ys - dense[..., 1], xs - dense[..., 0]]  # pixel centres cancel: index i is centre i + 0.5
    return np.stack([map_coordinates(image[..., c], source, order=1, mode="nearest") for c in range(3)], -1)


def face_only(colour: np.ndarray, segmentation: np.ndarray, landmarks: np.ndarray, feather: float = 2.0,
              greyscale: bool = False) -> np.ndarray:
    """``colour`` (H, W, 4) with its alpha limited to the face, feathered inwards.

    As in Guo et al., the re-rendered face replaces the photo's face only: hair, ears and neck
    come from the (warped) photo. The face is the rendered face parts (not head/neck) inside the
    jaw line and the brows raised halfway to the hairline. The ground truth still describes the
    whole head's surface.
    """
    from PIL import ImageDraw
    from scipy.ndimage import gaussian_filter

    h, w = segmentation.shape
    brows = landmarks[17:27][::-1]
    raised = brows + 0.6 * (brows - landmarks[33])  # away from the nose base: the forehead
    outline = Image.new("L", (w, h))
    ImageDraw.Draw(outline).polygon([tuple(p) for p in np.concatenate([landmarks[:17], raised])], fill=1)
    face = (np.asarray(outline, bool) & (segmentation != LABEL["background"]) & (segmentation != LABEL["head_neck"]))
    face = face.astype(np.float32)
    soft = np.minimum(gaussian_filter(face, feather), face) if feather else face  # fade inwards only
    out = colour.copy()
    out[..., 3] = np.round(colour[..., 3] * soft).astype(np.uint8)
    if greyscale:  # a black-and-white photo gets a black-and-white face
        out[..., :3] = np.round(colour[..., :3] @ np.array([0.299, 0.587, 0.114]))[..., None].astype(np.uint8)
    return out
