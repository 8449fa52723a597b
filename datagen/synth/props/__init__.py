"""What is drawn with a face besides the morphable model: hair, clothing, glasses, hands.

Each part is a module with its parameters (drawn by ``sampling`` from the part's prior), and a
builder that takes the sample's posed face (camera space) to a ``PropMesh``. The renderer draws a
sample's props in the same passes as its face, so depth, normals and segmentation (each prop with
its own label) come out of one depth test, and a landmark a prop covers is marked not visible.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class PropMesh:
    """One sample's props as one triangle mesh, camera space (axes and units of ``camera``).

    positions (N, 3) mm; normals (N, 3) unit, outward; tangents (N, 3) hair strand directions (0
    elsewhere); colour (N, 3) linear-RGB albedo; uv (N, 2) pattern coordinates; label (N,) into
    LABELS; material (N,) into face_parts.MATERIALS; weights (N, 4) per material (hair: shell level,
    coverage); triangles (M, 3) int32, counter-clockwise seen from outside.
    """

    positions: np.ndarray
    normals: np.ndarray
    tangents: np.ndarray
    colour: np.ndarray
    uv: np.ndarray
    label: np.ndarray
    material: np.ndarray
    weights: np.ndarray
    triangles: np.ndarray

    def __len__(self) -> int:
        return len(self.positions)


VERTEX_ATTRIBUTES = ("positions", "normals", "tangents", "colour", "uv", "label", "material", "weights")


def prop_mesh(positions, normals, triangles, label: int, material: int, colour, uv=None, tangents=None,
              weights=None) -> PropMesh:
    """A PropMesh of one part: per-vertex arrays, or one label, material and colour for all."""
    n = len(positions)
    per_vertex = lambda value, width: np.broadcast_to(np.asarray(value, np.float32), (n, width)).copy()  # noqa: E731
    return PropMesh(positions=np.asarray(positions, np.float32), normals=np.asarray(normals, np.float32),
                    tangents=per_vertex(0.0 if tangents is None else tangents, 3), colour=per_vertex(colour, 3),
                    uv=per_vertex(0.0 if uv is None else uv, 2), label=np.full(n, label, np.float32),
                    material=np.full(n, material, np.float32), weights=per_vertex(0.0 if weights is None else weights, 4),
                    triangles=np.asarray(triangles, np.int32).reshape(-1, 3))


def combine(meshes) -> PropMesh | None:
    """The parts of a sample as one mesh (None when it has none)."""
    meshes = [m for m in meshes if m is not None and len(m.triangles)]
    if not meshes:
        return None
    offsets = np.cumsum([0] + [len(m) for m in meshes[:-1]])
    arrays = {name: np.concatenate([getattr(m, name) for m in meshes]) for name in VERTEX_ATTRIBUTES}
    triangles = np.concatenate([m.triangles + o for m, o in zip(meshes, offsets)]).astype(np.int32)
    return PropMesh(**arrays, triangles=triangles)


def vertex_normals(positions: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Area-weighted unit normals of one mesh (outward for counter-clockwise triangles)."""
    a, b, c = (positions[triangles[:, k]] for k in range(3))
    face = np.cross(b - a, c - a)
    normals = np.zeros_like(positions)
    for k in range(3):
        np.add.at(normals, triangles[:, k], face)
    return normals / np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)
