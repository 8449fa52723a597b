"""The plan of a job: its manifest before any shard exists (``plan``), which says what the output
folder should hold and what makes two runs the same job."""

from __future__ import annotations

import hashlib
from pathlib import Path

from .. import __version__
from ..data.manifest import shard_name, spec_fingerprint
from ..data.shards import SCHEMA_VERSION
from ..errors import DatagenError
from ..models.morphable_model import MorphableModel, model_checksum
from ..photo.library import INDEX
from ..spec import JobSpec


def plan(spec: JobSpec, model: MorphableModel) -> dict:
    """The manifest of a job before any shard exists."""
    return {
        "format": "datagen-shards",
        "schema_version": SCHEMA_VERSION,
        "datagen_version": __version__,
        "name": spec.name,
        "job_spec": spec.source_text,
        "spec_fingerprint": spec_fingerprint(spec),
        "model": {"name": model.name, "job_model": spec.model.name, "checksum": model_checksum(model),
                  "licence": model.licence},
        "model_path": spec.model_reference(),  # what the job loaded: a name, or a model directory resolved
        "textures": texture_fingerprints(spec),
        "seed": spec.seed,
        "num_samples": spec.num_samples,
        "samples_per_shard": spec.samples_per_shard,
        "frames": spec.video.frames,  # per sample: 1 = stills, K > 1 = clips with a frame axis
        "num_shards": spec.num_shards,
        "shards": [{"file": shard_name(i), "start": r.start, "stop": r.stop, "checksum": None, "bytes": None}
                   for i, r in ((i, spec.shard_range(i)) for i in range(spec.num_shards))],
    }


def texture_fingerprints(spec: JobSpec) -> dict:
    """SHA-256 of the index of every texture library the job reads: refitting a library changes the samples."""
    fingerprints = {}
    for written, library in spec.all_libraries():
        index = Path(library) / INDEX
        try:
            fingerprints[written] = hashlib.sha256(index.read_bytes()).hexdigest()
        except OSError:
            raise DatagenError(f"{library}: not a texture library (no index.json); make one with 'datagen fit'") from None
    return fingerprints
