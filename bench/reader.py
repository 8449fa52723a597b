"""What verified reading costs: ShardedDataset samples/s with and without its checks, and the writer's read-back.

    python bench/reader.py [--samples 256] [--repeats 5] [--model-dir DIR]

Generates the quickstart job (224x224, lzf) once, copies its shards as datagen wrote them before
per-chunk checksums existed (no Fletcher-32, HDF5 1.8 format), and prints medians of --repeats
passes over every sample, all measured in this one run:
  1. chunk checksums verified on every read (the default, ``verify=True``);
  2. the same files read with ``verify=False`` (HDF5 still checks a chunk's checksum: it is part of
     the filter pipeline; what ``verify`` skips is the whole-shard check of old files);
  3. old files without checksums, ``verify=False`` (today's reading cost before this change);
  4. old files, ``verify=True``: each shard read and hashed whole when first opened;
and, per sample, the writer's check before renaming a shard (the file read past the page cache and
compared with the bytes assembled in memory) next to a deep validation (every array decoded and hashed,
as ``datagen inspect`` does and the writer did before).
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import h5py

from datagen.data.dataset import ShardedDataset
from datagen.run.job import run_job
from datagen.data.manifest import read_manifest, write_manifest
from datagen.data.shards import same_bytes, validate_shard
from datagen.files import drop_cached_pages
from datagen.spec import load_default_spec, with_overrides


def writers_check(shard: Path) -> float:
    """Seconds ``ShardWriter`` spends checking this shard: read past the page cache, compared."""
    image = memoryview(shard.read_bytes())  # what the writer holds in memory
    with open(shard, "rb", buffering=0) as f:
        drop_cached_pages(f.fileno())
        started = time.perf_counter()
        assert same_bytes(f, image)
        return time.perf_counter() - started


def read_rate(folder: Path, verify: bool, repeats: int) -> float:
    rates = []
    for _ in range(repeats):
        ds = ShardedDataset(folder, verify=verify)  # a fresh reader: old files are checked again
        started = time.perf_counter()
        for i in range(len(ds)):
            ds[i]
        rates.append(len(ds) / (time.perf_counter() - started))
        ds.close()
    return statistics.median(rates)


def without_checksums(source: Path, target: Path) -> None:
    """The shards as datagen wrote them before: default HDF5 format, no Fletcher-32 per chunk."""
    target.mkdir()
    manifest = read_manifest(source)
    for record in manifest["shards"]:
        with h5py.File(source / record["file"]) as src, h5py.File(target / record["file"], "w") as dst:
            dst.attrs.update({k: v for k, v in src.attrs.items() if k != "attributes_sha256"})  # not yet then
            names = []
            src.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None)
            for name in names:
                data = src[name]
                options = {"compression": data.compression} if data.chunks and data.ndim > 1 else {}
                dst.create_dataset(name, data=data[()], chunks=data.chunks if data.ndim > 1 else None, **options)
                dst[name].attrs.update(data.attrs)
    write_manifest(target, manifest)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--model-dir", default=None)
    args = parser.parse_args()
    spec = load_default_spec()  # with lzf, as datagen wrote old shards (the copies below keep it)
    spec = with_overrides(spec, num_samples=args.samples, output=dataclasses.replace(spec.output, compression="lzf"))
    with tempfile.TemporaryDirectory() as tmp:
        new, old = Path(tmp) / "new", Path(tmp) / "old"
        run_job(spec, new, model_dir=args.model_dir, log=lambda m: None)
        without_checksums(new, old)
        rows = [("chunk checksums, verify=True (default)", read_rate(new, True, args.repeats)),
                ("chunk checksums, verify=False", read_rate(new, False, args.repeats)),
                ("old shards (no checksums), verify=False", read_rate(old, False, args.repeats)),
                ("old shards (no checksums), verify=True", read_rate(old, True, args.repeats))]
        shards = sorted(new.glob("shard-*.h5"))
        read_back_ms = 1000 * sum(writers_check(shard) for shard in shards) / args.samples
        started = time.perf_counter()
        for shard in shards:
            validate_shard(shard)
        deep_ms = 1000 * (time.perf_counter() - started) / args.samples
        sizes = {name: sum(p.stat().st_size for p in folder.glob("shard-*.h5")) for name, folder in
                 (("new", new), ("old", old))}
        shutil.rmtree(new)
    print(f"ShardedDataset, {args.samples} quickstart samples (224x224, lzf), every field, one process, "
          f"median of {args.repeats}:")
    base = rows[2][1]
    for name, rate in rows:
        print(f"  {name:<42} {rate:8.1f} samples/s  ({rate / base:.2f}x of old files unverified)")
    print(f"writer's read-back check before the rename: {read_back_ms:.2f} ms per sample "
          f"(a deep validation, decoding and hashing every array: {deep_ms:.2f} ms)")
    print(f"size: {sizes['new'] / 2**20:.1f} MiB with checksums, {sizes['old'] / 2**20:.1f} MiB without "
          f"({100 * (sizes['new'] / sizes['old'] - 1):+.2f}%)")


if __name__ == "__main__":
    main()
