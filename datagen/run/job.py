"""Run a job: plan the shards, write the manifest, generate the missing shards on dask, report.

The manifest (``manifest.json``) is written first, so any process can tell what the output
should hold, and rewritten atomically as shards complete. Rerunning a job into the same
output skips every shard that validates against the manifest and regenerates the rest.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from pathlib import Path

from ..data.manifest import shard_name, write_manifest
from ..data.shards import ShardWriter
from ..errors import DatagenError, DiskFullError
from ..files import remove_partial_files
from ..models.morphable_model import MorphableModel
from ..models.registry import resolve_model
from ..spec import JobSpec, with_cluster
from .generator import background_images, cached_generator
from ..photo.library_sources import libraries_without_detail
from ..synth.geometry import check_props
from ..synth.gpus import is_software
from .cluster import WorkerSetup, check_batch_system, connect
from .locking import OutputLock
from .output import prepare_output

__all__ = ["JobCheck", "RunSummary", "check_job", "default_output", "generate_shard", "run_job", "shard_task"]

TASK_RETRIES = 2


@dataclass(frozen=True)
class JobCheck:
    """What ``check_job`` found: the job can run, and what it will read."""

    model: MorphableModel
    texture_entries: int
    background_images: int


def check_job(spec: JobSpec, model_dir: str | None = None) -> JobCheck:
    """Check everything a run of ``spec`` reads, before any work (``datagen check``): the model is
    installed and loads, each texture library exists, was fitted with this model and has entries,
    and the background folder holds images. Raises one ``DatagenError`` saying what is wrong."""
    from ..photo.library import checked_library
    from ..photo.library_sources import detail_libraries, library_lights

    model = resolve_model(spec.model_reference(), model_dir, download=False)
    check_props(spec, model)
    entries = sum(len(checked_library(path, model)["entries"]) for _, path in spec.texture_libraries())
    library_lights(spec.lighting_libraries())  # raises on a missing, corrupt or empty library
    for path in detail_libraries(spec):
        checked_library(path, model)
    return JobCheck(model=model, texture_entries=entries, background_images=len(background_images(spec)))


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
            for batch in generator.batches(samples):  # the device draws batch b + 1 while batch b is written
                writer.write(batch)
    except OSError as e:
        raise DatagenError(f"{path}: cannot write the shard ({e.strerror or e})") from None
    ctx = generator.renderer.ctx
    return {"file": path.name, "start": samples.start, "stop": samples.stop, "checksum": writer.checksum,
            "bytes": path.stat().st_size, "seconds": time.perf_counter() - started,
            "device": generator.device, "software": is_software(ctx), "pid": os.getpid()}


def shard_task(spec: JobSpec, shard_index: int, out_dir: str, model_dir: str | None) -> dict:
    """``generate_shard`` as a dask task: a full disk is returned as ``{"disk_full": message}``, not
    raised, since dask retries raised errors and a full disk fails every retry the same way."""
    try:
        return generate_shard(spec, shard_index, out_dir, model_dir)
    except DiskFullError as e:
        return {"file": shard_name(shard_index), "disk_full": str(e)}


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


def run_job(spec: JobSpec, out_dir: str | Path, model_dir: str | None = None, workers: int | None = None,
            scheduler: str | None = None, force: bool = False, client=None, progress=None,
            log=print, cluster_kind: str | None = None, jobs: int | None = None) -> RunSummary:
    """Generate the job's dataset into ``out_dir`` on dask (the job's ``[cluster]``: local by default).

    Every shard is one task. Shards that fail (a worker that keeps dying, an error) do not stop
    the others; the run then raises one ``DatagenError`` listing them, and running it again
    retries just those. A full disk (or quota, or a read-only file system) stops the run at the
    first shard it hits, without retries. Ctrl-C (KeyboardInterrupt) cancels the tasks and
    leaves only complete shards. One run at a time holds ``out_dir`` (``locking.OutputLock``).

    Args:
      workers: local worker processes (overrides the job's ``cluster.workers``).
      scheduler: address of an existing dask scheduler (overrides the job's ``[cluster]``; implies
        ``cluster_kind="scheduler"`` unless that is given).
      cluster_kind, jobs: override the job's ``cluster.kind`` and, for slurm/pbs, ``cluster.jobs``.
      client: an existing ``distributed.Client`` to run on instead of the job's ``[cluster]``.
      progress: callable(samples_just_finished) for a progress bar, or an object with
        ``update(samples)`` and ``skip(samples)`` (``datagen.progress.Progress``), which is told
        apart the samples a resumed run found complete.
      log: callable(str) for one-line messages.
    """
    changes = {"kind": cluster_kind or ("scheduler" if scheduler else None), "workers": workers, "jobs": jobs,
               "scheduler": scheduler}
    if any(v is not None for v in changes.values()):
        spec = with_cluster(spec, **{k: v for k, v in changes.items() if v is not None})
    if client is None:
        check_batch_system(spec.cluster)
    out_dir = Path(out_dir)
    started = time.perf_counter()
    model = resolve_model(spec.model_reference(), model_dir)
    for note in libraries_without_detail(spec):
        log(note)
    _make_output_folder(out_dir)
    with OutputLock(out_dir):
        manifest, todo = prepare_output(spec, out_dir, model, force, log)
        skipped = spec.num_shards - len(todo)
        if skipped:
            log(f"resuming: {skipped} of {spec.num_shards} shards already complete")
            _report(progress, sum(s["stop"] - s["start"] for i, s in enumerate(manifest["shards"]) if i not in todo),
                    skipped=True)
        devices, retries = [], 0
        if todo:
            run = contextlib.nullcontext(client) if client is not None else connect(spec.cluster, log)
            try:
                with run as client:
                    devices, retries = _run_shards(client, spec, todo, out_dir, model_dir, manifest, progress, log)
            finally:
                if spec.cluster.kind == "local":
                    remove_partial_files(out_dir)  # its workers are gone now; a remote straggler cleans up itself
    return RunSummary(out_dir=out_dir, samples=spec.num_samples, shards=spec.num_shards, skipped=skipped,
                      generated=len(todo), bytes=sum(s["bytes"] or 0 for s in manifest["shards"]),
                      seconds=time.perf_counter() - started, retries=retries, devices=devices)


def default_output(spec: JobSpec) -> Path:
    """Where ``datagen generate`` writes a job without ``--out``: data/<job name>."""
    return Path("data") / spec.name


def _make_output_folder(out_dir: Path) -> None:
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = out_dir / f".write-test-{os.getpid()}.partial"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise DatagenError(f"{out_dir}: cannot write the output folder ({e.strerror or e})") from None


def _report(progress, samples: int, skipped: bool = False) -> None:
    if progress is None:
        return
    if hasattr(progress, "update"):
        (progress.skip if skipped else progress.update)(samples)
    else:
        progress(samples)


def _run_shards(client, spec, todo, out_dir, model_dir, manifest, progress, log) -> tuple[list, int]:
    """Submit the shards, record each as it completes; raise one DatagenError for all that failed."""
    futures = _submit(client, spec, todo, out_dir, model_dir, manifest["spec_fingerprint"])
    completed = _completed(client, futures)
    try:
        devices, failures, disk_full = _collect(completed, futures, out_dir, manifest, progress, log)
    finally:
        completed.close()  # cancels the tasks still queued or running
    retries = _retries(client, futures)
    if disk_full:
        done = sum(1 for s in manifest["shards"] if s["checksum"])
        raise DiskFullError(f"the output's disk is full, so the run stopped: {disk_full}. {done} of "
                            f"{len(manifest['shards'])} shards are complete and kept; free some space (or choose "
                            f"another --out) and run the same command again")
    if failures:
        raise DatagenError(_failure_report(failures, len(todo)))
    return devices, retries


def _collect(completed, futures, out_dir, manifest, progress, log) -> tuple[list, dict, str | None]:
    """(devices rendered on, failure per shard, why the disk is full or None) as the shards complete.

    Stops at the first full-disk error: every shard after it would fail the same way."""
    devices, failures = [], {}
    for future in completed:
        i = futures[future]
        if future.status != "finished":
            failures[i] = (_failure_message(future.exception(), out_dir / shard_name(i))
                           if future.status == "error" else f"its task was {future.status}")
            continue
        record = future.result()
        if "disk_full" in record:
            return devices, failures, f"{shard_name(i)}: {_failure_message(DiskFullError(record['disk_full']), out_dir / shard_name(i))}"
        if record["device"] not in devices:
            devices.append(record["device"])
            log(f"rendering on {record['device']}")
        manifest["shards"][i].update(checksum=record["checksum"], bytes=record["bytes"])
        try:
            write_manifest(out_dir, manifest)
        except DiskFullError as e:  # the shard is whole on disk; the next run takes it in (prepare_output)
            manifest["shards"][i].update(checksum=None, bytes=None)
            return devices, failures, str(e)
        _report(progress, record["stop"] - record["start"])
    return devices, failures, None


def _submit(client, spec, todo, out_dir, model_dir, fingerprint) -> dict:
    """One task per shard, after every worker (and every worker that joins later) has set itself up."""
    model_dir = str(Path(model_dir).resolve()) if model_dir else None
    try:
        client.register_plugin(WorkerSetup(spec, model_dir), name=f"datagen-setup-{fingerprint[:12]}")
    except DatagenError:
        raise
    except Exception as e:  # e.g. a worker without the model or an EGL driver
        raise DatagenError(f"a dask worker could not set up: {type(e).__name__}: {e}") from None
    return {client.submit(shard_task, spec, i, str(out_dir.resolve()), model_dir,
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
