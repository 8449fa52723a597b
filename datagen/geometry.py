"""Geometry of a batch of samples: model -> camera space, vertex normals, projection. numpy only, no GL.

The axes, units and pixel convention are ``camera``'s.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse

from .camera import project, to_camera
from .morphable_model import MorphableModel
from .sampling import FaceParams


@dataclass(frozen=True)
class SceneBatch:
    """B samples ready to draw (V model vertices).

    vertices:     (B, V, 3) float32 camera space, mm
    normals:      (B, V, 3) float32 unit vertex normals, camera space
    landmarks_3d: (B, 68, 3) float32 camera space, mm
    landmarks_2d: (B, 68, 2) float32 pixels
    intrinsics:   (B, 4) float32 fx, fy, cx, cy
    """

    vertices: np.ndarray
    normals: np.ndarray
    landmarks_3d: np.ndarray
    landmarks_2d: np.ndarray
    intrinsics: np.ndarray

    def __len__(self) -> int:
        return self.vertices.shape[0]


class MeshTopology:
    """What is fixed for a model: the triangles drawn and the operator that sums face normals at vertices."""

    def __init__(self, model: MorphableModel, triangles: np.ndarray):
        self.triangles = triangles
        f = len(triangles)
        rows = triangles.reshape(-1)
        cols = np.repeat(np.arange(f), 3)
        self.vertex_faces = scipy.sparse.csr_matrix((np.ones(3 * f, np.float32), (rows, cols)),
                                                    shape=(model.num_vertices, f))


def build_scenes(model: MorphableModel, topology: MeshTopology, params: list[FaceParams]) -> SceneBatch:
    """Shape, pose and project a batch of samples (vectorised over the batch)."""
    identity = np.stack([p.identity for p in params])
    expression = np.stack([p.expression for p in params])
    vertices = to_camera(model.vertices(identity, expression), model.pivot, [p.rotation for p in params],
                         np.stack([p.translation for p in params]))
    normals = vertex_normals(vertices, topology)
    intrinsics = np.stack([p.intrinsics for p in params])
    landmarks_3d = vertices[:, model.landmark_ids]
    return SceneBatch(vertices=vertices.astype(np.float32), normals=normals,
                      landmarks_3d=landmarks_3d.astype(np.float32),
                      landmarks_2d=project(landmarks_3d, intrinsics), intrinsics=intrinsics)


def vertex_normals(vertices: np.ndarray, topology: MeshTopology) -> np.ndarray:
    """Area-weighted unit vertex normals (B, V, 3) of the topology's triangles (outward for CCW triangles)."""
    b, v, _ = vertices.shape
    t = topology.triangles
    a, bb, c = vertices[:, t[:, 0]], vertices[:, t[:, 1]], vertices[:, t[:, 2]]
    face = np.cross(bb - a, c - a)  # (B, F, 3), length = 2 * area
    summed = topology.vertex_faces @ face.transpose(1, 0, 2).reshape(len(t), b * 3)  # (V, B*3)
    normals = summed.reshape(v, b, 3).transpose(1, 0, 2)
    length = np.linalg.norm(normals, axis=-1, keepdims=True)
    return (normals / np.maximum(length, 1e-12)).astype(np.float32)
