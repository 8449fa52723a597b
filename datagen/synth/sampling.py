"""Draw one face's parameters from the job's priors.

Every draw flows from ``(job seed, sample index)`` only: each part of the face has its own
stream ``np.random.default_rng([seed, index, stream])``, so any sample can be regenerated
alone, and changing one prior (say, expression) leaves the other parts (identities, poses,
...) of every sample unchanged.

Conventions (see also camera.py):
- rotation = (yaw, pitch, roll) in radians, applied as R = Rz(roll) @ Rx(pitch) @ Ry(yaw).
  Positive yaw turns the face towards the image's right (the subject's left), positive pitch
  turns it down, positive roll turns it counter-clockwise in the image.
- translation: camera-space position (mm) of the model's pivot; the camera looks down -z, y up.
- intrinsics = (fx, fy, cx, cy) in pixels; pixel (0, 0) is the top-left pixel, its centre at (0.5, 0.5).
- light_sh: (9, 3) radiance SH coefficients per RGB channel in camera space, real SH basis
  ordered Y00, Y1-1 (y), Y10 (z), Y11 (x), Y2-2 (xy), Y2-1 (yz), Y20, Y21 (xz), Y22 (x²-y²).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from ..camera import SH_NORM, irradiance_basis, resize_intrinsics, rotation_matrix, sh_basis
from ..data.fields import APPEARANCE_NAMES
from ..models.morphable_model import MorphableModel
from ..spec import JobSpec, PosePrior, SamplingSpec
from .props.clothing import ClothingParams, sample_clothing
from .props.face_hair import FaceHairParams, sample_face_hair
from .props.hair import HairParams, sample_hair
from .props.occluders import GlassesParams, HandParams, sample_glasses, sample_hand
from .detail import NO_DETAIL, DetailParams, sample_detail
from .skin import balanced_melanin, iris_appearance

STREAMS = {"identity": 0, "expression": 1, "pose": 2, "camera": 3, "lighting": 4, "appearance": 5, "background": 6,
           "background_pattern": 7, "texture": 8, "photoreal": 9, "capture": 10, "capture_noise": 11,
           "hair": 12, "clothing": 13, "glasses": 14, "face_hair": 15, "hand": 16, "detail": 17,
           # a clip's processes (synth/motion.py), drawn per frame: frame_rng
           "head_motion": 18, "camera_motion": 19, "expression_motion": 20, "blink": 21, "gaze": 22, "light_motion": 23}
MADE_BACKGROUND, IMAGE_BACKGROUND = 0, 1  # params/background kinds: procedural; one of the job's background images
PHOTO_BACKGROUND = 2  # params/background kind: the fitted photo itself (photo-realistic jobs)



@dataclass(frozen=True)
class FaceParams:
    """One draw from the prior: everything needed to rebuild the sample (see the module docstring)."""

    sample_index: int
    identity: np.ndarray  # (K_id,) float32, standard normal
    expression: np.ndarray  # (K_ex,) float32, blendshape weights in [0, 1] (or standard normal for PCA)
    rotation: np.ndarray  # (3,) float32 yaw, pitch, roll in radians
    translation: np.ndarray  # (3,) float32 mm, camera space
    intrinsics: np.ndarray  # (4,) float32 fx, fy, cx, cy in pixels
    light_sh: np.ndarray  # (9, 3) float32
    appearance: np.ndarray  # (len(APPEARANCE_NAMES),) float32
    background: np.ndarray  # (2,) int64: kind (0 procedural, 1 image, 2 fitted photo), its index or -1
    albedo_source: int = -1  # index of the fitted photo whose albedo the skin uses; -1 = procedural
    capture: "CaptureParams | None" = None  # camera effects on the picture; None = as rendered
    hair: HairParams | None = None  # None = bald
    clothing: ClothingParams | None = None
    glasses: GlassesParams | None = None
    hand: HandParams | None = None
    face_hair: FaceHairParams | None = None  # eyelashes, brows with relief
    detail: DetailParams = NO_DETAIL  # fine surface detail (synth/detail.py)
    frame: int = 0  # the frame of its clip (video jobs); a still is frame 0


@dataclass(frozen=True)
class CaptureParams:
    """One picture's camera effects (CapturePrior; applied by synth/capture.py). Pixels of the output size."""

    background_sigma: float  # Gaussian defocus of the background; 0 = sharp
    lens_sigma: float  # Gaussian defocus of the whole picture
    motion_length: float  # straight motion-blur path, centred on each point; 0 = none
    motion_angle: float  # radians, from the image's x axis towards y (down)
    gains: np.ndarray  # (3,) linear-light gain per channel: white balance x exposure
    vignetting: float  # linear-light loss in the corners: gain 1 - v r^2, r = 1 at the corners
    read_noise: float  # 8-bit levels; 0 = no noise
    shot_noise_gain: float
    jpeg_quality: int  # 0 = not compressed


def sample_rng(seed: int, index: int, stream: str) -> np.random.Generator:
    return np.random.default_rng([seed, index, STREAMS[stream]])


def frame_rng(seed: int, index: int, frame: int, stream: str) -> np.random.Generator:
    """The draws of frame ``frame`` of clip ``index``; frame 0's are the still sample's (``sample_rng``)."""
    return np.random.default_rng([seed, index, STREAMS[stream], frame]) if frame else sample_rng(seed, index, stream)


def sample_face(spec: JobSpec, model: MorphableModel, index: int, num_background_images: int = 0,
                photos: list | None = None, lights: list | None = None, num_donors: int = 0) -> FaceParams:
    """Draw sample ``index`` of the job ``spec``.

    ``photos``: the fitted photos of the job's texture libraries (objects with ``fit`` and
    ``light_sh``, as ``photo.library.FittedPhoto``): albedo sources, or in a photo-realistic job the
    faces that are re-rendered. ``lights``: (9, 3) SH lights recovered from photos
    (``photo.library_sources.library_lights`` of ``[sampling.lighting] texture_libraries``).
    ``num_donors``: the photos of ``[sampling.detail] donor_libraries`` (detail sources).
    """
    if spec.photoreal.library:
        return sample_photoreal(spec, model, index, photos or [], num_donors)
    s: SamplingSpec = spec.sampling
    width, height = spec.render.width, spec.render.height
    rng = lambda stream: sample_rng(spec.seed, index, stream)  # noqa: E731
    rotation = sample_rotation(rng("pose"), s.pose)
    intrinsics, translation = sample_camera(rng("camera"), s, model, rotation, width, height)
    hair = sample_hair(rng("hair"), s.hair)
    albedo_source = sample_albedo_source(rng("texture"), s, len(photos or []))
    return FaceParams(
        sample_index=index,
        identity=sample_identity(rng("identity"), s, model),
        expression=sample_expression(rng("expression"), s, model),
        rotation=rotation,
        translation=translation,
        intrinsics=intrinsics,
        light_sh=sample_lighting(rng("lighting"), s, lights),
        appearance=sample_appearance(rng("appearance"), s),
        background=sample_background(rng("background"), s, num_background_images),
        albedo_source=albedo_source,
        capture=sample_capture(rng("capture"), s, height),
        hair=hair,
        face_hair=sample_face_hair(rng("face_hair"), s.hair, hair.colour if hair is not None else None),
        clothing=sample_clothing(rng("clothing"), s.clothing),
        glasses=sample_glasses(rng("glasses"), s.occluders),
        hand=sample_hand(rng("hand"), s.occluders),
        detail=sample_detail(rng("detail"), s.detail, albedo_source, len(photos or []), num_donors),
    )


def sample_capture(rng, s: SamplingSpec, height: int) -> CaptureParams | None:
    """Camera effects for a ``probability`` share of the pictures, each effect with its own."""
    c = s.capture
    if not c.probability or rng.uniform() >= c.probability:
        return None
    # every value is drawn, used or not: changing one effect's probability leaves the others' draws alone
    on = rng.uniform(size=5) < [c.depth_of_field, c.lens_blur, c.motion_blur, c.noise, c.jpeg]
    background, lens, motion = (rng.uniform(*r) * height * k for r, k in
                                zip((c.background_blur, c.lens_blur_sigma, c.motion_blur_length), on[:3]))
    angle = rng.uniform(0, np.pi)
    gains = np.exp(rng.normal(0, c.white_balance_std, 3) + np.log(2.0) * rng.normal(0, c.exposure_std))
    vignetting = rng.uniform(*c.vignetting)
    read, shot = rng.uniform(*c.noise_std) * on[3], rng.uniform(*c.shot_noise_gain) * on[3]
    quality = int(round(rng.uniform(*c.jpeg_quality))) * int(on[4])
    return CaptureParams(float(background), float(lens), float(motion), angle, gains.astype(np.float32), vignetting,
                         float(read), float(shot), quality)


def sample_albedo_source(rng, s: SamplingSpec, num_photos: int) -> int:
    if num_photos and rng.uniform() < s.appearance.texture_probability:
        return int(rng.integers(num_photos))
    return -1


def sample_photoreal(spec: JobSpec, model: MorphableModel, index: int, photos: list, num_donors: int = 0) -> FaceParams:
    """A fitted photo's face with a changed pose, expression and lighting (see PhotorealSpec).

    Identity, position and camera stay the photo's (its intrinsics scaled from the crop to the
    output size); the photo's albedo is the skin and the photo itself the background.
    """
    p, s = spec.photoreal, spec.sampling
    rng = lambda stream: sample_rng(spec.seed, index, stream)  # noqa: E731
    choice = rng("photoreal")
    k = int(choice.integers(len(photos)))
    fit = photos[k].fit
    change = [choice.uniform(*getattr(p, f"{axis}_change_deg")) for axis in ("yaw", "pitch", "roll")]
    expression = (sample_expression(rng("expression"), s, model) if choice.uniform() < p.new_expression_probability
                  else np.asarray(fit.expression, np.float32))
    light = sample_lighting(rng("lighting"), s) if choice.uniform() < p.relight_probability else photos[k].light_sh
    appearance = sample_appearance(rng("appearance"), s)  # eyes and teeth; the skin is the photo's
    appearance[APPEARANCE_NAMES.index("specular")] = 0.0  # the photo's highlights are in its albedo
    if getattr(photos[k], "iris", None) is not None:  # where the photo does not show an eye: its iris colour
        hue, darkness = iris_appearance(photos[k].iris)
        appearance[APPEARANCE_NAMES.index("iris_hue")], appearance[APPEARANCE_NAMES.index("iris_darkness")] = hue, darkness
    return FaceParams(
        sample_index=index, identity=np.asarray(fit.identity, np.float32), expression=expression,
        rotation=(np.asarray(fit.rotation, np.float64) + np.radians(change)).astype(np.float32),
        translation=np.asarray(fit.translation, np.float32), intrinsics=resize_intrinsics(fit.intrinsics, photos[k].crop_size, spec.render.width, spec.render.height),
        light_sh=np.asarray(light, np.float32), appearance=appearance,
        background=np.array([PHOTO_BACKGROUND, k], np.int64), albedo_source=k,
        capture=sample_capture(rng("capture"), s, spec.render.height),
        detail=sample_detail(rng("detail"), s.detail, k, len(photos), num_donors))


def sample_identity(rng, s: SamplingSpec, model: MorphableModel) -> np.ndarray:
    p = s.identity
    k = model.num_identity if p.components == 0 else min(p.components, model.num_identity)
    coefficients = np.zeros(model.num_identity, np.float32)
    coefficients[:k] = np.clip(rng.standard_normal(k), -p.truncation, p.truncation) * p.std
    return coefficients


def sample_rotation(rng, p: PosePrior) -> np.ndarray:
    angles = [_truncated(rng, getattr(p, f"{axis}_range_deg"), getattr(p, f"{axis}_std_deg"))
              for axis in ("yaw", "pitch", "roll")]
    return np.radians(angles).astype(np.float32)


def _truncated(rng, bounds, std) -> float:
    """N(0, std) truncated to bounds (by rejection, then clipping); uniform when std = 0."""
    lo, hi = bounds
    if std == 0 or lo == hi:
        return float(rng.uniform(lo, hi))
    for _ in range(64):
        x = rng.normal(0.0, std)
        if lo <= x <= hi:
            return float(x)
    return float(np.clip(rng.normal(0.0, std), lo, hi))


def sample_camera(rng, s: SamplingSpec, model: MorphableModel, rotation, width: int, height: int):
    """Intrinsics, and the translation that puts the face at the chosen size and image position."""
    c = s.camera
    fov = np.radians(rng.uniform(*c.fov_deg))
    fy = (height / 2.0) / np.tan(fov / 2.0)
    fx = fy  # square pixels
    cx = width / 2.0 + rng.normal(0, c.principal_point_jitter) * width
    cy = height / 2.0 + rng.normal(0, c.principal_point_jitter) * height
    fraction = rng.uniform(*c.face_fraction)
    offset = rng.normal(0, c.center_jitter, size=2) * (width, height)

    landmarks = model.mean[model.landmark_ids]
    face_height = np.ptp(landmarks[:, 1])  # chin to brows, mm
    distance = fy * face_height / (fraction * height)
    centre = landmarks.mean(0) - model.pivot
    rotated = rotation_matrix(rotation) @ centre
    u, v = width / 2.0 + offset[0], height / 2.0 + offset[1]
    # Solve for t so the face centre lands at pixel (u, v), `distance` in front of the camera.
    tz = -distance - rotated[2]
    tx = (u - cx) / fx * distance - rotated[0]
    ty = -(v - cy) / fy * distance - rotated[1]
    return (np.array([fx, fy, cx, cy], np.float32), np.array([tx, ty, tz], np.float32))


MIRRORED_SH = np.array([1, 1, 1, -1, -1, 1, 1, -1, 1], np.float32)  # x -> -x: Y11 (x), Y2-2 (xy), Y21 (xz) change sign


def sample_lighting(rng, s: SamplingSpec, lights: list | None = None) -> np.ndarray:
    """Ambient + one directional light, as SH radiance coefficients (9, 3); or, with ``lights``, for
    a ``library_probability`` share of the faces one of them (a real environment), mirrored
    left-right half of the time and scaled to the brightness of a parametric light drawn with it."""
    p = s.lighting
    if lights and rng.uniform() < p.library_probability:
        light = np.asarray(lights[int(rng.integers(len(lights)))], np.float32)
        if rng.uniform() < 0.5:
            light = light * MIRRORED_SH[:, None]
        scale = _facing_brightness(_parametric_light(rng, p)) / max(_facing_brightness(light), 1e-3)
        return (light * scale).astype(np.float32)
    return _parametric_light(rng, p)


def _parametric_light(rng, p) -> np.ndarray:
    ambient = rng.uniform(*p.ambient)
    strength = rng.uniform(*p.directional)
    azimuth = np.radians(rng.uniform(*p.azimuth_range_deg))
    elevation = np.radians(rng.uniform(*p.elevation_range_deg))
    direction = np.array([np.cos(elevation) * np.sin(azimuth), np.sin(elevation), np.cos(elevation) * np.cos(azimuth)])
    colour = np.clip(1.0 + rng.normal(0, p.colour_jitter, size=3), 0.5, 1.5)
    sh = strength * sh_basis(direction)  # a distant light of radiance `strength` from `direction`
    sh[0] += ambient / SH_NORM[0]  # irradiance/pi of a uniform environment = L00 * Y00
    sh[1:] += rng.normal(0, p.random_sh_std, size=8) * ambient / SH_NORM[0]
    return (sh[:, None] * colour[None, :]).astype(np.float32)


def raking_light() -> np.ndarray:
    """(9, 3) a low-ambient light grazing the face from its left and a little above: what shows relief."""
    azimuth, elevation = np.radians(75.0), np.radians(25.0)
    direction = np.array([np.cos(elevation) * np.sin(azimuth), np.sin(elevation), np.cos(elevation) * np.cos(azimuth)])
    sh = 2.2 * sh_basis(direction)
    sh[0] += 0.12 / SH_NORM[0]
    return np.repeat(sh[:, None], 3, 1).astype(np.float32)


def _facing_brightness(light: np.ndarray) -> float:
    """Mean irradiance / pi (as the shader clamps it) over the normals facing the camera, all channels."""
    return float(np.maximum(_facing_basis() @ light, 0).mean())


@functools.lru_cache(maxsize=1)
def _facing_basis() -> np.ndarray:
    """irradiance_basis of 256 normals spread evenly over the hemisphere towards the camera (+z)."""
    k = np.arange(256) + 0.5
    z = 1 - k / 256  # uniform in z over (0, 1]: uniform over the hemisphere's area
    phi = np.pi * (3 - np.sqrt(5)) * k
    r = np.sqrt(1 - z * z)
    return irradiance_basis(np.stack([r * np.cos(phi), r * np.sin(phi), z], 1))


def sample_appearance(rng, s: SamplingSpec) -> np.ndarray:
    p = s.appearance
    ranged = [rng.uniform(*getattr(p, name)) for name in APPEARANCE_NAMES[:9]]
    extra = [rng.uniform(0, 1), rng.uniform(0.2, 1.0), rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0, 1)]
    if p.skin_tones == "balanced":  # drawn after the others: every other part of the face stays as it was
        ranged[0] = float(np.clip(balanced_melanin(rng, ranged[1]), 0.0, 1.0))
    return np.array(ranged + extra, np.float32)


def sample_background(rng, s: SamplingSpec, num_images: int) -> np.ndarray:
    b = s.background
    use_image = num_images > 0 and (b.kind == "images" or (b.kind == "mixed" and rng.uniform() < b.image_probability))
    return np.array([IMAGE_BACKGROUND, rng.integers(num_images)] if use_image else [MADE_BACKGROUND, -1], np.int64)


# --- expressions


def sample_expression(rng, s: SamplingSpec, model: MorphableModel) -> np.ndarray:
    """Sparse, plausible blendshape activations (see ExpressionPrior), or N(0, std) for PCA models."""
    p = s.expression
    weights = np.zeros(model.num_expression, np.float32)
    if model.expression_kind == "pca":
        weights[:] = rng.standard_normal(model.num_expression) * p.gaussian_std
        return weights
    plan = _expression_plan(model.expression_names)
    if rng.uniform() < p.neutral_fraction:
        return weights
    index = {name: i for i, name in enumerate(model.expression_names)}

    def put(name, value):
        if name in index:
            weights[index[name]] = max(weights[index[name]], value)

    def put_group(group, value):
        left, right = group
        if right is None:
            put(left, value)
        elif rng.uniform() < p.bilateral_probability:
            ratio = np.exp(rng.normal(0, p.asymmetry_std))
            put(left, value * ratio)
            put(right, value / ratio)
        else:
            put(left if rng.uniform() < 0.5 else right, value)

    groups = plan["free"]
    count = min(rng.poisson(p.mean_active_groups), len(groups))
    for g in rng.choice(len(groups), size=count, replace=False) if count else []:
        alternatives = groups[g]
        put_group(alternatives[rng.integers(len(alternatives))], p.max_weight * rng.uniform(0.15, 1.0))
    if plan["jaw"] and rng.uniform() < p.jaw_open_probability:
        jaw = rng.uniform(*p.jaw_open_range)
        put("jawOpen", jaw)
        if plan["jaw_partners"]:
            partner = plan["jaw_partners"][rng.integers(len(plan["jaw_partners"]))]
            put_group(partner, jaw * rng.uniform(0.3, 1.0))
        if "mouthClose" in index and rng.uniform() < 0.3:
            put("mouthClose", jaw * rng.uniform(0.0, 0.8))
    if plan["blink"] and rng.uniform() < p.eye_blink_probability:
        put_group(plan["blink"], rng.uniform(0.5, 1.0))
    if plan["gaze"]:
        _gaze(rng, put)
    return np.clip(weights, 0.0, max(1.0, p.max_weight))


def _gaze(rng, put):
    """Both eyes look the same way: looking to the subject's left is eyeLookOut_L + eyeLookIn_R."""
    horizontal, vertical = rng.uniform(-0.6, 0.6), rng.uniform(-0.4, 0.4)
    if horizontal > 0:
        put("eyeLookOut_L", horizontal), put("eyeLookIn_R", horizontal)
    else:
        put("eyeLookOut_R", -horizontal), put("eyeLookIn_L", -horizontal)
    side = "Up" if vertical > 0 else "Down"
    put(f"eyeLook{side}_L", abs(vertical)), put(f"eyeLook{side}_R", abs(vertical))


_SPECIAL = {"jawOpen", "mouthClose"}
_EXCLUSIVE = (("mouthLeft", "mouthRight"), ("jawLeft", "jawRight"))
_JAW_PARTNERS = ("mouthFunnel", "mouthPucker", "mouthStretch", "mouthLowerDown", "mouthSmile", "mouthUpperUp")


@functools.lru_cache(maxsize=8)
def _expression_plan(names: tuple) -> dict:
    """Group blendshape names: left/right pairs, mutually exclusive alternatives, jaw, blink, gaze."""
    names = list(names)
    pairs, singles, used = {}, [], set()
    for n in names:
        if n.endswith("_L") and n[:-2] + "_R" in names:
            pairs[n[:-2]] = (n, n[:-2] + "_R")
            used |= {n, n[:-2] + "_R"}
    for n in names:
        if n not in used:
            singles.append(n)
    gaze = any(n.startswith("eyeLook") for n in names)
    free = []
    taken = set()
    for a, b in _EXCLUSIVE:
        if a in singles and b in singles:
            free.append([(a, None), (b, None)])
            taken |= {a, b}
    for base, pair in pairs.items():
        if base.startswith("eyeLook") or base == "eyeBlink":
            continue
        free.append([pair])
    for n in singles:
        if n not in taken and n not in _SPECIAL:
            free.append([(n, None)])
    jaw_partners = [pairs[b] if b in pairs else (b, None) for b in _JAW_PARTNERS if b in pairs or b in singles]
    return {"free": free, "jaw": "jawOpen" in names, "jaw_partners": jaw_partners,
            "blink": pairs.get("eyeBlink"), "gaze": gaze}
