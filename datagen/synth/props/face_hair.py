"""Eyelashes and eyebrows with relief.

Eyelashes are ICT-FaceKit's lash cards (its ``eyelashes_*`` regions, hidden from the face mesh
because they are made for an alpha-textured shader), posed with the face (blinks move them) and
drawn double-sided with a procedural lash pattern that the shader alpha-tests in every pass: lashes
along the card (its u), tapering from the root to the tip (its v, each card's own band). Eyebrows
get a few short hair shells over the brow region, so they stand off the skin as brows do.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from ...camera import rotation_matrix
from ...models.morphable_model import MorphableModel
from . import PropMesh, combine, vertex_normals
from .hair import shell_mesh

LASH_COLOURS = (0.012, 0.045)  # linear albedo, a dark grey-brown range
BROW_SHELLS = 4
BROW_THICKNESS_MM = (1.5, 3.5)


@dataclass(frozen=True)
class FaceHairParams:
    lashes: bool
    brows: bool
    lash_colour: np.ndarray  # (3,) linear RGB
    brow_colour: np.ndarray
    brow_thickness: float  # mm


def sample_face_hair(rng, prior, hair_colour) -> FaceHairParams | None:
    # every value is drawn, used or not: one option's probability leaves the other's draws alone
    lashes, brows = rng.uniform(size=2) < [prior.eyelash_probability, prior.brow_relief_probability]
    lash = np.full(3, rng.uniform(*LASH_COLOURS)) * [1.0, 0.8, 0.65]
    bald_brow = np.full(3, rng.uniform(0.02, 0.08)) * [1, 0.75, 0.55]
    thickness = float(rng.uniform(*BROW_THICKNESS_MM))
    if not (lashes or brows):
        return None
    brow = 0.7 * np.asarray(hair_colour) if hair_colour is not None else bald_brow  # the scalp's hair, darker
    return FaceHairParams(bool(lashes), bool(brows), lash.astype(np.float32), brow.astype(np.float32), thickness)


@dataclass(frozen=True, eq=False)
class LashCards:
    """ids (L,) model-vertex ids; uv (L, 2); tip (L,) 0 at a lash's root to 1 at its tip;
    label (L,) the eye's label; triangles (T, 3) in positions of ``ids``."""

    ids: np.ndarray
    uv: np.ndarray
    tip: np.ndarray
    label: np.ndarray
    triangles: np.ndarray


@functools.lru_cache(maxsize=4)
def lash_cards(model: MorphableModel) -> LashCards | None:
    from ..face_parts import LABEL

    ids, uv, tip, label, triangles = [], [], [], [], []
    count = 0
    for side in ("left", "right"):
        region = f"eyelashes_{side}"
        if region not in model.region_names:
            continue
        chosen = model.triangle_region == model.region_names.index(region)
        tri, tri_uv = model.triangles[chosen], model.triangle_uv[chosen]
        vertex, first = np.unique(tri.reshape(-1), return_index=True)
        local = np.searchsorted(vertex, tri)
        card_uv = model.uv[tri_uv.reshape(-1)[first]]
        eye = model.mean[model.region_vertices(f"sclera_{side}")].mean(0)
        tip.append(_tips(model.mean[vertex], card_uv, local, eye))
        ids.append(vertex), uv.append(card_uv), label.append(np.full(len(vertex), LABEL[f"eye_{side}"]))
        triangles.append(local + count)
        count += len(vertex)
    if not ids:
        return None
    return LashCards(np.concatenate(ids), np.concatenate(uv), np.concatenate(tip), np.concatenate(label),
                     np.concatenate(triangles).astype(np.int32))


def _tips(points, uv, triangles, eye) -> np.ndarray:
    """Per card (a connected band of v), v rescaled to 0 at the end nearest the eye, 1 at the other."""
    import scipy.sparse
    import scipy.sparse.csgraph

    n = len(points)
    edges = scipy.sparse.coo_matrix((np.ones(triangles.size), (triangles.reshape(-1), np.roll(triangles, 1, 1).reshape(-1))),
                                    shape=(n, n))
    _, card = scipy.sparse.csgraph.connected_components(edges, directed=False)
    tip = np.zeros(n)
    for c in np.unique(card):
        on = card == c
        v = uv[on, 1]
        t = (v - v.min()) / max(np.ptp(v), 1e-9)
        distance = np.linalg.norm(points[on] - eye, axis=1)
        root, end = distance[t < 0.2], distance[t > 0.8]
        tip[on] = t if not len(end) or root.mean() < end.mean() else 1 - t
    return tip


def build_lashes(model: MorphableModel, f: FaceHairParams, vertices: np.ndarray) -> PropMesh | None:
    from ..face_parts import MATERIAL

    cards = lash_cards(model)
    if cards is None:
        return None
    positions = vertices[cards.ids]
    normals = vertex_normals(positions, cards.triangles)
    n = len(positions)
    both = lambda a: np.concatenate([a, a])  # noqa: E731  the back side: the same points, normals reversed
    weights = np.zeros((2 * n, 4), np.float32)
    weights[:, 0] = both(cards.tip)
    return PropMesh(positions=both(positions).astype(np.float32), normals=np.concatenate([normals, -normals]).astype(np.float32),
                    tangents=np.zeros((2 * n, 3), np.float32), colour=np.broadcast_to(f.lash_colour, (2 * n, 3)).astype(np.float32),
                    uv=both(cards.uv).astype(np.float32), label=both(cards.label).astype(np.float32),
                    material=np.full(2 * n, MATERIAL["eyelash"], np.float32), weights=weights,
                    triangles=np.concatenate([cards.triangles, cards.triangles[:, ::-1] + n]).astype(np.int32))


def build_brows(model: MorphableModel, f: FaceHairParams, rotation, vertices: np.ndarray, normals: np.ndarray) -> PropMesh | None:
    """A few short shells over the brows, their coverage the brow weight of ``face_parts``."""
    from ..face_parts import LABEL, MATERIAL, face_parts

    parts = face_parts(model)
    on = np.isin(parts.labels, [LABEL["brow_left"], LABEL["brow_right"]]) | (parts.weights[:, 1] > 0.05)
    drawn = model.triangles[parts.drawn_triangles]
    local = np.full(model.num_vertices, -1)
    ids = np.flatnonzero(on)
    local[ids] = np.arange(len(ids))
    triangles = local[drawn[(local[drawn] >= 0).all(1)]]
    if not len(triangles):
        return None
    n = len(ids)
    base, normal = vertices[ids], normals[ids]
    outward = np.stack([np.sign(model.mean[ids, 0]), np.full(n, 0.35), np.zeros(n)], 1)  # brow hairs grow outwards and up
    tangent = outward @ rotation_matrix(rotation).T
    tangent -= normal * (tangent * normal).sum(1, keepdims=True)
    tangent /= np.maximum(np.linalg.norm(tangent, axis=1, keepdims=True), 1e-9)
    coverage = np.clip((parts.weights[ids, 1] - 0.3) * 1.6, 0, 1)  # the brow's core, not its fringe
    labels = np.where(model.mean[ids, 0] > 0, LABEL["brow_left"], LABEL["brow_right"])
    uv = np.stack([model.mean[ids, 0] * 0.004, model.mean[ids, 1] * 0.05], 1)  # streaks along x: along the brow
    return shell_mesh(BROW_SHELLS, 0.3, base, normal, tangent, uv, np.full(n, f.brow_thickness, np.float32), coverage, 0.1,
                      labels, f.brow_colour, triangles, MATERIAL["hair"])


def build_face_hair(model, f: FaceHairParams, rotation, vertices, normals) -> PropMesh | None:
    return combine([build_lashes(model, f, vertices) if f.lashes else None,
                    build_brows(model, f, rotation, vertices, normals) if f.brows else None])
