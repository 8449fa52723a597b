"""``manifest.json``: what an output folder should hold, written before any shard and updated as
shards complete (see README "Dataset format"). Reading it needs neither dask nor a GL context.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from pathlib import Path

from ..errors import ShardError
from ..files import write_text_or_fail

MANIFEST = "manifest.json"
SHARD_PATTERN = "shard-*.h5"


def shard_name(index: int) -> str:
    return f"shard-{index:05d}.h5"


# Job keys added after datasets were first written, each with the value (or a test of it) that gives
# the samples of a job written before it: left out of the fingerprint at that value, so that a dataset
# begun with an older datagen resumes after an upgrade (a key's default may change; its neutral value may not).
NEUTRAL_ADDITIONS = {
    ("sampling", "background", "texture_libraries"): (),
    ("sampling", "appearance", "skin_tones"): "uniform",
    ("sampling", "lighting", "texture_libraries"): (),
    ("sampling", "lighting", "library_probability"): 0.5,
    ("sampling", "capture"): lambda table: table["probability"] == 0,
    ("sampling", "hair"): lambda table: not (table["probability"] or table.get("eyelash_probability")
                                             or table.get("brow_relief_probability")),
    ("sampling", "clothing"): lambda table: table["probability"] == 0,
    ("sampling", "occluders"): lambda table: table["glasses_probability"] == 0 and table["hand_probability"] == 0,
    ("video",): lambda table: table["frames"] == 1,  # stills: no other [video] key changes them
}


# [output] keys that say how samples are stored, not which: out of the fingerprint since datagen 0.19, so
# a job may change its compression and resume (shards of several compressions read alike).
STORAGE_KEYS = ("compression", "compression_level")


def spec_fingerprint(spec) -> str:
    """What makes two jobs produce the same samples: everything but where and how fast they run and
    how the samples are stored."""
    return _fingerprint(spec, storage=False)


def accepted_fingerprints(spec) -> set[str]:
    """The fingerprints of outputs this job may resume: its own, and those an older datagen wrote for
    it, with the compression in the fingerprint (any compression and level: the old default need not
    be the new one)."""
    from ..spec.jobs import COMPRESSIONS

    legacy = {_fingerprint(dataclasses.replace(spec, output=dataclasses.replace(
        spec.output, compression=name, compression_level=level)), storage=True)
        for name in COMPRESSIONS for level in range(10)}
    return {spec_fingerprint(spec)} | legacy


def _fingerprint(spec, storage: bool) -> str:
    content = dataclasses.asdict(spec)
    for key in ("cluster", "source_text", "source_path", "base_dir"):
        content.pop(key)
    content["render"].pop("geometry")  # where the mesh is computed: the same samples (up to rounding, README)
    if not storage:
        for key in STORAGE_KEYS:
            content["output"].pop(key)
    for path, neutral in NEUTRAL_ADDITIONS.items():
        *tables, key = path
        table = functools.reduce(dict.get, tables, content)
        if table is not None and key in table and (neutral(table[key]) if callable(neutral) else table[key] == neutral):
            del table[key]
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def read_manifest(out_dir: str | Path) -> dict:
    path = Path(out_dir) / MANIFEST
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ShardError(f"{out_dir}: no {MANIFEST}; not a datagen dataset") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise ShardError(f"{path}: corrupt manifest ({e})") from None
    except OSError as e:
        raise ShardError(f"{path}: cannot read the manifest ({e.strerror or e})") from None


def write_manifest(out_dir: str | Path, manifest: dict) -> None:
    write_text_or_fail(Path(out_dir) / MANIFEST, json.dumps(manifest, indent=1), "manifest")


def unlisted_shards(out_dir: str | Path, manifest: dict) -> list[str]:
    """Shard files in the folder that the manifest does not list (another job's, or copied in)."""
    listed = {s["file"] for s in manifest["shards"]}
    return sorted(p.name for p in Path(out_dir).glob(SHARD_PATTERN) if p.name not in listed)
