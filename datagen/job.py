"""Run a job: plan the shards, write the manifest, generate the missing shards on dask, report.

The manifest (``manifest.json``) is written first, so any process can tell what the output
should hold, and rewritten atomically as shards complete. Rerunning a job into the same
output skips every shard that validates against the manifest and regenerates the rest.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from . import __version__
from .errors import DatagenError, ShardError
from .generator import cached_generator
from .models import resolve_model
from .morphable_model import MorphableModel, model_checksum
from .render import describe_context, is_software
from .shards import ShardWriter, shard_name, validate_shard
from .spec import JobSpec

MANIFEST = "manifest.json"
TASK_RETRIES = 2


def spec_fingerprint(spec: JobSpec) -> str:
    """What makes two jobs produce the same samples: everything but where and how fast they run."""
    content = dataclasses.asdict(spec)
    for key in ("cluster", "source_text", "source_path"):
        content.pop(key)
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def plan(spec: JobSpec, model: MorphableModel) -> dict:
    """The manifest of a job before any shard exists."""
    return {
        "format": "datagen-shards",
        "schema_version": 1,
        "datagen_version": __version__,
        "name": spec.name,
        "job_spec": spec.source_text,
        "spec_fingerprint": spec_fingerprint(spec),
        "model": {"name": model.name, "job_model": spec.model.name, "checksum": model_checksum(model),
                  "licence": model.licence},
        "seed": spec.seed,
        "num_samples": spec.num_samples,
        "samples_per_shard": spec.output.samples_per_shard,
        "num_shards": spec.num_shards,
        "shards": [{"file": shard_name(i), "start": r.start, "stop": r.stop, "checksum": None, "bytes": None}
                   for i, r in ((i, spec.shard_range(i)) for i in range(spec.num_shards))],
    }


def read_manifest(out_dir: str | Path) -> dict:
    path = Path(out_dir) / MANIFEST
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ShardError(f"{out_dir}: no {MANIFEST}; not a datagen dataset") from None
    except ValueError as e:
        raise ShardError(f"{path}: corrupt manifest ({e})") from None


def write_manifest(out_dir: str | Path, manifest: dict) -> None:
    path = Path(out_dir) / MANIFEST
    tmp = path.with_name(MANIFEST + ".partial")
    tmp.write_text(json.dumps(manifest, indent=1))
    os.replace(tmp, path)


# --- one task: one shard (runs in a dask worker process)


def generate_shard(spec: JobSpec, shard_index: int, out_dir: str, model_dir: str | None) -> dict:
    """Render and write shard ``shard_index``; returns its manifest record."""
    generator = cached_generator(spec, model_dir)
    samples = spec.shard_range(shard_index)
    path = Path(out_dir) / shard_name(shard_index)
    started = time.perf_counter()
    try:
        with ShardWriter(path, spec, generator.model, shard_index, samples) as writer:
            batch = spec.cluster.batch_size
            for start in range(samples.start, samples.stop, batch):
                writer.write(generator.generate(range(start, min(start + batch, samples.stop))))
    except OSError as e:
        raise DatagenError(f"{path}: cannot write the shard ({e.strerror or e})") from None
    ctx = generator.renderer.ctx
    return {"file": path.name, "start": samples.start, "stop": samples.stop, "checksum": writer.checksum,
            "bytes": path.stat().st_size, "seconds": time.perf_counter() - started,
            "renderer": describe_context(ctx), "software": is_software(ctx), "pid": os.getpid()}


# --- the client


@dataclass
class RunSummary:
    out_dir: Path
    samples: int
    shards: int
    skipped: int
    generated: int
    bytes: int
    seconds: float
    retries: int
    renderer: str

    @property
    def samples_per_second(self) -> float:
        generated = self.samples * self.generated / max(self.shards, 1)
        return generated / self.seconds if self.seconds else 0.0


def prepare_output(spec: JobSpec, out_dir: Path, model: MorphableModel, force: bool, log) -> tuple[dict, list[int]]:
    """Write or check the manifest; return it and the shards that still need generating."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        for stale in out_dir.glob("*.partial"):
            stale.unlink()  # left by a killed worker; never a valid shard
        probe = out_dir / ".write-test.partial"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise DatagenError(f"{out_dir}: cannot write the output folder ({e.strerror or e})") from None
    fresh = plan(spec, model)
    if (out_dir / MANIFEST).exists():
        old = read_manifest(out_dir)
        if old.get("spec_fingerprint") != fresh["spec_fingerprint"] or old.get("model") != fresh["model"]:
            if not force:
                raise DatagenError(f"{out_dir} holds a different job ('{old.get('name')}'); use another --out, "
                                   f"or --force to discard its shards and start again")
            for shard in out_dir.glob("shard-*.h5"):
                shard.unlink()
        else:
            fresh["shards"] = old["shards"]
    write_manifest(out_dir, fresh)
    todo = []
    for i, record in enumerate(fresh["shards"]):
        path = out_dir / record["file"]
        if record["checksum"] and path.exists():
            try:
                validate_shard(path, record["checksum"])
                continue
            except ShardError as e:
                log(f"regenerating {e}")
        elif path.exists():
            path.unlink()  # not in the manifest as complete: from an interrupted run
        record["checksum"] = record["bytes"] = None
        todo.append(i)
    write_manifest(out_dir, fresh)
    return fresh, todo


def run_job(spec: JobSpec, out_dir: str | Path, model_dir: str | None = None, workers: int | None = None,
            scheduler: str | None = None, force: bool = False, progress=None, log=print) -> RunSummary:
    """Generate the job's dataset into ``out_dir`` on a dask cluster (local by default).

    Args:
      workers: local worker processes (default: the job's cluster.workers, 0 = one per core).
      scheduler: address of an existing dask scheduler, instead of a local cluster.
      progress: callable(samples_just_finished) for a progress bar.
      log: callable(str) for one-line messages.
    """
    from distributed import as_completed

    out_dir = Path(out_dir)
    started = time.perf_counter()
    model = resolve_model(spec.model.name, model_dir)
    manifest, todo = prepare_output(spec, out_dir, model, force, log)
    skipped = spec.num_shards - len(todo)
    if skipped:
        log(f"resuming: {skipped} of {spec.num_shards} shards already complete")
        if progress:
            progress(sum(manifest["shards"][i]["stop"] - manifest["shards"][i]["start"]
                         for i in range(spec.num_shards) if i not in todo))
    renderer, retries = "", 0
    if todo:
        with _client(spec, workers, scheduler, log) as client:
            futures = {client.submit(generate_shard, spec, i, str(out_dir.resolve()), _abs(model_dir),
                                     key=f"{spec.name}-{shard_name(i)}-{manifest['spec_fingerprint'][:8]}",
                                     retries=TASK_RETRIES, pure=False): i for i in todo}
            for future in as_completed(futures):
                i = futures[future]
                try:
                    record = future.result()
                except DatagenError:
                    raise
                except Exception as e:  # a worker's error, re-raised here by dask
                    raise DatagenError(f"{shard_name(i)} failed: {type(e).__name__}: {e}") from None
                if not renderer:
                    renderer = record["renderer"]
                    log(f"rendering on {renderer}" + (" (software: no GPU EGL device)" if record["software"] else ""))
                manifest["shards"][i].update(checksum=record["checksum"], bytes=record["bytes"])
                write_manifest(out_dir, manifest)
                if progress:
                    progress(record["stop"] - record["start"])
            retries = _retries(client, futures)
    return RunSummary(out_dir=out_dir, samples=spec.num_samples, shards=spec.num_shards, skipped=skipped,
                      generated=len(todo), bytes=sum(s["bytes"] or 0 for s in manifest["shards"]),
                      seconds=time.perf_counter() - started, retries=retries, renderer=renderer)


def _abs(model_dir):
    return str(Path(model_dir).resolve()) if model_dir else None


def _retries(client, futures) -> int:
    """Task re-runs: errors retried (``retries=``) plus runs lost with a dead worker (``suspicious``)."""
    keys = [f.key for f in futures]

    def count(dask_scheduler, keys=keys, allowed=TASK_RETRIES):
        tasks = (dask_scheduler.tasks.get(k) for k in keys)
        return sum((allowed - t.retries) + t.suspicious for t in tasks if t is not None)

    return int(client.run_on_scheduler(count))


class _client:
    """A dask Client on an existing scheduler, or on a LocalCluster of single-threaded worker processes."""

    def __init__(self, spec: JobSpec, workers, scheduler, log):
        self.spec, self.workers, self.scheduler, self.log = spec, workers, scheduler, log
        self.cluster = None

    def __enter__(self):
        from distributed import Client, LocalCluster

        address = self.scheduler or (self.spec.cluster.scheduler if self.spec.cluster.kind == "scheduler" else None)
        if address:
            self.client = Client(address)
        else:
            n = self.workers if self.workers is not None else self.spec.cluster.workers
            n = n or os.cpu_count() or 1
            # One single-threaded process per worker: one GL context each, no GIL contention. Mesa's
            # llvmpipe would start one render thread per core in every worker; share the cores instead.
            env = {"LP_NUM_THREADS": os.environ.get("LP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // n)))}
            self.cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, env=env,
                                        silence_logs=logging.ERROR, dashboard_address=":0")
            self.client = Client(self.cluster)
        self.log(f"dask: {len(self.client.scheduler_info()['workers'])} workers, dashboard {self.client.dashboard_link}")
        return self.client

    def __exit__(self, *exc):
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()
        return False
