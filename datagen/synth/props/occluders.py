"""Things in front of the face: glasses (frames, and the dark lenses of sunglasses) fitted to the
sample's own eyes, nose bridge and head width; and a hand held over the chin, the mouth or a
cheek, always in front of the skin it covers (it never passes through the face).

Clear lenses are left out: they refract and reflect, and a frame alone is what a landmark
detector trained on photos sees through.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...camera import rotation_matrix
from ...data.fields import APPEARANCE_NAMES, LABELS
from ...models.morphable_model import MorphableModel
from . import PropMesh, combine, prop_mesh, vertex_normals
from .shapes import capsule, ellipsoid, merge, tube

FRAME_COLOURS = ((0.01, 0.01, 0.01), (0.05, 0.025, 0.012), (0.25, 0.22, 0.18), (0.5, 0.45, 0.35), (0.12, 0.02, 0.02))
HAND_PLACES = (8, 57, 3, 13)  # landmarks a hand covers: chin, lower lip, right cheek, left cheek
RIM_POINTS = 28


@dataclass(frozen=True)
class GlassesParams:
    size: float  # rim half width / eye width
    aspect: float  # rim height / width
    distance: float  # mm in front of the eyes' corners
    radius: float  # frame thickness, mm
    colour: np.ndarray
    sunglasses: bool


@dataclass(frozen=True)
class HandParams:
    place: int  # landmark id (HAND_PLACES)
    angle: float  # the fingers' direction in the image plane, radians from up (towards the image's right)
    shift: np.ndarray  # (2,) mm across and along the fingers, in the plane facing the camera
    gap: float  # mm between the hand and the nearest skin it covers
    scale: float
    thumb_side: float  # +1 or -1


def sample_glasses(rng, prior) -> GlassesParams | None:
    glasses = None
    if prior.glasses_probability and rng.uniform() < prior.glasses_probability:
        glasses = GlassesParams(size=float(rng.uniform(0.72, 0.9)), aspect=float(rng.uniform(0.55, 0.85)),
                                distance=float(rng.uniform(10, 16)), radius=float(rng.uniform(1.0, 2.4)),
                                colour=np.asarray(FRAME_COLOURS[int(rng.integers(len(FRAME_COLOURS)))], np.float32),
                                sunglasses=bool(rng.uniform() < prior.sunglasses_fraction))
    return glasses


def sample_hand(rng, prior) -> HandParams | None:
    hand = None
    if prior.hand_probability and rng.uniform() < prior.hand_probability:
        place = int(HAND_PLACES[int(rng.integers(len(HAND_PLACES)))])
        lean = {3: -0.5, 13: 0.5}.get(place, 0.0)
        hand = HandParams(place=place, angle=float(lean + rng.normal(0, 0.35)),
                          shift=rng.normal(0, [8.0, 12.0]).astype(np.float32), gap=float(rng.uniform(2, 15)),
                          scale=float(rng.uniform(0.85, 1.1)), thumb_side=float(rng.choice([-1.0, 1.0])))
    return hand


def _model_frame(model: MorphableModel, rotation, translation, vertices: np.ndarray):
    """(the posed vertices back in the model's frame, a function taking such points to camera space)."""
    r = rotation_matrix(rotation)
    local = (vertices - translation) @ r + model.pivot
    return local, lambda points: (np.asarray(points) - model.pivot) @ r.T + translation


def build_glasses(model: MorphableModel, g: GlassesParams, rotation, translation, vertices: np.ndarray) -> PropMesh:
    from ..face_parts import MATERIAL

    local, to_camera = _model_frame(model, rotation, translation, vertices)
    lm = local[model.landmark_ids]
    parts, rims = [], []
    for outer, inner in ((36, 39), (45, 42)):  # the right eye, then the left (the subject's)
        eye = lm[min(outer, inner):max(outer, inner) + 3]
        half_width = g.size * np.linalg.norm(lm[outer] - lm[inner])
        half_height = g.aspect * half_width
        centre = np.array([eye[:, 0].mean(), eye[:, 1].mean() - 0.1 * half_height, eye[:, 2].max() + g.distance])
        t = np.linspace(0, 2 * np.pi, RIM_POINTS, endpoint=False)
        rim = centre + np.stack([half_width * _round(np.cos(t)), half_height * _round(np.sin(t)),
                                 -0.12 * half_width * np.abs(np.cos(t)) * (np.cos(t) * np.sign(lm[outer, 0]) > 0)], 1)
        rims.append(rim)
        parts.append(tube(rim, g.radius, closed=True))
        if g.sunglasses:  # a dark lens: a fan facing forward, just behind the frame's centre line
            parts.append((np.concatenate([[centre], rim - [0, 0, 0.3]]),
                          np.stack([np.zeros(RIM_POINTS, int), 1 + np.arange(RIM_POINTS), 1 + (np.arange(RIM_POINTS) + 1) % RIM_POINTS], 1)))
    inner_points = [rim[np.argmin(np.abs(rim[:, 0]))] for rim in rims]
    bridge_top = np.array([0.0, lm[27, 1] - 2.0, lm[27, 2] + 4.0])
    s = np.linspace(0, 1, 8)[:, None]
    parts.append(tube((1 - s) ** 2 * inner_points[0] + 2 * s * (1 - s) * bridge_top + s ** 2 * inner_points[1], g.radius))
    for rim, contour in zip(rims, (0, 16)):  # the temples run back past the face contour's top (by the ears)
        outer, ear = rim[np.argmax(np.abs(rim[:, 0]))], lm[contour]
        sign, side = np.sign(outer[0]), abs(ear[0]) + 6.0
        path = np.array([outer, [sign * side, outer[1], min(outer[2] - 12, ear[2] + 10)],
                         [sign * side, outer[1], ear[2] - 45], [sign * (side - 4), outer[1] - 20, ear[2] - 70]])
        parts.append(tube(path, g.radius))
    positions, triangles = merge(parts)
    positions = to_camera(positions)
    return prop_mesh(positions, vertex_normals(positions, triangles), triangles, LABELS.index("glasses"),
                     MATERIAL["glasses"], np.full(3, 0.015) if g.sunglasses else g.colour)


def _round(c: np.ndarray) -> np.ndarray:
    """A rounded rectangle's side: |c|^(2/3) keeps the sign (a superellipse of exponent 3)."""
    return np.sign(c) * np.abs(c) ** (2 / 3)


def build_hand(model: MorphableModel, h: HandParams, appearance: np.ndarray, vertices: np.ndarray) -> PropMesh:
    """A hand in the plane facing the camera at landmark ``h.place``, in front of the skin it covers."""
    from ..face_parts import MATERIAL
    from ..skin import base_albedo

    anchor = vertices[model.landmark_ids[h.place]].astype(np.float64)
    view = anchor / np.linalg.norm(anchor)  # from the camera through the anchor
    up = np.array([0.0, 1.0, 0.0]) - view * view[1]
    up /= np.linalg.norm(up)
    right = np.cross(view, up)  # the image's right, seen from the camera
    fingers = np.cos(h.angle) * up + np.sin(h.angle) * right
    across = np.cross(fingers, view)
    s = h.scale
    palm = anchor + across * h.shift[0] + fingers * (h.shift[1] - 40 * s)
    offset = vertices - palm
    along, side = offset @ fingers, offset @ across
    covered = (np.abs(side) < 95 * s) & (along > -60 * s) & (along < 135 * s)  # palm, fingers and thumb
    nearest = float(((palm - vertices[covered]) @ view).max()) if covered.any() else 0.0
    palm = palm - view * (max(nearest, 0.0) + h.gap + 16 * s)  # towards the camera, clear of the skin
    parts = [ellipsoid(palm, np.stack([across * 42 * s, fingers * 50 * s, view * 15 * s]))]
    for k, (shift, length) in enumerate(zip((-27, -9, 9, 27), (62, 74, 78, 70))):
        direction = fingers + across * 0.06 * (k - 1.5)
        base = palm + fingers * 40 * s + across * shift * s * h.thumb_side
        parts.append(capsule(base, base + direction * length * s, 8.5 * s))
    thumb = palm + across * h.thumb_side * -36 * s - fingers * 8 * s
    parts.append(capsule(thumb, thumb + (across * h.thumb_side * -0.75 + fingers * 0.66) * 55 * s, 10 * s))
    positions, triangles = merge(parts)
    names = list(APPEARANCE_NAMES)
    colour = base_albedo(appearance[names.index("melanin")], appearance[names.index("haemoglobin")])
    return prop_mesh(positions, vertex_normals(positions, triangles), triangles, LABELS.index("hand"),
                     MATERIAL["prop_skin"], colour, uv=positions[:, :2] / 40.0)


def build_occluders(model, p, vertices) -> PropMesh | None:
    parts = []
    if p.glasses is not None:
        parts.append(build_glasses(model, p.glasses, p.rotation, p.translation, vertices))
    if p.hand is not None:
        parts.append(build_hand(model, p.hand, p.appearance, vertices))
    return combine(parts)
