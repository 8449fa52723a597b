"""The job file's tables as frozen dataclasses: every key, its default and what it means.

Each table maps to one class; ``check(where)`` validates its values (``checks``), and ``loader``
builds them from TOML. See README "Job files" and "Parameter priors".
"""

from __future__ import annotations

import dataclasses
import os
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path

from .checks import Where, check_range, require

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

    ``skin_tones``: "uniform" draws melanin uniformly from ``melanin``; "balanced" draws a skin-tone
    (ITA) category uniformly, then the melanin that renders a tone inside it (``synth.skin``)."""

    skin_tones: str = "uniform"
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
class SamplingSpec:
    identity: IdentityPrior = field(default_factory=IdentityPrior)
    expression: ExpressionPrior = field(default_factory=ExpressionPrior)
    pose: PosePrior = field(default_factory=PosePrior)
    camera: CameraPrior = field(default_factory=CameraPrior)
    lighting: LightingPrior = field(default_factory=LightingPrior)
    appearance: AppearancePrior = field(default_factory=AppearancePrior)
    background: BackgroundPrior = field(default_factory=BackgroundPrior)
    capture: CapturePrior = field(default_factory=CapturePrior)


# --- everything else


@dataclass(frozen=True)
class PhotorealSpec:
    """Photo-realistic re-rendering (Guo et al.): each sample takes a fitted photo from ``library``
    (made by `datagen fit`) and renders its face with a changed pose, expression and lighting,
    composited into the photo, whose background and hair are warped to follow the head."""

    library: str = ""  # a texture library folder; empty = off (faces are generated from the priors)
    yaw_change_deg: Range = (-20.0, 20.0)  # added to the fitted pose: the range where the texture holds
    pitch_change_deg: Range = (-10.0, 10.0)
    roll_change_deg: Range = (-10.0, 10.0)
    new_expression_probability: float = 0.9  # else the photo's own expression
    relight_probability: float = 0.7  # new lighting from [sampling.lighting]; else the photo's own

    def check(self, where):
        for name, limit in (("yaw_change_deg", 45), ("pitch_change_deg", 30), ("roll_change_deg", 30)):
            check_range(getattr(self, name), where, name, -limit, limit)
        for name in ("new_expression_probability", "relight_probability"):
            require(0 <= getattr(self, name) <= 1, where, name, "must be a probability in [0, 1]")



@dataclass(frozen=True)
class ModelSpec:
    """Which morphable model: a registered name (``ict-facekit``, ``sfm``) or a converted model directory."""

    name: str = "ict-facekit"

    def check(self, where):
        require(bool(self.name), where, "name", "must name a model, e.g. \"ict-facekit\"")


@dataclass(frozen=True)
class RenderSpec:
    width: int = 224
    height: int = 224
    msaa: int = 0  # multisample anti-aliasing of the image (samples per pixel); cheap on GPUs
    supersample: int = 2  # else: draw the image at this many times the size and box-filter it down
    # Ground truth (depth, normals, segmentation, landmarks) is never anti-aliased.

    def check(self, where):
        require(16 <= self.width <= 4096, where, "width", "must be in [16, 4096]")
        require(16 <= self.height <= 4096, where, "height", "must be in [16, 4096]")
        require(self.msaa in (0, 1, 2, 4, 8, 16), where, "msaa", "must be one of 0, 1, 2, 4, 8, 16")
        require(1 <= self.supersample <= 4, where, "supersample", "must be 1, 2, 3 or 4")


@dataclass(frozen=True)
class OutputSpec:
    samples_per_shard: int = 64
    compression: str = "lzf"  # "none", "lzf" or "gzip"
    compression_level: int = 4  # gzip only
    store_vertices: bool = False  # also write the dense (N, V, 3) camera-space vertices

    def check(self, where):
        require(self.samples_per_shard >= 1, where, "samples_per_shard", "must be >= 1")
        require(self.compression in ("none", "lzf", "gzip"), where, "compression",
                 f'must be "none", "lzf" or "gzip", got "{self.compression}"')
        require(0 <= self.compression_level <= 9, where, "compression_level", "must be in [0, 9]")


CLUSTER_KINDS = ("local", "scheduler", "slurm", "pbs")
_WALLTIME = re.compile(r"^(\d+-)?\d{1,3}:\d{2}(:\d{2})?$")
_MEMORY = re.compile(r"^\d+(\.\d+)?\s*([KMGT]i?B?)$", re.IGNORECASE)


@dataclass(frozen=True)
class ClusterSpec:
    """Where the work runs (see README "Running on a cluster"); not part of a job's identity.

    ``local`` starts a dask LocalCluster on this machine, ``scheduler`` connects to a running
    one, ``slurm`` and ``pbs`` submit batch jobs of dask workers through dask-jobqueue.
    """

    kind: str = "local"
    workers: int = 0  # local worker processes; 0 = one per GPU, or one per core without GPUs
    scheduler: str = ""  # e.g. "tcp://head:8786"; implies kind = "scheduler"
    batch_size: int = 16  # samples rendered per geometry batch inside a task
    # slurm / pbs: one batch job = one node's worth of dask workers (one per GPU, or one per core)
    queue: str = ""  # partition (SLURM -p) or queue (PBS -q)
    account: str = ""  # SLURM -A / PBS -A
    walltime: str = "04:00:00"  # per batch job; a pre-empted or expired job's shards are redone elsewhere
    cores: int = 8  # CPU cores per batch job
    memory: str = "32GB"  # memory per batch job
    gpus_per_job: int = 0  # GPUs per batch job: that many workers, each bound to its own GPU
    jobs: int = 1  # batch jobs to keep running (a fixed-size cluster)
    adaptive_min_jobs: int = 0  # with adaptive_max_jobs > 0: scale between these with the work left
    adaptive_max_jobs: int = 0
    job_directives: typing.Tuple[str, ...] = ()  # extra #SBATCH / #PBS lines, e.g. ["--constraint=a100"]
    prologue: typing.Tuple[str, ...] = ()  # shell lines run before the workers, e.g. ["module load cuda"]
    interface: str = ""  # network interface for workers and scheduler, e.g. "ib0"
    local_directory: str = ""  # worker scratch space, e.g. "$TMPDIR"

    def check(self, where):
        require(self.kind in CLUSTER_KINDS, where, "kind",
                 f'must be one of {", ".join(CLUSTER_KINDS)}, got "{self.kind}"')
        require(self.workers >= 0, where, "workers", "must be >= 0")
        require(self.batch_size >= 1, where, "batch_size", "must be >= 1")
        if self.kind == "scheduler":
            require(bool(self.scheduler), where, "scheduler", 'is required when kind = "scheduler", e.g. "tcp://head:8786"')
        require(bool(_WALLTIME.match(self.walltime)), where, "walltime", f'must be [D-]HH:MM[:SS], got "{self.walltime}"')
        require(bool(_MEMORY.match(self.memory)), where, "memory", f'must be an amount such as "32GB", got "{self.memory}"')
        require(self.cores >= 1, where, "cores", "must be >= 1")
        require(self.gpus_per_job >= 0, where, "gpus_per_job", "must be >= 0")
        require(self.jobs >= 1, where, "jobs", "must be >= 1")
        require(0 <= self.adaptive_min_jobs, where, "adaptive_min_jobs", "must be >= 0")
        require(self.adaptive_max_jobs == 0 or self.adaptive_min_jobs <= self.adaptive_max_jobs, where,
                 "adaptive_max_jobs", "must be 0 (fixed size) or >= adaptive_min_jobs")


@dataclass(frozen=True)
class JobSpec:
    """One dataset: how many samples, from which model, drawn from which priors, rendered how."""

    name: str
    seed: int = 0
    num_samples: int = 256
    model: ModelSpec = field(default_factory=ModelSpec)
    sampling: SamplingSpec = field(default_factory=SamplingSpec)
    render: RenderSpec = field(default_factory=RenderSpec)
    output: OutputSpec = field(default_factory=OutputSpec)
    cluster: ClusterSpec = field(default_factory=ClusterSpec)
    photoreal: PhotorealSpec = field(default_factory=PhotorealSpec)
    source_text: str = field(default="", compare=False, repr=False)
    source_path: str = field(default="", compare=False, repr=False)
    base_dir: str = field(default="", compare=False, repr=False)  # relative paths' folder (the job file's)

    def check(self, where):
        require(bool(re.fullmatch(r"[A-Za-z0-9_.-]+", self.name)), where, "name",
                 "must be letters, digits, '.', '_' or '-'")
        require(0 <= self.seed < 2**63, where, "seed", "must be an integer in [0, 2**63)")
        require(self.num_samples >= 1, where, "num_samples", "must be >= 1")
        if self.photoreal.library:
            require(self.render.width == self.render.height, Where(where.ctx, "render"), "width",
                     "must equal height for photo-realistic jobs (fitted photos are square crops)")

    def path(self, value: str) -> str:
        """A path from the job file, absolute: relative ones are relative to the job file's folder
        (to the working directory for a spec parsed from text); ``~`` is the home folder."""
        if not value:
            return value
        return os.path.abspath(Path(self.base_dir or ".") / Path(value).expanduser())

    def model_reference(self) -> str:
        """What to load: a registered model name as it is, a model directory resolved (``path``)."""
        return self.path(self.model.name) if _names_a_directory(self.model.name) else self.model.name

    def texture_libraries(self) -> list[tuple[str, str]]:
        """(as written, resolved) for each texture library the job reads: the photo-realistic
        library, else the albedo libraries of ``[sampling.appearance]``."""
        written = [self.photoreal.library] if self.photoreal.library else list(self.sampling.appearance.texture_libraries)
        return [(w, self.path(w)) for w in written]

    def lighting_libraries(self) -> list[str]:
        """The texture libraries whose recovered lighting lights faces, resolved (``path``)."""
        return [self.path(w) for w in self.sampling.lighting.texture_libraries]

    @property
    def num_shards(self) -> int:
        return -(-self.num_samples // self.output.samples_per_shard)

    def shard_range(self, shard_index: int) -> range:
        """The sample indices of one shard."""
        start = shard_index * self.output.samples_per_shard
        return range(start, min(start + self.output.samples_per_shard, self.num_samples))


def _names_a_directory(name: str) -> bool:
    """A model given by path, not by registered name ("ict-facekit", "sfm")."""
    return "/" in name or "\\" in name or name.startswith((".", "~"))
