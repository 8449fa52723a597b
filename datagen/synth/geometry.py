"""Geometry of a batch of samples: model -> camera space, vertex normals, projection. numpy only, no GL.

The axes, units and pixel convention are ``camera``'s.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import scipy.sparse

from ..camera import project, to_camera
from .detail import surface_detail
from .face_parts import face_parts
from ..models.morphable_model import MorphableModel
from .props import PropMesh, combine
from .props.clothing import build_clothing
from .props.face_hair import build_face_hair
from .props.hair import build_hair, scalp
from .props.occluders import build_occluders
from .sampling import FaceParams


@dataclass(frozen=True, eq=False)
class MeshTopology:
    """What is fixed for a model, built once from it without a GL context.

    triangles:        (F, 3) model-vertex ids of the triangles drawn (face_parts.drawn_triangles)
    vertex_faces:     sparse (V, F) operator summing face normals at vertices
    render_to_model:  (R,) model-vertex id of each render vertex: a unique (vertex, uv) pair, so
                      vertices are split along UV seams
    render_triangles: (F, 3) the drawn triangles in render-vertex ids
    attributes:       per render vertex, what never changes: ``uv`` (R, 2), ``label`` (R,),
                      ``material`` (R,), ``weights`` (R, 4) (see face_parts); render.py lays
                      them out in the GL buffers
    """

    triangles: np.ndarray
    vertex_faces: scipy.sparse.csr_matrix
    render_to_model: np.ndarray
    render_triangles: np.ndarray
    attributes: dict

    @property
    def render_uv(self) -> np.ndarray:
        return self.attributes["uv"]


@functools.lru_cache(maxsize=4)
def mesh_topology(model: MorphableModel) -> MeshTopology:
    """The topology of ``model`` (computed once per model object and process)."""
    parts = face_parts(model)
    triangles = model.triangles[parts.drawn_triangles]
    f = len(triangles)
    vertex_faces = scipy.sparse.csr_matrix((np.ones(3 * f, np.float32), (triangles.reshape(-1), np.repeat(np.arange(f), 3))),
                                           shape=(model.num_vertices, f))
    uv_ids = model.triangle_uv[parts.drawn_triangles]
    keys = triangles.astype(np.int64) * (len(model.uv) + 1) + uv_ids
    unique, inverse = np.unique(keys.reshape(-1), return_inverse=True)
    render_to_model = (unique // (len(model.uv) + 1)).astype(np.int64)
    attributes = {"uv": model.uv[unique % (len(model.uv) + 1)], "label": parts.labels[render_to_model],
                  "material": parts.material[render_to_model], "weights": parts.weights[render_to_model]}
    return MeshTopology(triangles=triangles, vertex_faces=vertex_faces, render_to_model=render_to_model,
                        render_triangles=inverse.astype(np.int32).reshape(-1, 3), attributes=attributes)


@dataclass(frozen=True)
class SceneBatch:
    """B samples ready to draw (V model vertices): geometry, camera, light and material.

    vertices:     (B, V, 3) float32 camera space, mm
    normals:      (B, V, 3) float32 unit vertex normals, camera space
    landmarks_3d: (B, 68, 3) float32 camera space, mm
    landmarks_2d: (B, 68, 2) float32 pixels
    intrinsics:   (B, 4) float32 fx, fy, cx, cy
    light_sh:     (B, 9, 3) float32 radiance SH per RGB channel, camera space
    appearance:   (B, len(APPEARANCE_NAMES)) float32 procedural material parameters
    albedo_maps:  B ``texture.AlbedoMap`` or None: a fitted photo's albedo instead of the procedural skin
    props:        B ``props.PropMesh`` or None: hair, clothing, glasses, hands drawn with the face
    details:      B ``detail.SurfaceDetail`` or None: the fine detail on the skin
    """

    vertices: np.ndarray
    normals: np.ndarray
    landmarks_3d: np.ndarray
    landmarks_2d: np.ndarray
    intrinsics: np.ndarray
    light_sh: np.ndarray
    appearance: np.ndarray
    albedo_maps: tuple
    props: tuple = ()
    details: tuple = ()

    def __len__(self) -> int:
        return self.vertices.shape[0]


def build_scenes(model: MorphableModel, params: list[FaceParams], albedo_maps=None,
                 topology: MeshTopology | None = None, detail_maps=None) -> SceneBatch:
    """Shape, pose, project and light a batch of samples (vectorised over the batch).

    ``albedo_maps[i]`` (an ``AlbedoMap`` or None) is sample i's material instead of its procedural
    ``appearance``; ``detail_maps[i]`` (a ``DetailMap`` or None) the photo detail its ``detail``
    uses; ``topology`` defaults to the model's (``mesh_topology``).
    """
    topology = topology or mesh_topology(model)
    identity = np.stack([p.identity for p in params])
    expression = np.stack([p.expression for p in params])
    vertices = to_camera(model.vertices(identity, expression), model.pivot, [p.rotation for p in params],
                         np.stack([p.translation for p in params]))
    normals = vertex_normals(vertices, topology)
    intrinsics = np.stack([p.intrinsics for p in params])
    landmarks_3d = vertices[:, model.landmark_ids]
    return SceneBatch(vertices=vertices.astype(np.float32), normals=normals,
                      landmarks_3d=landmarks_3d.astype(np.float32),
                      landmarks_2d=project(landmarks_3d, intrinsics), intrinsics=intrinsics,
                      light_sh=np.stack([np.asarray(p.light_sh, np.float32) for p in params]),
                      appearance=np.stack([np.asarray(p.appearance, np.float32) for p in params]),
                      albedo_maps=tuple(albedo_maps) if albedo_maps is not None else (None,) * len(params),
                      props=tuple(build_props(model, p, v, n) for p, v, n in zip(params, vertices, normals)),
                      details=tuple(surface_detail(p.detail, model.expression_names, p.expression, photo)
                                    for p, photo in zip(params, detail_maps or (None,) * len(params))))


def check_props(spec, model: MorphableModel) -> None:
    """One clear error, before any work, when the job asks for props its model cannot carry."""
    s = spec.sampling
    if s.hair.probability or s.clothing.probability:
        scalp(model)  # raises: hair and clothing need a head and neck


def build_props(model: MorphableModel, p: FaceParams, vertices: np.ndarray, normals: np.ndarray) -> PropMesh | None:
    """The props of sample ``p`` around its posed face (``vertices``, ``normals``: camera space)."""
    parts = [build_occluders(model, p, vertices)]
    if p.hair is not None:
        parts.append(build_hair(model, p.hair, p.rotation, vertices, normals))
    if p.face_hair is not None:
        parts.append(build_face_hair(model, p.face_hair, p.rotation, vertices, normals))
    if p.clothing is not None:
        parts.append(build_clothing(model, p.clothing, p.rotation, p.translation, vertices))
    return combine(parts)


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
