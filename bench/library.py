"""Texture libraries at scale: fitting throughput with 1 and 2 workers, and a large library's
index, listing, catalogue and entry reads (memory bounded by the LRU).

    python bench/library.py --entries 10000 --work /tmp/libbench --shared ../shared

The large library is made from one fitted photo: its entry's files are hard-linked into
``--entries`` entry folders (each with its own fit.json), so it costs no disk; reading an entry
then reads the same bytes as a real one would. Prints medians.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from datagen.models.registry import resolve_model
from datagen.photo.library import PhotoCatalogue, TextureLibrary
from datagen.run.fit_job import fit_library
from datagen.spec import ClusterSpec


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


def fitting_rates(shared: Path, work: Path, photos: int, model_dir) -> None:
    folder = work / "photos"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for k in range(photos):
        for suffix in (".ppm", ".pts"):
            os.link(shared / "faces" / f"takeo{suffix}", folder / f"takeo{k}{suffix}")
    for workers in (1, 2):
        library = work / f"fit-{workers}"
        shutil.rmtree(library, ignore_errors=True)
        summary = fit_library([folder], library, "ict-facekit", model_dir, cluster=ClusterSpec(workers=workers),
                              log=lambda m: None)
        print(f"fit {photos} photos (.pts landmarks), {workers} worker{'s' * (workers > 1)}: "
              f"{summary.photos_per_second:.2f} photos/s ({summary.seconds:.1f} s, dask start-up included"
              f"{'' if workers > 1 else '; in this process'})")


def large_library(work: Path, entries: int, model) -> Path:
    source = work / "fit-1"
    first = TextureLibrary(source).names()[0]
    library = work / f"large-{entries}"
    shutil.rmtree(library, ignore_errors=True)
    library.mkdir()
    shutil.copy(source / "index.json", library / "index.json")
    index = json.loads((library / "index.json").read_text())
    index["entries"] = []
    (library / "index.json").write_text(json.dumps(index))
    fit = json.loads((source / first / "fit.json").read_text())
    started = time.perf_counter()
    for k in range(entries):
        entry = library / f"photo{k:06d}"
        entry.mkdir()
        for f in (source / first).iterdir():
            if f.name != "fit.json":
                os.link(f, entry / f.name)
        (entry / "fit.json").write_text(json.dumps({**fit, "name": entry.name, "id": f"{k:016x}"}))
    print(f"made {entries} entries by hard links in {time.perf_counter() - started:.1f} s")
    started = time.perf_counter()
    TextureLibrary(library).index_entries(model, rescan=True)
    print(f"indexing {entries} unindexed entries (a killed fit's, read from their fit.json): "
          f"{time.perf_counter() - started:.1f} s; index.json {(library / 'index.json').stat().st_size / 2**20:.1f} MiB, "
          f"catalogue.npz {(library / 'catalogue.npz').stat().st_size / 2**20:.1f} MiB")
    started = time.perf_counter()
    TextureLibrary(library).index_entries(model)
    print(f"rewriting index and catalogue (what a fit does every 20 s): {time.perf_counter() - started:.2f} s")
    return library


def reads(library: Path, entries: int, model) -> None:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "datagen.cli", "textures", "list", str(library)], check=True,
                   stdout=subprocess.DEVNULL)
    print(f"datagen textures list ({entries} entries, a new process): {time.perf_counter() - started:.2f} s")
    before = rss_mib()
    started = time.perf_counter()
    photos = PhotoCatalogue([library], model)
    print(f"PhotoCatalogue of {len(photos)} entries: {time.perf_counter() - started:.2f} s, "
          f"+{rss_mib() - before:.0f} MiB resident")
    cold = []
    for k in range(0, min(entries, 200)):
        started = time.perf_counter()
        photos.load(k * (entries // 200 or 1))
        cold.append(time.perf_counter() - started)
    warm = []
    last = (min(entries, 200) - 1) * (entries // 200 or 1)
    for _ in range(20):
        started = time.perf_counter()
        photos.load(last)
        warm.append(time.perf_counter() - started)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"entry reads: {1e3 * statistics.median(cold):.0f} ms cold (median of {len(cold)} entries), "
          f"{1e6 * statistics.median(warm):.0f} us cached; after 200 entries read: {rss_mib() - before:.0f} MiB "
          f"resident above the start (LRU of {photos.cache}; peak RSS of the process {peak:.0f} MiB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=10_000)
    parser.add_argument("--photos", type=int, default=12, help="photos to fit for the throughput figures")
    parser.add_argument("--work", type=Path, default=Path("/tmp/libbench"))
    parser.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared")
    parser.add_argument("--model-dir", default=None)
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    model = resolve_model("ict-facekit", args.model_dir)
    fitting_rates(args.shared, args.work, args.photos, args.model_dir)
    library = large_library(args.work, args.entries, model)
    reads(library, args.entries, model)


if __name__ == "__main__":
    main()
