"""The job file's tables as frozen dataclasses: every key, its default and what it means.

Each table maps to one class; ``check(where)`` validates its values (``checks``), and ``loader``
builds them from TOML. The ``[sampling.*]`` priors are in ``priors``. See README "Job files" and
"Parameter priors".
"""

from __future__ import annotations

import os
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path

from .checks import Where, check_range, require
from .priors import Range, SamplingSpec
from .video import VideoSpec

COMPRESSIONS = ("none", "lzf", "gzip", "lz4", "zstd", "blosc2")  # data/compression.py maps them to filters


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


# "auto": the GL device's compute shaders on a GPU, numpy on a software renderer (faster there:
# bench/throughput.py); "host": numpy always; "device": compute shaders always (GL 4.3).
GEOMETRY_PLACES = ("auto", "host", "device")


@dataclass(frozen=True)
class RenderSpec:
    width: int = 224
    height: int = 224
    msaa: int = 0  # multisample anti-aliasing of the image (samples per pixel); cheap on GPUs
    supersample: int = 2  # else: draw the image at this many times the size and box-filter it down
    # Ground truth (depth, normals, segmentation, landmarks) is never anti-aliased.
    geometry: str = "auto"  # GEOMETRY_PLACES: where the dense mesh is computed (synth/device_geometry.py)

    def check(self, where):
        require(self.geometry in GEOMETRY_PLACES, where, "geometry",
                f'must be one of {", ".join(GEOMETRY_PLACES)}, got "{self.geometry}"')
        require(16 <= self.width <= 4096, where, "width", "must be in [16, 4096]")
        require(16 <= self.height <= 4096, where, "height", "must be in [16, 4096]")
        require(self.msaa in (0, 1, 2, 4, 8, 16), where, "msaa", "must be one of 0, 1, 2, 4, 8, 16")
        require(1 <= self.supersample <= 4, where, "supersample", "must be 1, 2, 3 or 4")


@dataclass(frozen=True)
class OutputSpec:
    samples_per_shard: int = 64
    compression: str = "lz4"  # one of COMPRESSIONS (data/compression.py); lz4, zstd, blosc2 through hdf5plugin
    compression_level: int = 4  # gzip, zstd and blosc2
    store_vertices: bool = False  # also write the dense (N, V, 3) camera-space vertices

    def check(self, where):
        require(self.samples_per_shard >= 1, where, "samples_per_shard", "must be >= 1")
        require(self.compression in COMPRESSIONS, where, "compression",
                f'must be one of {", ".join(COMPRESSIONS)}, got "{self.compression}"')
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
    """One dataset: how many samples (stills, or clips with ``[video]``), from which model, drawn from
    which priors, rendered how."""

    name: str
    seed: int = 0
    num_samples: int = 256
    model: ModelSpec = field(default_factory=ModelSpec)
    sampling: SamplingSpec = field(default_factory=SamplingSpec)
    render: RenderSpec = field(default_factory=RenderSpec)
    output: OutputSpec = field(default_factory=OutputSpec)
    cluster: ClusterSpec = field(default_factory=ClusterSpec)
    photoreal: PhotorealSpec = field(default_factory=PhotorealSpec)
    video: VideoSpec = field(default_factory=VideoSpec)
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
        require(self.video.frames <= self.output.samples_per_shard, Where(where.ctx, "video"), "frames",
                f"a clip of {self.video.frames} frames is longer than a shard holds (output.samples_per_shard = "
                f"{self.output.samples_per_shard} frames); raise samples_per_shard or shorten the clip")
        if self.render.geometry == "device":
            reason = self.host_mesh_needed()
            require(reason is None, Where(where.ctx, "render"), "geometry", f'"device" cannot serve this job: {reason}; '
                    'use "auto" or "host"')

    def host_mesh_needed(self) -> str | None:
        """Why this job's samples need their dense mesh on the host (so not made on the device), or None."""
        s = self.sampling
        if s.hair.probability or s.hair.eyelash_probability or s.hair.brow_relief_probability \
                or s.clothing.probability or s.occluders.glasses_probability or s.occluders.hand_probability:
            return "props (hair, lashes, clothing, glasses, hands) are built around the mesh on the host"
        if self.photoreal.library:
            return "photo-realistic samples warp their photo with the mesh on the host"
        if self.output.store_vertices:
            return "output.store_vertices writes the mesh"
        if self.video.is_clip:
            return "video clips give the renderer every frame's neighbours from the host"
        return None

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

    def all_libraries(self) -> list[tuple[str, str]]:
        """(as written, resolved) of every texture library the job reads, for any use, each once:
        what the manifest fingerprints (refitting any of them changes the samples)."""
        s = self.sampling
        written = [w for w, _ in self.texture_libraries()] + list(s.lighting.texture_libraries)
        if s.background.kind != "procedural":
            written += list(s.background.texture_libraries)
        if s.detail.probability:
            written += list(s.detail.donor_libraries)
        return [(w, self.path(w)) for w in dict.fromkeys(written)]

    @property
    def samples_per_shard(self) -> int:
        """Samples (stills, or clips of a video job) per shard: ``output.samples_per_shard`` counts frames,
        so a shard's size stays about the same whatever the clip length."""
        return self.output.samples_per_shard // self.video.frames

    @property
    def num_shards(self) -> int:
        return -(-self.num_samples // self.samples_per_shard)

    def shard_range(self, shard_index: int) -> range:
        """The sample (clip) indices of one shard."""
        start = shard_index * self.samples_per_shard
        return range(start, min(start + self.samples_per_shard, self.num_samples))


def _names_a_directory(name: str) -> bool:
    """A model given by path, not by registered name ("ict-facekit", "sfm")."""
    return "/" in name or "\\" in name or name.startswith((".", "~"))
