"""Shoulders and clothing below the neck: a torso of stacked super-elliptic rings that starts as a
collar around the sample's own neck and widens to the shoulders and chest.

The collar turns with the head; the rings below it turn less, down to the body's share
(``body_follow``) of the head's rotation at the shoulders, so that a face turned to the side sits
on shoulders turned less, as people stand. Heights are the head units of ``hair`` (0 = the brows,
1 = the top of the head, on the mean shape).
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass

import numpy as np

from ...camera import rotation_matrix
from ...data.fields import LABELS
from ...models.morphable_model import MorphableModel
from . import PropMesh, prop_mesh, vertex_normals
from .hair import scalp

RING_POINTS = 48
SHAPE_EXPONENT = 2.6  # of the cross-sections |x/a|^e + |z/b|^e = 1: between an ellipse and a box
# (drop below the collar mm, half width, half depth): a positive width is a multiple of the collar's, a
# negative one (minus) a multiple of the shoulders' half width; depths are multiples of the collar's
PROFILE = ((0.0, 1.0, 1.0), (12.0, 1.12, 1.1), (30.0, -0.62, 1.45), (55.0, -0.95, 1.7), (90.0, -1.0, 1.8),
           (320.0, -1.0, 1.8))
TURN_DROP_MM = 60.0  # below this the rings turn with the body only


@dataclass(frozen=True)
class ClothingParams:
    collar: float  # head units
    shoulder_half_width: float  # mm
    body_follow: float  # the share of the head's rotation the shoulders follow
    colour: np.ndarray  # (3,) linear RGB


def sample_clothing(rng, prior) -> ClothingParams | None:
    if not prior.probability or rng.uniform() >= prior.probability:
        return None
    if rng.uniform() < 0.6:  # neutrals: black to white, a slight tint
        colour = rng.uniform(0.02, 0.7) * np.exp(rng.normal(0, 0.08, 3))
    else:
        rgb = colorsys.hsv_to_rgb(rng.uniform(), rng.uniform(0.3, 0.9), rng.uniform(0.25, 0.75))
        colour = np.asarray(rgb) ** 2.2  # sRGB-ish to linear
    return ClothingParams(collar=float(rng.uniform(*prior.collar_height)),
                          shoulder_half_width=float(rng.uniform(*prior.shoulder_half_width_mm)),
                          body_follow=float(rng.uniform(*prior.body_follow)),
                          colour=np.clip(colour, 0, 1).astype(np.float32))


def build_clothing(model: MorphableModel, clothing: ClothingParams, rotation, translation,
                   vertices: np.ndarray) -> PropMesh:
    """The torso of ``clothing`` under the posed face (``vertices``: (V, 3) camera space)."""
    from ..face_parts import MATERIAL

    s = scalp(model)  # the head units, and a model with a neck
    head = rotation_matrix(rotation)
    local = (vertices - translation) @ head + model.pivot  # back to the model's frame, this identity's shape
    collar_y = float(model.mean[model.landmark_ids][17:27, 1].mean() + clothing.collar * s.unit_mm)
    neck = local[model.region_vertices("face", "head_neck") & (np.abs(local[:, 1] - collar_y) < 6.0)]
    centre = np.array([neck[:, 0].mean(), collar_y, neck[:, 2].mean()]) if len(neck) else np.array([0.0, collar_y, 0.0])
    reach = np.abs(neck[:, [0, 2]] - centre[[0, 2]]).max(0) + 3.0 if len(neck) else np.array([60.0, 60.0])
    angles = np.linspace(0, 2 * np.pi, RING_POINTS, endpoint=False)
    c, si = np.cos(angles), np.sin(angles)
    superellipse = lambda v: np.sign(v) * np.abs(v) ** (2 / SHAPE_EXPONENT)  # noqa: E731
    rings, uv = [], []
    for drop, width, depth in PROFILE:
        a = width * reach[0] if width > 0 else -width * clothing.shoulder_half_width
        b = depth * reach[1]
        ring = np.stack([centre[0] + a * superellipse(si), np.full_like(c, collar_y - drop), centre[2] + b * superellipse(c)], 1)
        follow = clothing.body_follow + (1 - clothing.body_follow) * max(0.0, 1 - drop / TURN_DROP_MM)
        turn = rotation_matrix(np.asarray(rotation) * follow)
        # turn about the collar's centre, then place the collar where the head put it
        rings.append((ring - centre) @ turn.T + (centre - model.pivot) @ head.T + translation)
        uv.append(np.stack([angles / (2 * np.pi) * 8, np.full_like(c, drop / 100)], 1))
    positions, uv = np.concatenate(rings), np.concatenate(uv)
    k = np.arange(RING_POINTS)
    quads = [(r * RING_POINTS + k, r * RING_POINTS + (k + 1) % RING_POINTS) for r in range(len(PROFILE) - 1)]
    triangles = np.concatenate([np.stack([a, a + RING_POINTS, b], 1) for a, b in quads] +
                               [np.stack([b, a + RING_POINTS, b + RING_POINTS], 1) for a, b in quads])
    normals = vertex_normals(positions, triangles)
    # the pattern's seam (u from 8 back to 0, down the front): the last column of quads gets copies of
    # the first column's vertices at u = 8, so no quad spans the whole pattern
    first = np.arange(len(PROFILE)) * RING_POINTS
    copies = len(positions) + np.arange(len(PROFILE))
    closing = np.isin(np.arange(len(triangles)) % (RING_POINTS * (len(PROFILE) - 1)) % RING_POINTS, RING_POINTS - 1)
    remap = np.arange(len(positions) + len(first))
    remap[first] = copies
    triangles[closing] = remap[triangles[closing]]
    positions, normals = np.concatenate([positions, positions[first]]), np.concatenate([normals, normals[first]])
    uv = np.concatenate([uv, uv[first] + [8.0, 0.0]])
    return prop_mesh(positions, normals, triangles, LABELS.index("clothing"), MATERIAL["cloth"], clothing.colour, uv=uv)
