"""``datagen fit`` on the cluster: photos fitted into a texture library, resumable and kill-safe.

The photos are split into tasks of ``photos_per_task``. Each worker sets up one ``PhotoFitter``
(GL context, model, landmark detector) for its first task and writes every photo's entry folder
whole (``TextureLibrary.write_entry``); this process indexes the entries as their tasks come
back, rewriting ``index.json`` and ``catalogue.npz`` at most every ``INDEX_EVERY_S`` seconds and
at the end, also after Ctrl-C or SIGTERM. Running the same command again skips the photos that
are in the library already and those that could not be fitted (no face, unreadable: remembered
in ``skipped.json`` with their size and time; ``refit`` tries them all again), and first indexes
any entry a killed run wrote but did not index. One run at a time holds the library (``locking.OutputLock``). A local
cluster of one worker fits in this process (no dask start-up).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DatagenError, PhotoError
from ..files import PARTIAL, atomic_write_text
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


def entry_names(files: list[Path], library: dict[str, str] | None = None) -> list[str]:
    """A library entry name per photo (absolute paths): its file name without suffix, unless that
    name is another photo's (in ``library``: {name: source}, or earlier in ``files`` sorted by
    path): then ``-`` and six hex digits of its path are added. The same photos get the same
    names in any order and any run."""
    taken = dict(library or {})
    names = {}
    for path in sorted(files, key=str):
        name = path.stem
        if taken.get(name, str(path)) != str(path):
            name = f"{name}-{hashlib.sha1(str(path).encode()).hexdigest()[:6]}"
        taken.setdefault(name, str(path))
        names[path] = name
    return [names[path] for path in files]


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
            result.update(record=target.write_entry(fitted), landmark_source=fitted.landmark_source,
                          photometric=fitted.photometric)
        except (LandmarkError, PhotoError) as e:  # the photo's own: the next run need not try it again
            result.update(skipped=str(e), permanent=True)
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
    files = [f.resolve() for f in photo_files(photos)]
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
        present = {e["name"]: str(Path(e.get("source", "")).resolve())
                   for e in target.index_entries(loaded, rescan=True)["entries"]}
        failed = {} if refit else _skipped_before(library)
        names = entry_names(files, present)
        todo = [(str(f), n) for f, n in zip(files, names) if refit or (n not in present and failed.get(str(f)) != _stamp(f))]
        summary.kept = 0 if refit else sum(n in present for n in names)
        if len(files) - len(todo):
            log(f"resuming: {summary.kept} of {len(files)} photos are in {library} already"
                + (f", {len(files) - len(todo) - summary.kept} could not be fitted before (--refit tries them "
                   f"again)" if len(files) - len(todo) > summary.kept else ""))
        pending, flush = [], {"at": time.perf_counter(), "every": INDEX_EVERY_S}

        def take(results):
            for r in results:
                outcome = FitOutcome(Path(r["photo"]), r["seconds"], r.get("record"), r.get("landmark_source", ""),
                                     r.get("skipped", ""), r.get("photometric"))
                if outcome.record:
                    pending.append(outcome.record)
                    summary.fitted += 1
                else:
                    summary.skipped.append(outcome.skipped)
                    if r.get("permanent"):
                        failed[r["photo"]] = _stamp(Path(r["photo"]))
                if on_outcome:
                    on_outcome(outcome)
            if pending and time.perf_counter() - flush["at"] > flush["every"]:
                began = time.perf_counter()
                target.index_entries(loaded, pending)
                pending.clear()
                # a large library's index takes seconds to write: keep that under a tenth of the run
                flush.update(at=time.perf_counter(), every=max(INDEX_EVERY_S, 10 * (time.perf_counter() - began)))

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
            # with a rescan: entries of a task that died after writing some are indexed too
            summary.entries = len(target.index_entries(loaded, pending, rescan=True)["entries"])
            _write_skipped(library, failed)
    summary.seconds = time.perf_counter() - started
    return summary


SKIPPED = "skipped.json"  # photos that could not be fitted (no face, unreadable): {path: [mtime, size]}


def _stamp(path: Path) -> list:
    try:
        status = path.stat()
    except OSError:
        return []
    return [status.st_mtime, status.st_size]


def _skipped_before(library: Path) -> dict:
    try:
        return json.loads((library / SKIPPED).read_text())
    except (OSError, ValueError):
        return {}


def _write_skipped(library: Path, failed: dict) -> None:
    with contextlib.suppress(OSError):  # only a saving: the next run would try those photos again
        atomic_write_text(library / SKIPPED, json.dumps(failed, indent=1, sort_keys=True))


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
    """Entry folders (and files) a killed writer left half-written: never valid, safe to delete.
    A complete entry moved aside for its replacement (``name.<8 hex>.partial.old``) is moved back
    if the replacement never arrived."""
    for stale in library.glob(f"*{PARTIAL}.old"):
        original = library / re.sub(rf"\.[0-9a-f]{{8}}{re.escape(PARTIAL)}\.old$", "", stale.name)
        if original != stale and not original.exists() and (stale / "fit.json").exists():
            os.replace(stale, original)
    for stale in [*library.glob(f"*{PARTIAL}"), *library.glob(f"*{PARTIAL}.old")]:
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(stale) if stale.is_dir() else stale.unlink()
