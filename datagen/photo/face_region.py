"""The face region the photometric step (``photometric``) compares with a photo, made once per model.

Its vertices: the face surface (skin, nose, lips; never the hidden meshes of ``face_parts``) and
every vertex of the drawn triangles touching it, so that their normals are the renderer's. Of them
every ``STRIDE``-th face vertex is compared with the photo; its smooth albedo basis, the
derivative of its normals with the shape, and the "parallels" along which the jaw-line landmarks
move to the outline (Zhu et al. 2015, HPEN's landmark marching) are computed here.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import scipy.sparse

from ..camera import project_points, rotation_matrix
from ..models.morphable_model import MorphableModel
from ..synth.face_parts import LABEL, face_parts
from ..synth.geometry import mesh_topology

COMPARED_LABELS = tuple(LABEL[n] for n in ("skin", "nose", "upper_lip", "lower_lip"))
STRIDE = 3  # every 3rd face vertex is compared (ICT-FaceKit: ~3,000 of 9,200)
CONTOUR = tuple(k for k in range(17) if k != 8)  # the jaw line's landmarks but the chin's middle
PARALLEL_MM = 2.5  # a contour landmark's parallel: face vertices within this height of it


@dataclass(frozen=True, eq=False)
class FaceRegion:
    """What the refinement needs of a model, made once per model and process."""

    ids: np.ndarray  # (R,) model-vertex ids of the face region
    compared: np.ndarray  # (N,) indices into ids of the vertices compared with the photo
    mean: np.ndarray  # (R, 3) float64
    shape: np.ndarray  # (R, 3, K_id + K_ex): the identity then the expression basis
    shape_flat: np.ndarray  # (3 R, K_id + K_ex) float32, the same, for one matrix-vector product
    triangles: np.ndarray  # (F, 3) into ids
    vertex_faces: scipy.sparse.csr_matrix  # (R, F): sums face normals at vertices
    albedo_basis: np.ndarray  # (N, P) per compared vertex
    landmarks: np.ndarray  # (68,) indices into ids
    normal_basis: np.ndarray  # (N, 3, K_id + K_ex) d (unnormalised vertex normal) / d shape at the mean, compared vertices
    parallels: tuple  # per CONTOUR landmark, (indices into ids, side +1 / -1)


@functools.lru_cache(maxsize=4)
def face_region(model: MorphableModel) -> FaceRegion:
    parts = face_parts(model)
    drawn = mesh_topology(model).triangles
    inside = np.isin(parts.labels, COMPARED_LABELS)
    inside[model.landmark_ids] = True
    inside &= np.isin(np.arange(model.num_vertices), drawn)  # not the hidden meshes (face_parts.HIDDEN_REGIONS)
    touching = drawn[inside[drawn].any(1)]  # every triangle at an inside vertex: its normal is the renderer's
    ids = np.union1d(np.flatnonzero(inside), touching)
    local = np.full(model.num_vertices, -1)
    local[ids] = np.arange(len(ids))
    triangles = local[touching]
    compared = np.flatnonzero(inside[ids] & np.isin(parts.labels[ids], COMPARED_LABELS))[::STRIDE]
    mean = model.mean[ids].astype(np.float64)
    landmarks = local[model.landmark_ids]
    shape = np.concatenate([model.identity_basis[:, ids], model.expression_basis[:, ids]]).transpose(1, 2, 0)
    shape = np.ascontiguousarray(shape, np.float64)
    f = len(triangles)
    vertex_faces = scipy.sparse.csr_matrix((np.ones(3 * f), (triangles.reshape(-1), np.repeat(np.arange(f), 3))),
                                           shape=(len(ids), f))
    return FaceRegion(ids=ids, compared=compared, mean=mean, shape=shape, shape_flat=shape.reshape(-1, shape.shape[2]).astype(np.float32),
                       triangles=triangles, vertex_faces=vertex_faces, albedo_basis=_albedo_basis(model, ids[compared], parts.weights),
                       landmarks=landmarks, normal_basis=_normal_basis(mean, shape, triangles, compared),
                       parallels=_parallels(mean, landmarks))


def _normal_basis(mean: np.ndarray, shape: np.ndarray, triangles: np.ndarray, compared: np.ndarray) -> np.ndarray:
    """d n / d shape at the mean for n = sum over a vertex's triangles of (b - a) x (c - a)."""
    a, b, c = (mean[triangles[:, k]] for k in range(3))
    da, db, dc = (shape[triangles[:, k]] for k in range(3))
    d_face = np.cross((db - da), (c - a)[:, :, None], axisa=1, axisb=1, axisc=1) + \
        np.cross((b - a)[:, :, None], (dc - da), axisa=1, axisb=1, axisc=1)  # (F, 3, K)
    out = np.zeros_like(shape)
    for k in range(3):
        np.add.at(out, triangles[:, k], d_face)  # once per model
    return out[compared]


def _albedo_basis(model: MorphableModel, vertex_ids: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """(N, 13): 1, the 9 quadratic monomials of the mean face's centred, scaled coordinates, and
    the lip, cheek and nose weights; the columns but the first scaled to unit RMS."""
    points = model.mean[vertex_ids].astype(np.float64)
    p = (points - points.mean(0)) / points.std(0).max()
    x, y, z = p.T
    columns = [x, y, z, x * x, y * y, z * z, x * y, x * z, y * z, *weights[vertex_ids][:, [0, 2, 3]].T]
    columns = [c - c.mean() for c in columns]
    return np.stack([np.ones(len(p))] + [c / max(np.sqrt((c * c).mean()), 1e-9) for c in columns], 1)


def _parallels(mean: np.ndarray, landmarks: np.ndarray) -> tuple:
    out = []
    for k in CONTOUR:
        m = mean[landmarks[k]]
        side = 1.0 if m[0] > mean[landmarks[30], 0] else -1.0  # the subject's left (+x) or right
        offset = side * (mean[:, 0] - m[0])  # > 0: outward of the landmark
        on = (np.abs(mean[:, 1] - m[1]) < PARALLEL_MM) & (offset <= 0) & (side * (mean[:, 0] - mean[landmarks[30], 0]) > 0)
        on[landmarks[k]] = True
        out.append((np.flatnonzero(on), side))
    return tuple(out)


def outline_landmark_vertices(region: FaceRegion, uv: np.ndarray, rotation: np.ndarray) -> np.ndarray:
    """(68,) indices into ``region.ids``: the model's landmark vertices, but the jaw line's on the
    side turning away from the camera at the face's outline: each moves along its parallel to the
    vertex projected outermost (``uv``: the region's pixels; ``rotation``: the face's R)."""
    ids = region.landmarks.copy()
    across = np.array([rotation[0, 0], -rotation[1, 0]])  # the face's +x axis, in pixels (v down)
    for k, (candidates, side) in zip(CONTOUR, region.parallels):
        if side * rotation[2, 0] < 0:  # that side's outward direction points away from the camera
            ids[k] = candidates[np.argmax(side * (uv[candidates] @ across))]
    return ids


def outline_landmarks(model: MorphableModel, params) -> np.ndarray:
    """(68, 2) pixels: a face's 68 landmarks as 300-W annotates a photo (the jaw line on the
    outline where the face turns away); ``params`` a ``FaceParams`` or ``LandmarkFit``."""
    region = face_region(model)
    points = model.vertices(params.identity, params.expression)[region.ids].astype(np.float64)
    camera = (points - model.pivot) @ rotation_matrix(params.rotation).T + params.translation
    uv = project_points(camera, np.asarray(params.intrinsics, np.float64))
    return uv[outline_landmark_vertices(region, uv, rotation_matrix(params.rotation))]
