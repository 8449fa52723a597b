"""An output folder before a run: its manifest written or checked against the job, and every
shard file accounted for (kept if it validates, taken in if this job wrote it, refused if not).
"""

from __future__ import annotations

from pathlib import Path

import h5py

from ..data.manifest import MANIFEST, SHARD_PATTERN, accepted_fingerprints, read_manifest, unlisted_shards, write_manifest
from ..data.shards import validate_shard
from ..errors import DatagenError, ShardError
from ..files import remove_partial_files
from ..models.morphable_model import MorphableModel
from ..spec import JobSpec
from .plan import plan


def prepare_output(spec: JobSpec, out_dir: Path, model: MorphableModel, force: bool, log) -> tuple[dict, list[int]]:
    """Write or check the manifest; return it and the shards that still need generating.

    The caller holds the folder's ``OutputLock``. Shard files the manifest does not account for
    are never silently overwritten or left beside the new ones: without a manifest, shards this
    job wrote (same fingerprint, valid) are taken in, others refused; with one, unlisted shard
    files are refused. ``force`` discards them instead.
    """
    remove_partial_files(out_dir)
    fresh = plan(spec, model)
    accepted = accepted_fingerprints(spec)
    adopted: set[str] = set()
    if (out_dir / MANIFEST).exists():
        old = read_manifest(out_dir)
        if (old.get("spec_fingerprint") not in accepted or old.get("model") != fresh["model"]
                or old.get("textures", {}) != fresh["textures"]):
            if not force:
                raise DatagenError(f"{out_dir} holds a different job ('{old.get('name')}'); use another --out, "
                                   f"or --force to discard its shards and start again")
            _discard_shards(out_dir)
        else:
            fresh["shards"] = old["shards"]
            _refuse_unlisted(out_dir, fresh, force)
    else:
        adopted = _adopt_orphans(out_dir, fresh, accepted, force, log)
    write_manifest(out_dir, fresh)
    todo = []
    for i, record in enumerate(fresh["shards"]):
        path = out_dir / record["file"]
        if record["file"] in adopted:
            continue  # validated as it was taken in
        if record["checksum"] and path.exists():
            try:
                validate_shard(path, record["checksum"])
                continue
            except ShardError as e:
                log(f"regenerating {e}")
        elif path.exists():
            info = _own_shard(path, record, fresh, accepted)
            if info is not None:  # written whole, but the run ended before the manifest said so
                record.update(checksum=info.checksum, bytes=info.bytes)
                continue
            path.unlink()  # not this job's, or not whole: from an interrupted run
        record["checksum"] = record["bytes"] = None
        todo.append(i)
    write_manifest(out_dir, fresh)
    return fresh, todo


def _discard_shards(out_dir: Path) -> None:
    for shard in out_dir.glob(SHARD_PATTERN):
        shard.unlink()


def _refuse_unlisted(out_dir: Path, manifest: dict, force: bool) -> None:
    strays = unlisted_shards(out_dir, manifest)
    if not strays:
        return
    if not force:
        raise DatagenError(f"{out_dir} holds {len(strays)} shard files its manifest does not list "
                           f"({', '.join(strays[:3])}{', ...' if len(strays) > 3 else ''}): not from this run; "
                           f"move them away, or use --force to delete them")
    for name in strays:
        (out_dir / name).unlink()


def _adopt_orphans(out_dir: Path, manifest: dict, accepted: set[str], force: bool, log) -> set[str]:
    """Shard files with no manifest (it was deleted or lost): keep the ones this job wrote, refuse others.

    A shard is this job's when its ``spec_fingerprint`` attribute is one of the job's (``accepted``), its sample range
    is the plan's and it validates; a job that reads texture libraries is never matched this way
    (a shard does not record which version of a library it used). Returns the files taken in.
    """
    orphans = sorted(out_dir.glob(SHARD_PATTERN))
    records = {r["file"]: r for r in manifest["shards"]}
    foreign = []
    for path in orphans:
        record = records.get(path.name)
        info = _own_shard(path, record, manifest, accepted) if record and not manifest["textures"] else None
        if info is None:
            foreign.append(path)
        else:
            record.update(checksum=info.checksum, bytes=info.bytes)
    if foreign and not force:
        raise DatagenError(f"{out_dir} has no {MANIFEST} but holds {len(foreign)} shard files this job did not "
                           f"write ({', '.join(p.name for p in foreign[:3])}{', ...' if len(foreign) > 3 else ''}); "
                           f"use another --out, or --force to delete them")
    for path in foreign:
        path.unlink()
    if len(orphans) > len(foreign):
        log(f"{out_dir}: no {MANIFEST}; took in {len(orphans) - len(foreign)} shards this job had written")
    return {path.name for path in orphans if path not in foreign}


def _own_shard(path: Path, record: dict, manifest: dict, accepted: set[str]):
    """The shard's ShardInfo if this job wrote it (and it validates), else None.

    This job's: its ``spec_fingerprint`` is one of the job's (``manifest.accepted_fingerprints``); a shard from before that attribute existed
    counts when its job text, seed and model checksum are the job's.
    """
    try:
        with h5py.File(path, "r") as f:
            attrs = dict(f.attrs)
        fingerprint = attrs.get("spec_fingerprint")
        if fingerprint is None:
            same = (attrs.get("job_spec") == manifest["job_spec"] and int(attrs.get("seed", -1)) == manifest["seed"]
                    and attrs.get("model_checksum") == manifest["model"]["checksum"])
        else:
            same = fingerprint in accepted
        if not same:
            return None
        info = validate_shard(path)
    except (OSError, ShardError, ValueError, TypeError):
        return None
    if (info.sample_start, info.num_samples) != (record["start"], record["stop"] - record["start"]):
        return None
    return info
