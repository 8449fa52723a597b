"""What every face's fine detail is made of, built once per model, resolution and worker (``detail_bank``).

- ``reference``: where each texel of the UV layout lies on the neutral mean face (mm, filled
  beyond the layout so that mip levels stay on the face), and the skin mask: 1 on skin, falling
  to 0 within ``MASK_FALLOFF_MM`` of the eyes, the mouth's inside and the teeth, 0 elsewhere;
- ``creases``: one unit-depth template per ``detail.CREASES`` entry. Lines are placed on the mean
  face from its 68 landmarks (forehead lines above the brows, glabellar lines between them, crow's
  feet fanning from the outer eye corners, nasolabial folds from the nose wings around the mouth
  corners, bunny lines on the nose's sides, neck lines below the chin; the chin's dimpling is a
  patch of pits), then drawn in 3D: the profile across a line is a valley with shoulders,
  2 (-g(r, w) + g(r, 2w) / 2), g(r, s) = exp(-r^2 / 2 s^2), whose mean across the line is zero (a
  crease moves skin, it does not remove it) and whose depth is 1 at the line's middle, tapering
  to 0 at its ends;
- ``noise``: a tiling volume of ``NOISE_VOXELS``^3 read at the mean face's position (so pores
  keep their size in mm, and no UV seam shows): pits (fine pores), coarser pores, and fine lines
  stretched along x and along y, which cross on the skin as its micro-relief does.

``displacement_map`` composes a sample's map from these (numpy; face.frag does the same per pixel).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter, map_coordinates
from scipy.spatial import cKDTree

from .detail import CREASES, NOISE_VOXELS, SurfaceDetail
from .face_parts import MATERIAL
from .uv_layout import push_pull_fill, rasterise_mean_face

NOISE_CHANNELS = ("pores", "coarse_pores", "lines_x", "lines_y")
MASK_FALLOFF_MM = 3.0
SNAP_MM = 1.5  # a line's point with no skin within this (in the front view) is left out


@dataclass(frozen=True, eq=False)
class DetailBank:
    """reference: (S, T*S, 4) float32 mean-face position (mm) and skin mask; creases: (S, T*S,
    len(CREASES)) float32 templates; noise: (N, N, N, 4) uint8, [z, y, x], value / 255 - 0.5."""

    reference: np.ndarray
    creases: np.ndarray
    noise: np.ndarray
    tiles: int
    size: int

    @property
    def mask(self) -> np.ndarray:
        return self.reference[..., 3]


_BANKS: dict = {}


def detail_bank(renderer, size: int) -> DetailBank:
    """The bank of ``renderer``'s model at ``size`` texels per tile (built with its GL context, once per process)."""
    key = (renderer.model, size)
    if key not in _BANKS:
        if len(_BANKS) >= 2:
            _BANKS.pop(next(iter(_BANKS)))
        _BANKS[key] = build_bank(renderer, size)
    return _BANKS[key]


def build_bank(renderer, size: int) -> DetailBank:
    model = renderer.model
    surface = rasterise_mean_face(renderer, size)
    skin = surface.covered & (surface.material == MATERIAL["skin"])
    mask = _skin_mask(renderer, surface, skin)
    position = push_pull_fill(surface.position, surface.covered)
    landmarks = model.mean[model.landmark_ids].astype(np.float64)
    noise = tiling_noise()
    creases = np.zeros(skin.shape + (len(CREASES),), np.float32)
    points = np.flatnonzero(skin)
    xyz = surface.position.reshape(-1, 3)[points]
    front = _FrontView(xyz, surface.normal.reshape(-1, 3)[points])
    for k, crease in enumerate(CREASES):
        values = creases[..., k].reshape(-1)
        if crease.name == "chin":
            values[points] = _chin_pits(xyz, landmarks, noise)
        else:
            lines = [front.snap(line) for line in crease_lines(crease.name, landmarks)]
            values[points] = _draw_lines([line for line in lines if len(line) > 1], xyz, crease.width_mm)
    return DetailBank(reference=np.concatenate([position, mask[..., None]], -1).astype(np.float32), creases=creases,
                      noise=noise, tiles=surface.tiles, size=size)


def _skin_mask(renderer, surface, skin) -> np.ndarray:
    """1 on skin, 0 within reach of the eyes, the mouth's inside and the teeth (3D distance to their vertices)."""
    material = renderer.topology.attributes["material"]
    other = renderer.topology.render_to_model[np.isin(material, [MATERIAL[m] for m in ("mouth_interior", "teeth",
                                                                                       "eye", "eye_socket")])]
    mask = np.zeros(skin.shape, np.float32)
    if not len(other):
        mask[skin] = 1.0
        return mask
    distance, _ = cKDTree(renderer.model.mean[other]).query(surface.position[skin])
    mask[skin] = np.clip(distance / MASK_FALLOFF_MM, 0, 1) ** 2
    return mask


@functools.lru_cache(maxsize=1)
def tiling_noise() -> np.ndarray:
    """(N, N, N, 4) uint8: the four ``NOISE_CHANNELS``, each zero-mean at 0.5 * 255 (fixed: part of the bank)."""
    rng = np.random.default_rng(20261202)
    n = NOISE_VOXELS

    def field(sigma):  # band-pass: fine minus coarse, unit std; sigma in (z, y, x) voxels
        white = rng.standard_normal((n, n, n)).astype(np.float32)
        fine = gaussian_filter(white, sigma, mode="wrap")
        band = fine - gaussian_filter(fine, np.asarray(sigma) * 3, mode="wrap")
        return band / band.std()

    pores = field(1.0)
    pits = -np.maximum(pores - 0.8, 0)  # pores are pits: only the field's peaks, sunk
    channels = [pits - pits.mean(), field(2.0), field((0.6, 0.6, 3.0)), field((0.6, 3.0, 0.6))]
    channels = [c / (4 * np.abs(c).std()) for c in channels]  # +-0.5 at about 4 std (clipped beyond)
    return (np.clip(np.stack(channels, -1) + 0.5, 0, 1) * 255 + 0.5).astype(np.uint8)


def sample_noise(noise: np.ndarray, position: np.ndarray, frequency: float, origin) -> np.ndarray:
    """(..., 4) the noise at model-space ``position`` (mm), trilinear and wrapped as GL samples it."""
    voxel = position.reshape(-1, 3) * frequency + np.asarray(origin) - 0.5  # GL: texel centres at +0.5
    coords = voxel[:, ::-1].T  # (z, y, x)
    values = [map_coordinates(noise[..., c].astype(np.float32), coords, order=1, mode="grid-wrap") / 255.0 - 0.5
              for c in range(noise.shape[-1])]
    return np.stack(values, -1).reshape(position.shape[:-1] + (noise.shape[-1],))


def displacement_map(bank: DetailBank, detail: SurfaceDetail | None) -> np.ndarray:
    """(S, T*S) float32 mm along the normal: a sample's detail map, the terms face.frag sums per pixel."""
    if detail is None:
        return np.zeros(bank.mask.shape, np.float32)
    d = bank.creases @ detail.crease_mm
    d += sample_noise(bank.noise, bank.reference[..., :3], detail.noise_frequency, detail.noise_origin) @ detail.pore_mm
    if detail.photo_map is not None:
        d += detail.photo_mm * detail.photo_map.resized(bank.size)
    return (d * bank.mask).astype(np.float32)


# --- the creases' lines on the mean face (x right = the subject's left, y up, z forward; mm)


def crease_lines(name: str, lm: np.ndarray) -> list[np.ndarray]:
    """The lines of crease ``name`` as (P, 3) arrays of (x, y, relative depth), front view."""
    span = float(np.linalg.norm(lm[45, :2] - lm[36, :2]))  # outer eye corner to outer eye corner
    t = np.linspace(0, 1, max(16, int(span * 4)))
    side = 1.0 if name.endswith("left") else -1.0
    if name == "forehead":
        brows = lm[17:27][np.argsort(lm[17:27, 0])]
        lines = []
        for k, (height, depth) in enumerate(((0.17, 0.8), (0.28, 1.0), (0.39, 0.7))):
            x = (t - 0.5) * 0.85 * span * (1 - 0.12 * k)
            brow_y = np.interp(x, brows[:, 0], brows[:, 1])
            y = 0.5 * (brow_y + brows[:, 1].mean()) + height * span + 0.012 * span * np.sin(6 * x / span + k)
            lines.append(_line(x, y, depth))
        return lines
    if name == "glabella":
        inner_brows = lm[[21, 22], 1].mean()
        top, bottom = inner_brows + 0.12 * span, inner_brows - 0.08 * span
        y = bottom + t * (top - bottom)
        lines = [_line(s * (0.03 + 0.02 * t) * span, y, 1.0) for s in (-1, 1)]
        lines.append(_line((t - 0.5) * 0.12 * span, np.full_like(t, lm[27, 1] + 0.015 * span), 0.6))  # procerus
        return lines
    if name.startswith("crows_feet"):
        corner = lm[45] if side > 0 else lm[36]
        r = (0.07 + 0.13 * t) * span
        return [_line(corner[0] + side * r * np.cos(a), corner[1] + r * np.sin(a), depth)
                for a, depth in ((np.radians(25), 0.8), (np.radians(-2), 1.0), (np.radians(-28), 0.9))]
    if name.startswith("nasolabial"):
        ala, corner = (lm[35], lm[54]) if side > 0 else (lm[31], lm[48])
        p0 = ala[:2] + (side * 0.045 * span, 0.02 * span)
        p1 = corner[:2] + (side * 0.16 * span, 0.08 * span)
        p2 = corner[:2] + (side * 0.09 * span, -0.11 * span)
        curve = (1 - t)[:, None] ** 2 * p0 + 2 * ((1 - t) * t)[:, None] * p1 + (t ** 2)[:, None] * p2
        return [_line(curve[:, 0], curve[:, 1], 1.0)]
    if name.startswith("bunny"):  # oblique lines down the nose's side walls, below the nasion
        r = 0.11 * span * t
        return [_line(lm[28, 0] + side * (0.04 + 0.015 * k) * span + side * 0.55 * r,
                      lm[28, 1] + (0.03 - 0.03 * k) * span - 0.83 * r, 1.0 - 0.2 * k) for k in range(2)]
    if name == "neck":
        x = (t - 0.5) * 0.8 * span
        return [_line(x, lm[8, 1] - height * span + 0.05 * span * (x / (0.4 * span)) ** 2, depth)
                for height, depth in ((0.25, 1.0), (0.4, 0.8), (0.55, 0.6))]
    raise ValueError(f"no lines for crease {name!r}")


def _line(x, y, depth) -> np.ndarray:
    x, y = np.broadcast_arrays(np.asarray(x, np.float64), np.asarray(y, np.float64))
    return np.stack([x, y, np.full(x.shape, float(depth))], 1)


class _FrontView:
    """Puts front-view (x, y) points on the frontmost skin texel (facing the camera) there."""

    def __init__(self, xyz: np.ndarray, normal: np.ndarray):
        facing = normal[:, 2] > 0.15
        self.xyz = xyz[facing]
        self.tree = cKDTree(self.xyz[:, :2])

    def snap(self, line: np.ndarray) -> np.ndarray:
        """(P', 5) x, y, z, relative depth, position along the line in [0, 1], of the points on skin."""
        distance, nearest = self.tree.query(line[:, :2], k=8, distance_upper_bound=SNAP_MM)
        found = np.isfinite(distance)
        z = np.where(found, self.xyz[:, 2][np.minimum(nearest, len(self.xyz) - 1)], -np.inf).max(1)
        along = np.linspace(0, 1, len(line))
        keep = np.isfinite(z)
        return np.column_stack([line[keep, :2], z[keep], line[keep, 2], along[keep]])


def _draw_lines(lines: list[np.ndarray], xyz: np.ndarray, width: float) -> np.ndarray:
    """(P,) the templates' value at skin points ``xyz``: each point takes its nearest line point's profile."""
    values = np.zeros(len(xyz), np.float32)
    if not lines:
        return values
    # densify to a quarter of the width, so the nearest point is the foot of the perpendicular
    dense = []
    for line in lines:
        length = np.linalg.norm(np.diff(line[:, :3], axis=0), axis=1).sum()
        s = np.linspace(0, len(line) - 1, max(2, int(length / (0.25 * width)) + 1))
        dense.append(np.column_stack([np.interp(s, np.arange(len(line)), line[:, c]) for c in range(5)]))
    points = np.concatenate(dense)
    reach = 6 * width
    low, high = points[:, :3].min(0) - reach, points[:, :3].max(0) + reach
    near = np.flatnonzero(((xyz >= low) & (xyz <= high)).all(1))
    distance, nearest = cKDTree(points[:, :3]).query(xyz[near], distance_upper_bound=reach)
    hit = np.isfinite(distance)
    r, p = distance[hit] / width, points[nearest[hit]]
    end = np.clip(np.minimum(p[:, 4], 1 - p[:, 4]) / 0.2, 0, 1)  # 0 at a line's ends, 1 from a fifth in
    taper = end * end * (3 - 2 * end)
    profile = 2 * (-np.exp(-r ** 2 / 2) + 0.5 * np.exp(-r ** 2 / 8))
    values[near[hit]] = profile * p[:, 3] * taper
    return values


def _chin_pits(xyz: np.ndarray, lm: np.ndarray, noise: np.ndarray) -> np.ndarray:
    """The chin's dimpling (peau d'orange of the mentalis): pits of ~2.5 mm in an ellipse over the chin."""
    span = float(np.linalg.norm(lm[45, :2] - lm[36, :2]))
    centre = np.array([0.0, 0.5 * (lm[57, 1] + lm[8, 1])])
    radius = np.array([0.17, 0.09]) * span
    r2 = (((xyz[:, :2] - centre) / radius) ** 2).sum(1)
    falloff = np.clip(1 - r2, 0, 1) ** 2
    coarse = sample_noise(noise, xyz, 5.0 / 2.5, (17.0, 41.0, 73.0))[:, 1]
    pits = -np.maximum(coarse, 0) / 0.5
    return (pits * falloff).astype(np.float32)
