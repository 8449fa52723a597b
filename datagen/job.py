"""Run a job: plan the shards, write the manifest, generate the missing shards on dask, report.

The manifest (``manifest.json``) is written first, so any process can tell what the output
should hold, and rewritten atomically as shards complete. Rerunning a job into the same
output skips every shard that validates against the manifest and regenerates the rest.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from . import __version__
from .errors import DatagenError, ShardError
from .generator import cached_generator
from .models import resolve_model
from .morphable_model import MorphableModel, model_checksum
from .cluster import WorkerSetup, check_batch_system, connect
from .render import is_software
from .shards import ShardWriter, shard_name, validate_shard
from .spec import JobSpec, with_cluster

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
        "textures": texture_fingerprints(spec),
        "seed": spec.seed,
        "num_samples": spec.num_samples,
        "samples_per_shard": spec.output.samples_per_shard,
        "num_shards": spec.num_shards,
        "shards": [{"file": shard_name(i), "start": r.start, "stop": r.stop, "checksum": None, "bytes": None}
                   for i, r in ((i, spec.shard_range(i)) for i in range(spec.num_shards))],
    }


def texture_fingerprints(spec: JobSpec) -> dict:
    """SHA-256 of the index of every texture library the job reads: refitting a library changes the samples."""
    libraries = [spec.photoreal.library] if spec.photoreal.library else list(spec.sampling.appearance.texture_libraries)
    fingerprints = {}
    for library in libraries:
        index = Path(library) / "index.json"
        try:
            fingerprints[library] = hashlib.sha256(index.read_bytes()).hexdigest()
        except OSError:
            raise DatagenError(f"{library}: not a texture library (no index.json); make one with 'datagen fit'") from None
    return fingerprints


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
    """Render and write shard ``shard_index``; returns its manifest record.

    The generator (model, GL context on this worker's GPU) is the worker's cached one, built by
    ``cluster.WorkerSetup`` when the worker joined. A full disk or an unwritable folder is a
    ``DatagenError`` naming the shard; nothing is left behind but what was there before.
    """
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
            "device": generator.device, "software": is_software(ctx), "pid": os.getpid()}


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
    devices: list

    @property
    def samples_per_second(self) -> float:
        generated = self.samples * self.generated / max(self.shards, 1)
        return generated / self.seconds if self.seconds else 0.0


def prepare_output(spec: JobSpec, out_dir: Path, model: MorphableModel, force: bool, log) -> tuple[dict, list[int]]:
    """Write or check the manifest; return it and the shards that still need generating."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        remove_partial_files(out_dir)
        probe = out_dir / ".write-test.partial"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise DatagenError(f"{out_dir}: cannot write the output folder ({e.strerror or e})") from None
    fresh = plan(spec, model)
    if (out_dir / MANIFEST).exists():
        old = read_manifest(out_dir)
        if (old.get("spec_fingerprint") != fresh["spec_fingerprint"] or old.get("model") != fresh["model"]
                or old.get("textures", {}) != fresh["textures"]):
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


def remove_partial_files(out_dir: Path) -> None:
    """Shards a killed or interrupted worker left half-written: never valid, always safe to delete."""
    for stale in out_dir.glob("*.partial"):
        with contextlib.suppress(FileNotFoundError):
            stale.unlink()


def run_job(spec: JobSpec, out_dir: str | Path, model_dir: str | None = None, workers: int | None = None,
            scheduler: str | None = None, force: bool = False, client=None, progress=None,
            log=print) -> RunSummary:
    """Generate the job's dataset into ``out_dir`` on dask (the job's ``[cluster]``: local by default).

    Every shard is one task. Shards that fail (a full disk, a worker that keeps dying) do not stop
    the others; the run then raises one ``DatagenError`` listing them, and running it again
    retries just those. Ctrl-C (KeyboardInterrupt) cancels the tasks and leaves only complete shards.

    Args:
      workers: local worker processes (overrides the job's ``cluster.workers``).
      scheduler: address of an existing dask scheduler (overrides the job's ``[cluster]``).
      client: an existing ``distributed.Client`` to run on instead of the job's ``[cluster]``.
      progress: callable(samples_just_finished) for a progress bar.
      log: callable(str) for one-line messages.
    """
    if workers is not None:
        spec = with_cluster(spec, workers=workers)
    if scheduler:
        spec = with_cluster(spec, kind="scheduler", scheduler=scheduler)
    if client is None:
        check_batch_system(spec.cluster)
    out_dir = Path(out_dir)
    started = time.perf_counter()
    model = resolve_model(spec.model.name, model_dir)
    manifest, todo = prepare_output(spec, out_dir, model, force, log)
    skipped = spec.num_shards - len(todo)
    if skipped:
        log(f"resuming: {skipped} of {spec.num_shards} shards already complete")
        if progress:
            progress(sum(s["stop"] - s["start"] for i, s in enumerate(manifest["shards"]) if i not in todo))
    devices, retries, failures = [], 0, {}
    if todo:
        run = contextlib.nullcontext(client) if client is not None else connect(spec.cluster, log)
        try:
            with run as client:
                futures = _submit(client, spec, todo, out_dir, model_dir, manifest["spec_fingerprint"])
                for future in _completed(client, futures):
                    i = futures[future]
                    if future.status != "finished":
                        failures[i] = (_failure_message(future.exception(), out_dir / shard_name(i))
                                       if future.status == "error" else f"its task was {future.status}")
                        continue
                    record = future.result()
                    if record["device"] not in devices:
                        devices.append(record["device"])
                        log(f"rendering on {record['device']}")
                    manifest["shards"][i].update(checksum=record["checksum"], bytes=record["bytes"])
                    write_manifest(out_dir, manifest)
                    if progress:
                        progress(record["stop"] - record["start"])
                retries = _retries(client, futures)
        finally:
            if spec.cluster.kind == "local":
                remove_partial_files(out_dir)  # its workers are gone now; a remote straggler cleans up itself
    if failures:
        raise DatagenError(_failure_report(failures, len(todo)))
    return RunSummary(out_dir=out_dir, samples=spec.num_samples, shards=spec.num_shards, skipped=skipped,
                      generated=len(todo), bytes=sum(s["bytes"] or 0 for s in manifest["shards"]),
                      seconds=time.perf_counter() - started, retries=retries, devices=devices)


def _submit(client, spec, todo, out_dir, model_dir, fingerprint) -> dict:
    """One task per shard, after every worker (and every worker that joins later) has set itself up."""
    model_dir = str(Path(model_dir).resolve()) if model_dir else None
    try:
        client.register_plugin(WorkerSetup(spec, model_dir), name=f"datagen-setup-{fingerprint[:12]}")
    except DatagenError:
        raise
    except Exception as e:  # e.g. a worker without the model or an EGL driver
        raise DatagenError(f"a dask worker could not set up: {type(e).__name__}: {e}") from None
    return {client.submit(generate_shard, spec, i, str(out_dir.resolve()), model_dir,
                          key=f"{spec.name}-{shard_name(i)}-{fingerprint[:8]}", retries=TASK_RETRIES,
                          pure=False): i for i in todo}


def _completed(client, futures):
    """The futures as they finish; on Ctrl-C or any error here, the rest are cancelled first."""
    from distributed import as_completed

    try:
        yield from as_completed(futures)
    except BaseException:
        client.cancel(list(futures))
        raise


def _failure_message(error: BaseException, path: Path) -> str:
    """Why a shard failed, without its path (the report names the shards), so that causes group."""
    from distributed.scheduler import KilledWorker

    if isinstance(error, KilledWorker):
        return "its worker process died on every try (out of memory, or a crash in the GL driver?)"
    text = str(error) if isinstance(error, DatagenError) else f"{type(error).__name__}: {error}"
    for prefix in (f"{path.resolve()}: ", f"{path}: ", f"{path.name}: "):
        text = text.replace(prefix, "")
    return text


def _failure_report(failures: dict, attempted: int) -> str:
    """One message for every failed shard: the distinct causes, each with the shards it hit."""
    by_cause: dict[str, list[str]] = {}
    for i in sorted(failures):
        by_cause.setdefault(failures[i], []).append(shard_name(i))
    causes = "; ".join(f"{', '.join(names[:3])}{' and %d more' % (len(names) - 3) if len(names) > 3 else ''}: "
                       f"{cause}" for cause, names in by_cause.items())
    return (f"{len(failures)} of {attempted} shards failed ({causes}). Completed shards are kept; "
            f"run the same command again to retry the failed ones")


def _retries(client, futures) -> int:
    """Task re-runs: errors retried (``retries=``) plus runs lost with a dead worker (``suspicious``)."""
    keys = [f.key for f in futures]

    def count(dask_scheduler, keys=keys, allowed=TASK_RETRIES):
        tasks = (dask_scheduler.tasks.get(k) for k in keys)
        return sum((allowed - t.retries) + t.suspicious for t in tasks if t is not None)

    return int(client.run_on_scheduler(count))
