"""``datagen fit`` on the cluster: photos fitted into a texture library, resumable and kill-safe.

The photos are split into tasks of ``photos_per_task``. Each worker sets up one ``PhotoFitter``
(GL context, model, landmark detector) for its first task and writes every photo's entry folder
whole (``TextureLibrary.write_entry``); this process indexes the entries as their tasks come
back, rewriting ``index.json`` and ``catalogue.npz`` at most every ``INDEX_EVERY_S`` seconds and
at the end, also after Ctrl-C or SIGTERM. Running the same command again skips the photos that
are in the library already (``refit`` fits them again) and first indexes any entry a killed run
wrote but did not index. One run at a time holds the library (``locking.OutputLock``). A local
cluster of one worker fits in this process (no dask start-up).
"""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DatagenError, PhotoError
from ..files import PARTIAL
from ..models.registry import resolve_model
from ..photo.fitter import FitOutcome, PhotoFitter, photo_files
from ..photo.landmarks import LandmarkError
from ..photo.library import TextureLibrary
from ..spec import ClusterSpec
from .cluster import connect, local_worker_count
from .locking import OutputLock

INDEX_EVERY_S = 20.0
TASK_RETRIES = 2


@dataclass
class FitSummary:
    """What ``fit_library`` did: photos fitted now, kept (already in the library), skipped (why)."""

    library: Path
    fitted: int = 0
    kept: int = 0
    skipped: list = field(default_factory=list)
    seconds: float = 0.0
    entries: int = 0  # in the library at the end

    @property
    def photos_per_second(self) -> float:
        return self.fitted / self.seconds if self.seconds else 0.0


def entry_names(files: list[Path]) -> list[str]:
    """A library entry name per photo: its file name without suffix; when two photos share one,
    the later ones get ``-`` and six hex digits of their path (stable across runs)."""
    names, seen = [], set()
    for path in files:
        name = path.stem
        if name in seen:
            name = f"{name}-{hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:6]}"
        seen.add(name)
        names.append(name)
    return names


_per_thread = threading.local()


def _fitter(model: str, model_dir: str | None) -> PhotoFitter:
    """One fitter per thread and model (a GL context is current in the thread that made it)."""
    cache = _per_thread.__dict__.setdefault("fitters", {})
    if (model, model_dir) not in cache:
        cache[(model, model_dir)] = PhotoFitter(resolve_model(model, model_dir, download=False))
    return cache[(model, model_dir)]


def fit_task(items, library: str, model: str, model_dir: str | None, landmarks: str | None,
             detect: bool) -> list[dict]:
    """Fit ``items`` ((photo path, entry name) pairs) and write their entries into ``library``;
    one result per photo: its index record, or why it was skipped."""
    fitter, target, results = _fitter(model, model_dir), TextureLibrary(library), []
    for photo, name in items:
        started = time.perf_counter()
        result = {"photo": photo}
        try:
            fitted = fitter.fit(photo, landmarks, detect=detect, name=name)
            result.update(record=target.write_entry(fitted), landmark_source=fitted.landmark_source)
        except (LandmarkError, PhotoError) as e:
            result["skipped"] = str(e)
        except DatagenError:
            raise  # the library cannot be written (a full disk): not one photo's fault
        except Exception as e:  # a fit that fails for an unforeseen reason must not end the batch
            result["skipped"] = f"{photo}: fitting failed ({type(e).__name__}: {e})"
        result["seconds"] = time.perf_counter() - started
        results.append(result)
    return results


def fit_library(photos, library: str | Path, model: str = "ict-facekit", model_dir: str | None = None,
                landmarks: str | Path | None = None, detect: bool = True, cluster: ClusterSpec | None = None,
                refit: bool = False, photos_per_task: int = 8, on_outcome=None, log=print) -> FitSummary:
    """Fit ``photos`` (files or folders) into the texture library at ``library`` on ``cluster``
    (a local dask cluster by default; see the module doc). ``on_outcome(FitOutcome)`` is called
    for every photo as its task comes back; a photo that cannot be read or fitted is skipped
    (its outcome says why) and the rest go on."""
    cluster = cluster or ClusterSpec()
    files = photo_files(photos)
    if landmarks and len(files) != 1:
        raise PhotoError("a landmark file names the landmarks of one photo; give exactly one photo with it")
    started, library = time.perf_counter(), Path(library)
    loaded = resolve_model(model, model_dir)
    target = TextureLibrary(library)
    target.check_model(loaded)
    library.mkdir(parents=True, exist_ok=True)
    summary = FitSummary(library)
    with OutputLock(library):
        _remove_partial_entries(library)
        present = {e["name"] for e in target.index_entries(loaded, rescan=True)["entries"]}
        todo = [(str(f), n) for f, n in zip(files, entry_names(files)) if refit or n not in present]
        summary.kept = len(files) - len(todo)
        if summary.kept:
            log(f"resuming: {summary.kept} of {len(files)} photos are in {library} already")
        pending, flushed = [], [time.perf_counter()]

        def take(results):
            for r in results:
                outcome = FitOutcome(Path(r["photo"]), r["seconds"], r.get("record"), r.get("landmark_source", ""),
                                     r.get("skipped", ""))
                if outcome.record:
                    pending.append(outcome.record)
                    summary.fitted += 1
                else:
                    summary.skipped.append(outcome.skipped)
                if on_outcome:
                    on_outcome(outcome)
            if pending and time.perf_counter() - flushed[0] > INDEX_EVERY_S:
                target.index_entries(loaded, pending)
                pending.clear()
                flushed[0] = time.perf_counter()

        chunks = [todo[i:i + photos_per_task] for i in range(0, len(todo), photos_per_task)]
        arguments = (str(library), model, model_dir, str(landmarks) if landmarks else None, detect)
        try:
            if cluster.kind == "local" and local_worker_count(cluster)[0] == 1:
                for chunk in chunks:
                    take(fit_task(chunk, *arguments))
            elif chunks:
                _fit_on_dask(cluster, chunks, arguments, take, log)
        finally:
            if cluster.kind == "local":  # its workers are gone now; a remote straggler's is removed next run
                _remove_partial_entries(library)
            summary.entries = len(target.index_entries(loaded, pending)["entries"])
    summary.seconds = time.perf_counter() - started
    return summary


def _fit_on_dask(cluster: ClusterSpec, chunks, arguments, take, log) -> None:
    from distributed import as_completed

    with connect(cluster, log) as client:
        futures = {client.submit(fit_task, chunk, *arguments, retries=TASK_RETRIES, pure=False): chunk
                   for chunk in chunks}
        try:
            for future in as_completed(futures):
                try:
                    take(future.result())
                except DatagenError:
                    raise
                except Exception as e:  # the task's worker kept dying: its photos are skipped, not lost
                    take([{"photo": p, "seconds": 0.0, "skipped": f"{p}: its fitting task failed ({type(e).__name__}: "
                                                                  f"{e}); run the same command again to retry it"}
                          for p, _ in futures[future]])
        finally:
            client.cancel(list(futures))


def _remove_partial_entries(library: Path) -> None:
    """Entry folders (and files) a killed writer left half-written: never valid, safe to delete."""
    for stale in [*library.glob(f"*{PARTIAL}"), *library.glob(f"*{PARTIAL}.old")]:
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(stale) if stale.is_dir() else stale.unlink()
