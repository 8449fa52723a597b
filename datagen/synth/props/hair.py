"""Procedural hair: shells over the scalp along a sampled hairstyle (fur-shell rendering, Lengyel et
al. 2001). ``SHELLS`` copies of the scalp are offset along the skin's normals by ``level`` times
the style's thickness there; the shader keeps a shell's fragment where a strand pattern is denser
than the shell's level, so strands thin out towards their tips, and it lights them with the
Kajiya-Kay model along the strand direction (``PropMesh.tangents``).

A hairstyle is a height field over the head: a hairline height for each direction around the head
(front, temples, sideburns, above the ears, nape) below which the scalp is bare, a thickness, a
fringe that lowers the front hairline over the forehead, a parting from which the strands run
down, and a colour. Heights are in head units, so a style fits any head: 0 is the brows' height
on the model's mean shape and 1 the top of the head; negative values lie below the brows.

Needs a model with a scalp (ICT-FaceKit's ``head_neck`` region); ``scalp`` says why not otherwise.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from ...camera import rotation_matrix
from ...data.fields import LABELS
from ...errors import DatagenError
from ...models.morphable_model import MorphableModel
from . import PropMesh

SHELLS = 8
BASE_OFFSET_MM = 0.6  # the innermost shell above the skin: no depth fighting with the scalp
HAIRLINE_RAMP_MM = 6.0  # coverage rises from 0 to 1 over this height above the hairline
# |azimuth| knots (degrees; 0 = the face's front, 180 = the back) of the hairline's height field
AZIMUTH_KNOTS = (0.0, 35.0, 65.0, 85.0, 100.0, 125.0, 180.0)
# The colours hair comes in (linear-RGB albedo; the reflectances of Marschner et al. 2003 and of
# hair-colour charts, rounded), in HairPrior.colour_weights order.
HAIR_COLOURS = {
    "black": (0.02, 0.018, 0.016), "dark brown": (0.06, 0.04, 0.025), "brown": (0.12, 0.075, 0.045),
    "light brown": (0.25, 0.17, 0.1), "blond": (0.45, 0.35, 0.2), "red": (0.3, 0.1, 0.04),
    "grey": (0.3, 0.3, 0.3), "white": (0.6, 0.6, 0.58),
}
# (hairline heights in head units: sideburn, above the ear, nape), thickness mm, how much thicker hair
# grows as it hangs below the eyes; per length class
LENGTHS = {
    "short": {"sideburn": (-0.6, -0.3), "ear": (-0.1, 0.15), "nape": (-1.3, -0.9), "thickness": (3.0, 10.0), "hang": 0.0},
    "medium": {"sideburn": (-0.9, -0.5), "ear": (-1.0, -0.5), "nape": (-2.0, -1.4), "thickness": (10.0, 22.0), "hang": 0.3},
    "long": {"sideburn": (-2.2, -1.4), "ear": None, "nape": (-2.7, -2.1), "thickness": (14.0, 30.0), "hang": 0.8},
}
_NOT_SCALP = ("nose", "eye_right", "eye_left", "upper_lip", "lower_lip", "mouth_interior", "teeth")


@dataclass(frozen=True)
class HairParams:
    """One hairstyle (see the module docstring for the units)."""

    hairline: np.ndarray  # (7,) heights at AZIMUTH_KNOTS, head units
    thickness: float  # mm
    hang: float  # relative thickening per head unit below the eyes
    parting: float  # the parting's sideways lean (0 = centre; +-0.15..0.35 = a side parting)
    colour: np.ndarray  # (3,) linear RGB
    specular: float


def sample_hair(rng, prior) -> HairParams | None:
    """A hairstyle from ``[sampling.hair]``; None (bald) for 1 - ``probability`` of the faces."""
    if not prior.probability or rng.uniform() >= prior.probability:
        return None
    length = LENGTHS[tuple(LENGTHS)[_pick(rng, prior.length_weights)]]
    receding = rng.uniform() < prior.receding_probability
    front = rng.uniform(0.7, 0.9) if receding else rng.uniform(0.35, 0.65)
    temple = front - rng.uniform(0.1, 0.25) - (0.15 if receding else 0.0)
    sideburn = rng.uniform(*length["sideburn"])
    ear = rng.uniform(*length["ear"]) if length["ear"] else sideburn
    nape = rng.uniform(*length["nape"])
    if rng.uniform() < prior.fringe_probability:
        front = rng.uniform(0.05, 0.3)
        temple = min(temple, front + rng.uniform(0.05, 0.3))
    hairline = np.array([front, front, temple, sideburn, ear, nape, nape], np.float32)
    colour = np.asarray(tuple(HAIR_COLOURS.values())[_pick(rng, prior.colour_weights)], np.float32)
    return HairParams(hairline=hairline, thickness=float(rng.uniform(*length["thickness"])), hang=length["hang"],
                      parting=float(rng.choice([0.0, -1.0, 1.0]) * rng.uniform(0.15, 0.35)),
                      colour=(colour * np.exp(rng.normal(0, 0.15))).astype(np.float32),
                      specular=float(rng.uniform(0.1, 0.4)))


def _pick(rng, weights) -> int:
    p = np.asarray(weights, float)
    return int(rng.choice(len(p), p=p / p.sum()))


@dataclass(frozen=True, eq=False)
class Scalp:
    """Where hair may grow on a model, from its mean shape (computed once per model).

    ids: (S,) model-vertex ids; triangles: (T, 3) drawn triangles among them, in positions of ``ids``;
    azimuth: (S,) degrees around the head's vertical axis (0 = front); height: (S,) head units;
    direction: (S, 3) unit vectors from the head's centre; unit_mm: a head unit in mm on the mean shape.
    """

    ids: np.ndarray
    triangles: np.ndarray
    azimuth: np.ndarray
    height: np.ndarray
    direction: np.ndarray
    centre: np.ndarray
    unit_mm: float


@functools.lru_cache(maxsize=4)
def scalp(model: MorphableModel) -> Scalp:
    from ..face_parts import LABEL, face_parts

    if "head_neck" not in model.region_names:
        raise DatagenError(f"hair and clothing need a model with a head and neck; '{model.name}' has a face only "
                           f"(use ict-facekit, or set [sampling.hair] and [sampling.clothing] probability = 0)")
    parts = face_parts(model)
    mean, lm = model.mean, model.mean[model.landmark_ids]
    brow, top = float(lm[17:27, 1].mean()), float(mean[model.region_vertices("head_neck"), 1].max())
    head_units = (mean[:, 1] - brow) / (top - brow)
    candidate = (model.region_vertices("face", "head_neck") & ~np.isin(parts.labels, [LABEL[n] for n in _NOT_SCALP])
                 & (head_units > LENGTHS["long"]["nape"][0] - 0.1))
    ids = np.flatnonzero(candidate)
    local = np.full(model.num_vertices, -1)
    local[ids] = np.arange(len(ids))
    drawn = model.triangles[parts.drawn_triangles]
    triangles = local[drawn[(local[drawn] >= 0).all(1)]]
    cranium = mean[ids][head_units[ids] > 0.3]
    centre = _sphere_centre(cranium)
    offset = mean[ids] - centre
    return Scalp(ids=ids, triangles=triangles.astype(np.int32),
                 azimuth=np.degrees(np.arctan2(offset[:, 0], offset[:, 2])), height=head_units[ids],
                 direction=offset / np.linalg.norm(offset, axis=1, keepdims=True), centre=centre,
                 unit_mm=top - brow)


def _sphere_centre(points: np.ndarray) -> np.ndarray:
    """Least-squares sphere through points: |p|^2 = 2 p.c + (r^2 - |c|^2), linear in c."""
    a = np.c_[2 * points, np.ones(len(points))]
    solution, *_ = np.linalg.lstsq(a, (points ** 2).sum(1), rcond=None)
    return solution[:3]


def build_hair(model: MorphableModel, hair: HairParams, rotation, vertices: np.ndarray, normals: np.ndarray) -> PropMesh | None:
    """Shells of ``hair`` over the posed face (``vertices``, ``normals``: (V, 3) camera space)."""
    from ..face_parts import MATERIAL

    s = scalp(model)
    hairline = np.interp(np.abs(s.azimuth), AZIMUTH_KNOTS, hair.hairline)
    above = (s.height - hairline) * s.unit_mm  # mm above the hairline
    coverage = np.clip(above / HAIRLINE_RAMP_MM, 0, 1)
    keep = np.flatnonzero(coverage[s.triangles].max(1) > 0)
    if not len(keep):
        return None
    used, triangles = np.unique(s.triangles[keep], return_inverse=True)
    triangles = triangles.reshape(-1, 3)
    thickness = hair.thickness * np.clip(0.4 + above[used] / 25.0, 0, 1)
    eye_units = -0.3
    thickness *= 1 + hair.hang * np.clip(eye_units - s.height[used], 0, None)
    base, normal = vertices[s.ids[used]], normals[s.ids[used]]
    uv, tangent = _strands(s, used, hair.parting)
    r = rotation_matrix(rotation)
    tangent = tangent @ r.T
    tangent -= normal * (tangent * normal).sum(1, keepdims=True)
    tangent /= np.maximum(np.linalg.norm(tangent, axis=1, keepdims=True), 1e-9)
    uv, triangles, extra = _unwrap_seam(uv, triangles)
    base, normal, tangent, cover, thickness = (a[extra] for a in (base, normal, tangent, coverage[used], thickness))
    n = len(base)
    return shell_mesh(SHELLS, BASE_OFFSET_MM, base, normal, tangent, uv, thickness, cover, hair.specular,
                      np.full(n, LABELS.index("hair")), hair.colour, triangles, MATERIAL["hair"])


def shell_mesh(shells: int, offset: float, base, normal, tangent, uv, thickness, coverage, specular, labels, colour,
               triangles, material) -> PropMesh:
    """``shells`` copies of a surface (per vertex: base, normal, tangent, uv, thickness mm, coverage,
    label), the k-th ``offset + k / (shells - 1) * thickness`` above it along the normals; the shader
    reads each copy's level and coverage from the weights (``hair_kept``)."""
    n = len(base)
    levels = np.linspace(0, 1, shells, dtype=np.float32)
    positions = base[None] + normal[None] * (offset + levels[:, None, None] * thickness[None, :, None])
    weights = np.zeros((shells, n, 4), np.float32)
    weights[..., 0] = levels[:, None]
    weights[..., 1] = coverage[None]
    weights[..., 2] = specular
    tile = lambda a: np.broadcast_to(a, (shells, *np.shape(a))).reshape(shells * n, -1)  # noqa: E731
    return PropMesh(positions=positions.reshape(-1, 3).astype(np.float32), normals=tile(normal).astype(np.float32),
                    tangents=tile(tangent).astype(np.float32),
                    colour=np.broadcast_to(colour, (shells * n, 3)).astype(np.float32),
                    uv=tile(uv).astype(np.float32), label=tile(labels).reshape(-1).astype(np.float32),
                    material=np.full(shells * n, material, np.float32), weights=weights.reshape(-1, 4),
                    triangles=(triangles[None] + (np.arange(shells) * n)[:, None, None]).reshape(-1, 3).astype(np.int32))


STRAND_LENGTH = 0.05  # texture periods per radian along the strands: the pattern's streaks are ~20 mm long
STRAND_PERIODS = 2  # texture periods around the parting's axis (an integer: the pattern closes up)


def _strands(s: Scalp, used: np.ndarray, parting: float) -> tuple[np.ndarray, np.ndarray]:
    """(uv, model-space tangent) of strands that run down from the parting: u along them (the
    angle from the parting's axis), v around that axis."""
    pole = np.array([parting, 1.0, 0.35])
    pole /= np.linalg.norm(pole)
    e1 = np.cross([0.0, 0.0, 1.0], pole)  # v = 0 / 1 (the seam) lies behind the head
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(pole, e1)
    d = s.direction[used]
    cos_polar = np.clip(d @ pole, -1, 1)
    polar = np.arccos(cos_polar)
    around = np.arctan2(d @ e1, d @ e2)  # 0 at the front, +-pi behind
    tangent = (d * cos_polar[:, None] - pole) / np.maximum(np.sin(polar), 1e-6)[:, None]
    return np.stack([polar * STRAND_LENGTH, (around / (2 * np.pi) + 0.5) * STRAND_PERIODS], 1), tangent


def _unwrap_seam(uv: np.ndarray, triangles: np.ndarray):
    """Triangles across the pattern's seam (v wraps from STRAND_PERIODS to 0) get their own copies
    of the vertices below it, shifted by a period, so that no triangle spans the whole pattern.
    Returns (uv, triangles, the source vertex of each vertex)."""
    v = uv[triangles, 1]
    seam = np.flatnonzero(v.max(1) - v.min(1) > STRAND_PERIODS / 2)
    source = np.arange(len(uv))
    if not len(seam):
        return uv, triangles, source
    low = triangles[seam][v[seam] < STRAND_PERIODS / 2]
    copies, index = np.unique(low, return_inverse=True)
    shifted = uv[copies] + [0.0, STRAND_PERIODS]
    triangles = triangles.copy()
    rows = np.nonzero(v[seam] < STRAND_PERIODS / 2)
    triangles[seam[rows[0]], rows[1]] = len(uv) + index
    return np.concatenate([uv, shifted]), triangles, np.concatenate([source, copies])
