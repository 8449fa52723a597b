"""Geometry of a batch of samples: model -> camera space, vertex normals, projection. numpy only, no GL.

The axes, units and pixel convention are ``camera``'s. With ``on_device`` the dense mesh is left to
the renderer's compute shaders (device_geometry.py): the scene then carries the shape coefficients
and pose (``ShapeBatch``), and the host computes only the 68 landmarks and a bound on the depth.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import scipy.sparse

from ..camera import project, rotation_matrix, to_camera
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
class ShapeBatch:
    """What the device needs to make a batch's dense geometry (``SceneBatch.shape``).

    coefficients: (B, K_id + K_ex) float32 identity coefficients then expression weights, zero-padded
    rotations:    (B, 3, 3) float32 ``camera.rotation_matrix`` of each sample
    translations: (B, 3) float32 mm
    """

    coefficients: np.ndarray
    rotations: np.ndarray
    translations: np.ndarray

    def __len__(self) -> int:
        return self.coefficients.shape[0]

    def __getitem__(self, batch: slice) -> "ShapeBatch":
        return ShapeBatch(self.coefficients[batch], self.rotations[batch], self.translations[batch])


def shape_batch(model: MorphableModel, params: list[FaceParams]) -> ShapeBatch:
    coefficients = np.zeros((len(params), model.num_identity + model.num_expression), np.float32)
    for row, p in zip(coefficients, params):
        row[:len(p.identity)] = p.identity
        row[model.num_identity:model.num_identity + len(p.expression)] = p.expression
    rotations = np.stack([rotation_matrix(p.rotation) for p in params]).astype(np.float32)
    return ShapeBatch(coefficients, rotations, np.stack([p.translation for p in params]).astype(np.float32))


@dataclass(frozen=True)
class SceneBatch:
    """B samples ready to draw (V model vertices): geometry, camera, light and material.

    vertices:     (B, V, 3) float32 camera space, mm; None when the renderer makes them (``shape``)
    normals:      (B, V, 3) float32 unit vertex normals, camera space; None likewise
    landmarks_3d: (B, 68, 3) float32 camera space, mm
    landmarks_2d: (B, 68, 2) float32 pixels
    intrinsics:   (B, 4) float32 fx, fy, cx, cy
    light_sh:     (B, 9, 3) float32 radiance SH per RGB channel, camera space
    appearance:   (B, len(APPEARANCE_NAMES)) float32 procedural material parameters
    albedo_maps:  B ``texture.AlbedoMap`` or None: a fitted photo's albedo instead of the procedural skin
    props:        B ``props.PropMesh`` or None: hair, clothing, glasses, hands drawn with the face
    details:      B ``detail.SurfaceDetail`` or None: the fine detail on the skin
    depth_range:  (B, 2) float32 mm: the nearest and farthest depth drawn (the mesh's and the props'), or
                  bounds of them when the mesh is the device's; they set the projection's clip planes
    shape:        ``ShapeBatch`` when the dense mesh is left to the device (vertices and normals None)
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
    depth_range: np.ndarray | None = None
    shape: ShapeBatch | None = None

    def __len__(self) -> int:
        return self.intrinsics.shape[0]


def build_scenes(model: MorphableModel, params: list[FaceParams], albedo_maps=None,
                 topology: MeshTopology | None = None, detail_maps=None, on_device: bool = False) -> SceneBatch:
    """Shape, pose, project and light a batch of samples (vectorised over the batch).

    ``albedo_maps[i]`` (an ``AlbedoMap`` or None) is sample i's material instead of its procedural
    ``appearance``; ``detail_maps[i]`` (a ``DetailMap`` or None) the photo detail its ``detail``
    uses; ``topology`` defaults to the model's (``mesh_topology``). ``on_device``: leave the dense
    mesh to the renderer (``Renderer(geometry_on_device=True)``); samples with props need it on the
    host (they are built around it) and are refused.
    """
    topology = topology or mesh_topology(model)
    identity = np.stack([p.identity for p in params])
    expression = np.stack([p.expression for p in params])
    rotations, translations = [p.rotation for p in params], np.stack([p.translation for p in params])
    intrinsics = np.stack([p.intrinsics for p in params])
    common = dict(intrinsics=intrinsics, light_sh=np.stack([np.asarray(p.light_sh, np.float32) for p in params]),
                  appearance=np.stack([np.asarray(p.appearance, np.float32) for p in params]),
                  albedo_maps=tuple(albedo_maps) if albedo_maps is not None else (None,) * len(params),
                  details=tuple(surface_detail(p.detail, model.expression_names, p.expression, photo)
                                for p, photo in zip(params, detail_maps or (None,) * len(params))))
    if on_device:
        if any(has_props(p) for p in params):
            raise ValueError("samples with props need their mesh on the host: build_scenes(on_device=False)")
        landmarks_3d = to_camera(landmark_vertices(model, identity, expression), model.pivot, rotations, translations)
        return SceneBatch(vertices=None, normals=None, landmarks_3d=landmarks_3d.astype(np.float32),
                          landmarks_2d=project(landmarks_3d, intrinsics), props=(None,) * len(params),
                          depth_range=depth_bounds(model, topology, identity, expression, translations),
                          shape=shape_batch(model, params), **common)
    vertices = to_camera(model.vertices(identity, expression), model.pivot, rotations, translations)
    normals = vertex_normals(vertices, topology)
    landmarks_3d = vertices[:, model.landmark_ids]
    props = tuple(build_props(model, p, v, n) for p, v, n in zip(params, vertices, normals))
    return SceneBatch(vertices=vertices.astype(np.float32), normals=normals,
                      landmarks_3d=landmarks_3d.astype(np.float32),
                      landmarks_2d=project(landmarks_3d, intrinsics), props=props,
                      depth_range=drawn_depth_range(vertices, props), **common)


def drawn_depth_range(vertices: np.ndarray, props) -> np.ndarray:
    """(B, 2) the nearest and farthest depth of each sample's mesh and props."""
    depth = -vertices[..., 2]
    ranges = np.stack([depth.min(1), depth.max(1)], 1).astype(np.float32)
    for i, prop in enumerate(props):
        if prop is not None and len(prop):
            prop_depth = -np.asarray(prop.positions)[:, 2]
            ranges[i] = min(ranges[i, 0], prop_depth.min()), max(ranges[i, 1], prop_depth.max())
    return ranges


@functools.lru_cache(maxsize=4)
def _shape_extents(model: MorphableModel, topology: MeshTopology) -> tuple:
    """Over the drawn vertices: the farthest from the pivot of the mean, and of each basis vector."""
    drawn = np.unique(topology.triangles)
    mean = float(np.linalg.norm(model.mean[drawn] - model.pivot, axis=1).max())
    return (mean, np.linalg.norm(model.identity_basis[:, drawn], axis=2).max(1),
            np.linalg.norm(model.expression_basis[:, drawn], axis=2).max(1))


def depth_bounds(model: MorphableModel, topology: MeshTopology, identity, expression, translations) -> np.ndarray:
    """(B, 2) bounds on the depth of each sample's drawn mesh without computing it: every vertex lies
    within |mean - pivot| + sum_k |c_k| |basis_k| (the largest over the vertices, triangle inequality)
    of the translated pivot, whatever the rotation."""
    mean, identity_extent, expression_extent = _shape_extents(model, topology)
    radius = (mean + np.abs(identity) @ identity_extent[:identity.shape[1]]
              + np.abs(expression) @ expression_extent[:expression.shape[1]])
    centre = -np.asarray(translations)[:, 2]
    return np.stack([centre - radius, centre + radius], 1).astype(np.float32)


def landmark_vertices(model: MorphableModel, identity: np.ndarray, expression: np.ndarray) -> np.ndarray:
    """(B, 68, 3) model-space landmarks: the blend of their 68 rows of the bases alone."""
    ids = model.landmark_ids
    out = (model.mean[ids][None] + np.einsum("bk,kvc->bvc", identity, model.identity_basis[:identity.shape[1], ids])
           + np.einsum("be,evc->bvc", expression, model.expression_basis[:expression.shape[1], ids]))
    return out.astype(np.float32)


def has_props(p: FaceParams) -> bool:
    """Whether sample ``p`` draws anything besides the face (built around its mesh: ``build_props``)."""
    return any(getattr(p, name, None) is not None for name in ("glasses", "hand", "hair", "face_hair", "clothing"))


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
    """Area-weighted unit vertex normals (B, V, 3) of the topology's triangles (outward for CCW triangles).

    Vertex-major, (V, B, 3), so each gather takes whole rows and the face normals are already the
    (F, B * 3) the sparse sum takes; the cross product is ``np.cross``'s own arithmetic (same bits)."""
    b, v, _ = vertices.shape
    t = topology.triangles
    rows = np.ascontiguousarray(vertices.transpose(1, 0, 2))
    a = rows[t[:, 0]]
    e1, e2 = rows[t[:, 1]] - a, rows[t[:, 2]] - a  # (F, B, 3)
    face = np.empty_like(e1)  # cross(e1, e2), length = 2 * area
    for k, (i, j) in enumerate(((1, 2), (2, 0), (0, 1))):
        np.multiply(e1[..., i], e2[..., j], out=face[..., k])
        face[..., k] -= e1[..., j] * e2[..., i]
    summed = topology.vertex_faces @ face.reshape(len(t), b * 3)  # (V, B*3)
    normals = summed.reshape(v, b, 3).transpose(1, 0, 2)
    length = np.linalg.norm(normals, axis=-1, keepdims=True)
    return (normals / np.maximum(length, 1e-12)).astype(np.float32)
