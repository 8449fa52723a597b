"""Per-vertex face parts: segmentation labels and the weights the skin shader uses.

Parts come from the model's regions (eyeballs, teeth, mouth, ...) where the model has them,
and, on the face surface, from the 68 landmarks of the mean shape seen from the front
(lips inside the outer lip contour, brows along the brow landmarks, nose around the nose
landmarks). That works for any model with 68 landmarks, SFM included.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from scipy.spatial import Delaunay

from ..data.fields import LABELS
from ..models.morphable_model import MorphableModel

LABEL = {name: i for i, name in enumerate(LABELS)}  # LABELS: the public table, declared with the fields

# Materials the shader knows (values of the per-vertex material attribute).
MATERIALS = ("skin", "mouth_interior", "teeth", "eye", "eye_socket", "hair", "cloth", "prop_skin", "glasses",
             "eyelash")
MATERIAL = {name: i for i, name in enumerate(MATERIALS)}

# Model regions: (label, material); regions not listed are not drawn (see HIDDEN_REGIONS).
REGION_PARTS = {
    "face": ("skin", "skin"),
    "head_neck": ("head_neck", "skin"),
    "mouth_socket": ("mouth_interior", "mouth_interior"),
    "gums_tongue": ("mouth_interior", "mouth_interior"),
    "teeth": ("teeth", "teeth"),
    "eye_socket_left": ("eye_left", "eye_socket"),
    "eye_socket_right": ("eye_right", "eye_socket"),
    "sclera_left": ("eye_left", "eye"),
    "sclera_right": ("eye_right", "eye"),
}
# Geometry made for Unreal Engine's alpha-textured shaders would cover the eyes if drawn
# opaque: lacrimal fluid, eye blend and occlusion meshes, and the eyelash cards. ICT's iris is a
# sphere inside the sclera's (the cornea), so the iris is painted on the sclera instead.
HIDDEN_REGIONS = ("lacrimal_fluid_left", "lacrimal_fluid_right", "eye_blend_left", "eye_blend_right",
                  "eye_occlusion_left", "eye_occlusion_right", "iris_left", "iris_right",
                  "eyelashes_left", "eyelashes_right")
IRIS_ANGLE = np.radians(24.0)  # angular radius of the iris seen from the eyeball's centre


@dataclass(frozen=True, eq=False)
class FaceParts:
    """labels: (V,) uint8 into LABELS; material: (V,) uint8 into MATERIALS;
    weights: (V, 4) float32 — skin: (lip, brow, cheek, nose) in [0, 1];
             eye: (distance from the pupil's centre, 1 = the iris's rim, 0, 0, 0);
    drawn_triangles: (F',) int64 ids of the triangles to draw."""

    labels: np.ndarray
    material: np.ndarray
    weights: np.ndarray
    drawn_triangles: np.ndarray


@functools.lru_cache(maxsize=4)
def face_parts(model: MorphableModel) -> FaceParts:
    """The parts of ``model`` (computed once per model object and process)."""
    v = model.num_vertices
    labels = np.full(v, LABEL["skin"], np.uint8)
    material = np.full(v, MATERIAL["skin"], np.uint8)
    for region, (label, mat) in REGION_PARTS.items():
        mask = model.region_vertices(region)
        labels[mask], material[mask] = LABEL[label], MATERIAL[mat]

    surface = model.region_vertices("face") if "face" in model.region_names else np.ones(v, bool)
    xy = model.mean[:, :2]
    lm = model.mean[model.landmark_ids, :2]
    weights = np.zeros((v, 4), np.float32)

    # Landmark-defined parts on the face surface, seen from the front.
    nose = _inside(xy, _grown_hull(lm[27:36], 4.0))
    labels[surface & nose] = LABEL["nose"]
    if not model.region_vertices("sclera_left").any():  # a face-only model (SFM): eyes from the eye contours
        for side, ids in (("eye_right", slice(36, 42)), ("eye_left", slice(42, 48))):
            eye = surface & _inside_polygon(xy, lm[ids])
            labels[eye], material[eye] = LABEL[side], MATERIAL["eye"]
            centre, width = lm[ids].mean(0), np.ptp(lm[ids, 0])
            weights[eye, 0] = np.linalg.norm(xy[eye] - centre, axis=1) / (0.22 * width)
    for side, ids in (("brow_right", slice(17, 22)), ("brow_left", slice(22, 27))):
        d = _distance_to_polyline(xy, _brow_line(lm[ids], lm))
        labels[surface & (d < 4.5)] = LABEL[side]
        weights[surface, 1] = np.maximum(weights[surface, 1], np.clip(1.2 - d[surface] / 5.0, 0, 1))
    lips = surface & _inside_polygon(xy, lm[48:60])
    upper = xy[:, 1] > _lip_midline(lm, xy[:, 0])
    labels[lips & upper] = LABEL["upper_lip"]
    labels[lips & ~upper] = LABEL["lower_lip"]
    weights[lips, 0] = 1.0

    inter_ocular = np.linalg.norm(lm[45] - lm[36])
    for cheek in (lm[[2, 31, 36]].mean(0), lm[[14, 35, 45]].mean(0)):
        d2 = ((xy - cheek) ** 2).sum(1)
        weights[surface, 2] = np.maximum(weights[surface, 2], np.exp(-d2[surface] / (0.25 * inter_ocular) ** 2))
    tip = lm[30]
    weights[surface, 3] = np.exp(-((xy[surface] - tip) ** 2).sum(1) / (0.12 * inter_ocular) ** 2)

    for region in ("sclera_left", "sclera_right"):
        mask = model.region_vertices(region)
        if mask.any():  # the eyeball looks down +z in the neutral mean
            points = model.mean[mask]
            centre = (points.min(0) + points.max(0)) / 2
            direction = (points - centre) / np.linalg.norm(points - centre, axis=1, keepdims=True)
            weights[mask, 0] = np.arccos(np.clip(direction[:, 2], -1, 1)) / IRIS_ANGLE

    hidden = [model.region_names.index(r) for r in HIDDEN_REGIONS if r in model.region_names]
    drawn = np.flatnonzero(~np.isin(model.triangle_region, hidden))
    return FaceParts(labels=labels, material=material, weights=weights, drawn_triangles=drawn)


def _grown_hull(points: np.ndarray, radius: float) -> Delaunay:
    """The convex hull of points grown by radius (Minkowski sum with a 16-gon)."""
    angles = np.linspace(0, 2 * np.pi, 16, endpoint=False)
    ring = radius * np.stack([np.cos(angles), np.sin(angles)], 1)
    return Delaunay((points[:, None, :] + ring[None]).reshape(-1, 2))


def _inside(xy: np.ndarray, hull: Delaunay) -> np.ndarray:
    return hull.find_simplex(xy) >= 0


def _inside_polygon(xy: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """Even-odd rule point-in-polygon, vectorised over points."""
    x, y = xy[:, 0:1], xy[:, 1:2]
    a, b = polygon, np.roll(polygon, -1, axis=0)
    crosses = (a[:, 1] > y) != (b[:, 1] > y)
    with np.errstate(divide="ignore", invalid="ignore"):
        x_at = a[:, 0] + (y - a[:, 1]) * (b[:, 0] - a[:, 0]) / (b[:, 1] - a[:, 1])
    return (crosses & (x < x_at)).sum(1) % 2 == 1


def _lip_midline(lm: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Height of the line between the lips (corners and mid-points of the inner contour) at each x."""
    pts = np.array([lm[48], (lm[61] + lm[67]) / 2, (lm[62] + lm[66]) / 2, (lm[63] + lm[65]) / 2, lm[54]])
    order = np.argsort(pts[:, 0])
    return np.interp(x, pts[order, 0], pts[order, 1])


def _brow_line(brow: np.ndarray, lm: np.ndarray) -> np.ndarray:
    """iBUG brow points mark the brow's upper edge; the brow's centre line lies a few mm below."""
    eye_to_brow = np.linalg.norm(lm[19] - lm[37])
    return brow - np.array([0.0, 0.12 * eye_to_brow])


def _distance_to_polyline(xy: np.ndarray, line: np.ndarray) -> np.ndarray:
    best = np.full(len(xy), np.inf)
    for a, b in zip(line[:-1], line[1:]):
        ab = b - a
        t = np.clip(((xy - a) @ ab) / max(ab @ ab, 1e-12), 0, 1)
        best = np.minimum(best, np.linalg.norm(xy - (a + t[:, None] * ab), axis=1))
    return best
