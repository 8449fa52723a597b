"""The ``[sampling.*]`` tables of a job file: the priors every sample's parameters are drawn from,
as frozen dataclasses (every key, its default and what it means; see README "Parameter priors").
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field

from .checks import check_range, require

Range = typing.Tuple[float, float]
SKIN_TONE_PRIORS = ("uniform", "balanced")


# --- the priors (see README "Parameter priors" for what each number means)


@dataclass(frozen=True)
class IdentityPrior:
    """Identity coefficients: standard normal in the model's PCA space, truncated."""

    components: int = 0  # how many leading modes to use; 0 = all of the model's
    std: float = 1.0  # scale of the N(0, 1) prior
    truncation: float = 2.5  # |coefficient| <= truncation * std (clipped)

    def check(self, where):
        require(self.components >= 0, where, "components", "must be >= 0")
        require(self.std >= 0, where, "std", "must be >= 0")
        require(self.truncation > 0, where, "truncation", "must be > 0")


@dataclass(frozen=True)
class ExpressionPrior:
    """Sparse blendshape activations in [0, 1] (ICT/ARKit-style blendshapes).

    A sample is neutral with ``neutral_fraction``; otherwise a Poisson number of
    blendshape *groups* (left/right pairs count as one) is activated. A pair fires on
    both sides with ``bilateral_probability``, the two weights differing by
    ``asymmetry_std``. ``jaw_open_probability`` adds a jaw opening combined with a
    lip shape (funnel, pucker, stretch or lower-lip depression).
    """

    neutral_fraction: float = 0.15
    mean_active_groups: float = 3.0
    max_weight: float = 1.0
    bilateral_probability: float = 0.8
    asymmetry_std: float = 0.15
    jaw_open_probability: float = 0.3
    jaw_open_range: Range = (0.05, 0.7)
    eye_blink_probability: float = 0.1
    gaussian_std: float = 1.0  # models whose expression basis is PCA (SFM): N(0, std)

    def check(self, where):
        for name in ("neutral_fraction", "bilateral_probability", "jaw_open_probability", "eye_blink_probability"):
            require(0 <= getattr(self, name) <= 1, where, name, "must be a probability in [0, 1]")
        require(self.mean_active_groups >= 0, where, "mean_active_groups", "must be >= 0")
        require(0 < self.max_weight <= 2, where, "max_weight", "must be in (0, 2]")
        check_range(self.jaw_open_range, where, "jaw_open_range", 0, 1.5)


@dataclass(frozen=True)
class PosePrior:
    """Head rotation in degrees: truncated normal N(0, std) inside range; std = 0 means uniform."""

    yaw_range_deg: Range = (-90.0, 90.0)
    yaw_std_deg: float = 40.0
    pitch_range_deg: Range = (-35.0, 35.0)
    pitch_std_deg: float = 12.0
    roll_range_deg: Range = (-30.0, 30.0)
    roll_std_deg: float = 8.0

    def check(self, where):
        for axis, limit in (("yaw", 120), ("pitch", 90), ("roll", 90)):
            check_range(getattr(self, f"{axis}_range_deg"), where, f"{axis}_range_deg", -limit, limit)
            require(getattr(self, f"{axis}_std_deg") >= 0, where, f"{axis}_std_deg", "must be >= 0")


@dataclass(frozen=True)
class CameraPrior:
    """Pinhole camera. The distance is chosen so the head fills ``face_fraction`` of the image height."""

    fov_deg: Range = (12.0, 40.0)  # vertical field of view, uniform
    face_fraction: Range = (0.4, 0.6)  # projected landmark height (chin to brows) / image height, uniform
    principal_point_jitter: float = 0.02  # std of (cx, cy) offset, fraction of image size
    center_jitter: float = 0.05  # std of the head's image offset, fraction of image size

    def check(self, where):
        check_range(self.fov_deg, where, "fov_deg", 1, 150)
        check_range(self.face_fraction, where, "face_fraction", 0.05, 3)
        require(0 <= self.principal_point_jitter <= 0.25, where, "principal_point_jitter", "must be in [0, 0.25]")
        require(0 <= self.center_jitter <= 0.5, where, "center_jitter", "must be in [0, 0.5]")


@dataclass(frozen=True)
class LightingPrior:
    """Second-order spherical harmonics per colour channel: an ambient term plus one directional light.

    The directional light comes from ``azimuth_range_deg`` (0 = from the camera, positive
    = from the camera's right) and ``elevation_range_deg`` (positive = from above).
    """

    ambient: Range = (0.45, 0.95)
    directional: Range = (0.0, 0.8)
    azimuth_range_deg: Range = (-80.0, 80.0)
    elevation_range_deg: Range = (-20.0, 70.0)
    colour_jitter: float = 0.08  # per-channel multiplicative std (white balance)
    random_sh_std: float = 0.05  # extra N(0, std) on every SH coefficient (environment detail)
    # Real environments: the SH lighting `datagen fit` recovered from the photos of these texture
    # libraries, mirrored left-right at random and scaled to the prior's brightness, per sample with
    # `library_probability` (else the parametric light above).
    texture_libraries: typing.Tuple[str, ...] = ()
    library_probability: float = 0.5

    def check(self, where):
        check_range(self.ambient, where, "ambient", 0, 4)
        check_range(self.directional, where, "directional", 0, 4)
        check_range(self.azimuth_range_deg, where, "azimuth_range_deg", -180, 180)
        check_range(self.elevation_range_deg, where, "elevation_range_deg", -90, 90)
        require(0 <= self.colour_jitter <= 0.5, where, "colour_jitter", "must be in [0, 0.5]")
        require(self.random_sh_std >= 0, where, "random_sh_std", "must be >= 0")
        require(0 <= self.library_probability <= 1, where, "library_probability", "must be a probability in [0, 1]")


@dataclass(frozen=True)
class AppearancePrior:
    """Procedural skin albedo parameters, each drawn uniformly from its range (face.frag, synth/skin.py).

    ``skin_tones``: "balanced" (the default) draws a skin-tone (ITA) category uniformly, then the
    melanin that renders a tone inside it (``synth.skin``); "uniform" (the default before) draws
    melanin uniformly from ``melanin``."""

    skin_tones: str = "balanced"
    melanin: Range = (0.05, 0.95)  # 0 = very fair, 1 = very dark
    haemoglobin: Range = (0.25, 0.8)  # overall redness of the skin
    lip_redness: Range = (0.3, 1.0)
    brow_darkness: Range = (0.3, 1.0)
    cheek_redness: Range = (0.0, 0.6)
    blotch_strength: Range = (0.0, 0.6)
    pore_strength: Range = (0.2, 1.0)
    specular: Range = (0.02, 0.18)
    shininess: Range = (8.0, 40.0)
    # Albedo recovered from photos (texture libraries made by `datagen fit`, fitted with this job's model):
    texture_libraries: typing.Tuple[str, ...] = ()
    texture_probability: float = 0.5  # per sample: a library's albedo instead of the procedural skin

    def check(self, where):
        for f in dataclasses.fields(self):
            if f.type in ("Range", Range):
                hi = 200.0 if f.name == "shininess" else 1.0
                check_range(getattr(self, f.name), where, f.name, 0, hi)
        require(0 <= self.texture_probability <= 1, where, "texture_probability", "must be a probability in [0, 1]")
        require(self.skin_tones in SKIN_TONE_PRIORS, where, "skin_tones",
                f'must be {" or ".join(map(repr, SKIN_TONE_PRIORS))}, got "{self.skin_tones}"')


@dataclass(frozen=True)
class BackgroundPrior:
    """``procedural`` (noise and gradients), ``images`` (photos), or ``mixed`` (either, per sample).

    The photos are the files of ``images_dir`` and the parts of the photos of ``texture_libraries``
    (made by `datagen fit`) away from the fitted head: real clutter without a second face."""

    kind: str = "procedural"
    images_dir: str = ""
    texture_libraries: typing.Tuple[str, ...] = ()
    image_probability: float = 0.5  # for kind = "mixed"

    def check(self, where):
        require(self.kind in ("procedural", "images", "mixed"), where, "kind",
                 f'must be "procedural", "images" or "mixed", got "{self.kind}"')
        if self.kind != "procedural":
            require(bool(self.images_dir or self.texture_libraries), where, "images_dir",
                    f'(or texture_libraries) is required when kind = "{self.kind}"')
        require(0 <= self.image_probability <= 1, where, "image_probability", "must be in [0, 1]")


@dataclass(frozen=True)
class CapturePrior:
    """What a camera does to the picture (synth/capture.py), each effect with its probability, for a
    ``probability`` share of the samples; 0 (the default) leaves the images as rendered. No effect
    moves what the image shows, so the ground truth stays exact (motion blur spreads each point along
    a path centred on it). Blur sizes are fractions of the image height."""

    probability: float = 0.0
    depth_of_field: float = 0.6  # the background defocused: a lens focused on the face
    background_blur: Range = (0.004, 0.025)  # its Gaussian sigma
    lens_blur: float = 0.3  # the whole image slightly out of focus
    lens_blur_sigma: Range = (0.002, 0.007)
    motion_blur: float = 0.1  # camera shake: a straight path in any direction
    motion_blur_length: Range = (0.005, 0.03)
    white_balance_std: float = 0.06  # log-normal per-channel gain, in linear light
    exposure_std: float = 0.25  # stops
    vignetting: Range = (0.0, 0.35)  # light lost in the corners
    noise: float = 0.7  # sensor noise: read noise plus shot noise that grows with the signal
    noise_std: Range = (0.5, 4.0)  # read noise, 8-bit levels
    shot_noise_gain: Range = (0.0, 0.6)  # shot noise variance = gain x level
    jpeg: float = 0.6
    jpeg_quality: Range = (40.0, 95.0)

    def check(self, where):
        for name in ("probability", "depth_of_field", "lens_blur", "motion_blur", "noise", "jpeg"):
            require(0 <= getattr(self, name) <= 1, where, name, "must be a probability in [0, 1]")
        for name in ("background_blur", "lens_blur_sigma", "motion_blur_length"):
            check_range(getattr(self, name), where, name, 0, 0.25)
        require(0 <= self.white_balance_std <= 0.5, where, "white_balance_std", "must be in [0, 0.5]")
        require(0 <= self.exposure_std <= 2, where, "exposure_std", "must be in [0, 2] stops")
        check_range(self.vignetting, where, "vignetting", 0, 1)
        check_range(self.noise_std, where, "noise_std", 0, 64)
        check_range(self.shot_noise_gain, where, "shot_noise_gain", 0, 16)
        check_range(self.jpeg_quality, where, "jpeg_quality", 1, 100)


@dataclass(frozen=True)
class HairPrior:
    """Procedural hair over the scalp (synth/props/hair.py): ``probability`` of the faces have hair,
    the others are bald; 0 (the default) draws every face bald, as before. Weights need not sum to 1."""

    probability: float = 0.0
    length_weights: typing.Tuple[float, ...] = (0.4, 0.35, 0.25)  # short, medium (over the ears), long (to the shoulders)
    fringe_probability: float = 0.25  # the front hairline lowered over the forehead
    receding_probability: float = 0.1
    # black, dark brown, brown, light brown, blond, red, grey, white (hair.HAIR_COLOURS)
    colour_weights: typing.Tuple[float, ...] = (0.35, 0.25, 0.14, 0.08, 0.06, 0.04, 0.06, 0.02)
    # independent of the scalp's hair (bald faces have them too); synth/props/face_hair.py
    eyelash_probability: float = 0.0  # ICT-FaceKit's lash cards, alpha-tested
    brow_relief_probability: float = 0.0  # short hair shells over the brows

    def check(self, where):
        for name in ("probability", "fringe_probability", "receding_probability", "eyelash_probability",
                     "brow_relief_probability"):
            require(0 <= getattr(self, name) <= 1, where, name, "must be a probability in [0, 1]")
        for name, count in (("length_weights", 3), ("colour_weights", 8)):
            weights = getattr(self, name)
            require(len(weights) == count and min(weights) >= 0 and sum(weights) > 0, where, name,
                    f"must be {count} non-negative weights, not all 0")


@dataclass(frozen=True)
class ClothingPrior:
    """Shoulders and clothing below the neck (synth/props/clothing.py) on ``probability`` of the faces;
    0 (the default): none, as before. Heights in the head units of [sampling.hair]."""

    probability: float = 0.0
    collar_height: Range = (-2.6, -2.1)  # where the garment meets the neck, head units (below the brows)
    shoulder_half_width_mm: Range = (150.0, 210.0)
    body_follow: Range = (0.2, 0.7)  # the share of the head's rotation the shoulders follow

    def check(self, where):
        require(0 <= self.probability <= 1, where, "probability", "must be a probability in [0, 1]")
        check_range(self.collar_height, where, "collar_height", -4, 0)
        check_range(self.shoulder_half_width_mm, where, "shoulder_half_width_mm", 50, 400)
        check_range(self.body_follow, where, "body_follow", 0, 1)


@dataclass(frozen=True)
class OccluderPrior:
    """Things in front of the face (synth/props/occluders.py), each on its share of the faces; 0 (the
    default): none. Landmarks they cover are marked not visible."""

    glasses_probability: float = 0.0
    sunglasses_fraction: float = 0.15  # of the glasses: dark opaque lenses (others: frames only)
    hand_probability: float = 0.0  # a hand over the chin, mouth or a cheek

    def check(self, where):
        for name in ("glasses_probability", "sunglasses_fraction", "hand_probability"):
            require(0 <= getattr(self, name) <= 1, where, name, "must be a probability in [0, 1]")


@dataclass(frozen=True)
class DetailPrior:
    """Fine surface detail finer than the 3DMM (synth/detail.py): pores, fine lines and wrinkle
    creases as a displacement along the coarse normal, on ``probability`` of the faces; 0 (the
    default): none, and the shards hold no fine fields. Millimetres at ``strength`` 1."""

    probability: float = 0.0
    resolution: int = 1024  # texels per UV tile of the detail maps (ICT-FaceKit's face tile; SFM's one)
    strength: Range = (0.8, 1.2)  # scales all of a face's detail
    age: Range = (0.0, 1.0)  # 0 young .. 1 old: static crease depth ~ age^2, expression creases ~ 0.5 + 0.5 age
    pore_size_mm: Range = (0.25, 0.5)  # the pores' spacing (their density: smaller = denser)
    pore_depth_mm: Range = (0.015, 0.05)
    line_depth_mm: Range = (0.003, 0.015)  # the criss-cross fine lines, scaled by 0.3 + age
    expression_creases: bool = True  # creases deepen with the blendshapes that drive them (detail.CREASES)
    # A fitted photo's own detail (datagen fit), on the faces that use the photo: a photo-realistic
    # job's re-rendered photo, a generated face with the photo's albedo; at this strength (1 = as fitted).
    photo_strength: float = 1.0
    donor_libraries: typing.Tuple[str, ...] = ()  # texture libraries whose photos' detail is transferred
    donor_probability: float = 0.0  # of the detailed faces without a photo of their own: a donor's detail too

    def check(self, where):
        require(0 <= self.probability <= 1, where, "probability", "must be a probability in [0, 1]")
        require(0 <= self.photo_strength <= 4, where, "photo_strength", "must be in [0, 4]")
        require(0 <= self.donor_probability <= 1, where, "donor_probability", "must be a probability in [0, 1]")
        require(not self.donor_probability or self.donor_libraries, where, "donor_libraries",
                "must name a texture library (made by 'datagen fit') when donor_probability > 0")
        require(64 <= self.resolution <= 4096, where, "resolution", "must be in [64, 4096] texels")
        check_range(self.strength, where, "strength", 0, 4)
        check_range(self.age, where, "age", 0, 1)
        check_range(self.pore_size_mm, where, "pore_size_mm", 0.05, 5)
        check_range(self.pore_depth_mm, where, "pore_depth_mm", 0, 1)
        check_range(self.line_depth_mm, where, "line_depth_mm", 0, 1)


@dataclass(frozen=True)
class SamplingSpec:
    identity: IdentityPrior = field(default_factory=IdentityPrior)
    expression: ExpressionPrior = field(default_factory=ExpressionPrior)
    pose: PosePrior = field(default_factory=PosePrior)
    camera: CameraPrior = field(default_factory=CameraPrior)
    lighting: LightingPrior = field(default_factory=LightingPrior)
    appearance: AppearancePrior = field(default_factory=AppearancePrior)
    background: BackgroundPrior = field(default_factory=BackgroundPrior)
    capture: CapturePrior = field(default_factory=CapturePrior)
    hair: HairPrior = field(default_factory=HairPrior)
    clothing: ClothingPrior = field(default_factory=ClothingPrior)
    occluders: OccluderPrior = field(default_factory=OccluderPrior)
    detail: DetailPrior = field(default_factory=DetailPrior)
