"""Fine surface detail: what a face's skin carries below the 3DMM's resolution, as a displacement.

Representation (Richardson et al.'s and Guo et al.'s fine layer): a displacement map in the model's
UV space, in millimetres along the coarse surface's unit normal, positive outwards, at
``[sampling.detail] resolution`` texels per UV tile, in two parts:

- static, per identity: pores and criss-cross fine lines (a tiling 3D noise read at the mean
  face's position, so it is continuous across UV seams and its scale is in mm), each crease's
  resting depth (grows with age), and a fitted photo's own detail where there is one;
- expression-driven: each crease of ``CREASES`` deepens with the blendshapes that drive it.

A sample's map is ``sum_k crease_weight[k] * template[k](uv) + pores + lines + photo``, masked to
the skin (``detail_bank.DetailBank``: the templates, the mask and the noise are built once per
model and worker). ``DetailParams`` (``params/detail``) and the expression rebuild it
(``detail_bank.displacement_map``). The renderer reads the same terms on the GPU (face.frag), so
the shading, ``depth_fine`` and ``normal_fine`` come from the one displaced surface.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NONE, PROCEDURAL, PHOTO = 0, 1, 2  # DetailParams.source
NOISE_VOXELS = 128  # the bank's tiling noise volume (detail_bank.tiling_noise), voxels a side
NOISE_FEATURE_VOXELS = 2.5  # the pores' spacing in voxels: frequency (voxels / mm) = this / pore_size_mm


@dataclass(frozen=True)
class Crease:
    """One crease template of the bank: its drivers (blendshape: gain; activation = min(1, sum
    gain * weight)), its depth in mm at strength 1 (resting at age 1, and added when fully driven),
    and the width (mm, the valley's Gaussian sigma) its lines are drawn with."""

    name: str
    drivers: dict
    resting_mm: float
    driven_mm: float
    width_mm: float


# Which blendshape drives which crease (ICT-FaceKit / ARKit names; _L = the subject's left, +x).
# Models without named blendshapes (PCA expressions, as the SFM's) get the resting depth only.
CREASES = (
    Crease("forehead", {"browInnerUp_L": 0.5, "browInnerUp_R": 0.5, "browOuterUp_L": 0.35, "browOuterUp_R": 0.35},
           0.25, 0.45, 0.8),
    Crease("glabella", {"browDown_L": 0.5, "browDown_R": 0.5, "noseSneer_L": 0.2, "noseSneer_R": 0.2}, 0.2, 0.5, 0.6),
    Crease("crows_feet_left", {"eyeSquint_L": 1.0, "cheekSquint_L": 0.6, "mouthSmile_L": 0.5}, 0.12, 0.35, 0.45),
    Crease("crows_feet_right", {"eyeSquint_R": 1.0, "cheekSquint_R": 0.6, "mouthSmile_R": 0.5}, 0.12, 0.35, 0.45),
    Crease("nasolabial_left", {"mouthSmile_L": 1.0, "cheekSquint_L": 0.4, "mouthUpperUp_L": 0.5, "noseSneer_L": 0.4},
           0.5, 0.9, 2.0),
    Crease("nasolabial_right", {"mouthSmile_R": 1.0, "cheekSquint_R": 0.4, "mouthUpperUp_R": 0.5, "noseSneer_R": 0.4},
           0.5, 0.9, 2.0),
    Crease("bunny_left", {"noseSneer_L": 1.0}, 0.03, 0.35, 0.5),
    Crease("bunny_right", {"noseSneer_R": 1.0}, 0.03, 0.35, 0.5),
    Crease("chin", {"mouthShrugLower": 1.0, "mouthPress_L": 0.3, "mouthPress_R": 0.3}, 0.05, 0.35, 1.2),
    Crease("neck", {"mouthStretch_L": 0.5, "mouthStretch_R": 0.5, "mouthFrown_L": 0.3, "mouthFrown_R": 0.3},
           0.3, 0.3, 1.0),
)
CREASE_NAMES = tuple(c.name for c in CREASES)


@dataclass(frozen=True)
class DetailParams:
    """One face's detail (``params/detail``, in ``data.fields.DETAIL_NAMES`` order); with its expression, it rebuilds the map."""

    source: int = NONE
    photo: int = -1
    strength: float = 1.0
    procedural_weight: float = 1.0
    photo_weight: float = 0.0
    age: float = 0.0
    pore_size_mm: float = 0.35
    pore_depth_mm: float = 0.0
    line_depth_mm: float = 0.0
    noise_origin: tuple = (0.0, 0.0, 0.0)  # voxels: where the identity's pores lie in the noise
    expression_creases: bool = True  # creases deepen with the expression; else only their resting depth

    def as_array(self) -> np.ndarray:
        return np.array([self.source, self.photo, self.strength, self.procedural_weight, self.photo_weight, self.age,
                         self.pore_size_mm, self.pore_depth_mm, self.line_depth_mm, *self.noise_origin,
                         self.expression_creases], np.float32)

    @classmethod
    def from_array(cls, values) -> DetailParams:
        """The params of a shard's ``params/detail`` row."""
        v = [float(x) for x in values]
        return cls(int(v[0]), int(v[1]), *v[2:9], noise_origin=tuple(v[9:12]), expression_creases=bool(v[12]))


NO_DETAIL = DetailParams()
OWN_PHOTO_DETAIL = DetailParams(source=PHOTO, photo=0, procedural_weight=0.0, photo_weight=1.0)  # a fit, as fitted


def sample_detail(rng, prior, photo: int = -1, num_photos: int = 0, num_donors: int = 0) -> DetailParams:
    """A face's detail from ``[sampling.detail]`` (``prior``): procedural, plus the detail of the
    face's own fitted ``photo`` (an index over the job's photos, ``num_photos`` of them) or, for a
    ``donor_probability`` share of the others, a donor's (index ``num_photos`` + k over the donor
    libraries' ``num_donors`` photos). Every value is drawn whether used or not, so a change of a
    probability leaves the other draws alone."""
    on = rng.uniform() < prior.probability
    f32 = lambda x: float(np.float32(x))  # noqa: E731 (as params/detail stores them: a shard's row rebuilds them exactly)
    strength, age = f32(rng.uniform(*prior.strength)), f32(rng.uniform(*prior.age))
    pore_size, pore_depth, line_depth = (f32(rng.uniform(*r)) for r in (prior.pore_size_mm, prior.pore_depth_mm,
                                                                        prior.line_depth_mm))
    origin = tuple(f32(x) for x in rng.uniform(0, NOISE_VOXELS, 3))
    donor = rng.uniform() < prior.donor_probability
    donor_index = int(rng.integers(max(num_donors, 1)))
    if not on:
        return NO_DETAIL
    if photo < 0 and donor and num_donors:
        photo = num_photos + donor_index
    return DetailParams(source=PHOTO if photo >= 0 else PROCEDURAL, photo=photo, strength=strength,
                        procedural_weight=1.0, photo_weight=f32(prior.photo_strength) if photo >= 0 else 0.0,
                        age=age, pore_size_mm=pore_size, pore_depth_mm=pore_depth, line_depth_mm=line_depth,
                        noise_origin=origin, expression_creases=bool(prior.expression_creases))


def crease_activations(expression_names: tuple, expression: np.ndarray) -> np.ndarray:
    """(len(CREASES),) in [0, 1]: how much the expression drives each crease (0 for unnamed blendshapes)."""
    index = {name: i for i, name in enumerate(expression_names)}
    weights = np.asarray(expression, np.float64)
    return np.array([min(1.0, sum(gain * max(float(weights[index[n]]), 0.0) for n, gain in c.drivers.items()
                                  if n in index)) for c in CREASES])


@dataclass(frozen=True)
class SurfaceDetail:
    """A sample's detail as the renderer draws it (a scene's fine material): every term's weight in mm.

    crease_mm: (len(CREASES),) depth of each template; pore_mm: (4,) the noise channels' amplitudes
    (detail_bank.NOISE_CHANNELS); noise_frequency: voxels per mm; photo_map: a photo's static
    displacement (``detail_bank.DetailMap``) or None, at ``photo_mm`` (its strength, 1 = as fitted).
    """

    crease_mm: np.ndarray
    pore_mm: np.ndarray
    noise_frequency: float
    noise_origin: np.ndarray
    photo_map: object = None
    photo_mm: float = 0.0


def surface_detail(params: DetailParams, expression_names: tuple, expression: np.ndarray,
                   photo_map=None) -> SurfaceDetail | None:
    """The weights of ``params``' terms for a face with ``expression``; None without detail (or all of it zero)."""
    if params.source == NONE:
        return None
    procedural = params.strength * params.procedural_weight
    activation = (crease_activations(expression_names, expression) if params.expression_creases
                  else np.zeros(len(CREASES)))
    resting = np.array([c.resting_mm for c in CREASES]) * params.age ** 2
    driven = np.array([c.driven_mm for c in CREASES]) * (0.5 + 0.5 * params.age) * activation
    lines = params.line_depth_mm * (0.3 + params.age)
    # noise channels: fine pores (pits), coarse pores, lines along x, lines along y
    pore = np.array([params.pore_depth_mm, 0.5 * params.pore_depth_mm, lines, lines]) * procedural
    use_photo = photo_map is not None and params.photo_weight > 0
    crease = (resting + driven) * procedural
    if not (use_photo or crease.any() or pore.any()):  # zero detail: drawn as none, fine = coarse exactly
        return None
    return SurfaceDetail(crease_mm=crease.astype(np.float32), pore_mm=pore.astype(np.float32),
                         noise_frequency=NOISE_FEATURE_VOXELS / params.pore_size_mm,
                         noise_origin=np.asarray(params.noise_origin, np.float32),
                         photo_map=photo_map if use_photo else None,
                         photo_mm=params.strength * params.photo_weight if use_photo else 0.0)
