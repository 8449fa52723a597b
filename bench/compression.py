"""Shard compression: write rate, read rate and size of each `[output] compression` on the same samples.

    python bench/compression.py [--samples 64] [--repeats 3] [--job JOB] [--model-dir DIR] [--loader-workers 2]
                                [--compressions lz4,zstd] [--loader-fields image,landmarks_2d,...]

Renders --samples samples of the job (default: the quickstart, 224²) once in this process, then per
compression (medians of --repeats): the writer's cost per sample (`ShardWriter`: HDF5 in memory,
compression, the file written, flushed, read back and checked), bytes per sample, and the read rate of
`ShardedDataset` (every field of every sample, one process, the file in the page cache); then, as a
GPU trainer reads, a torch ``DataLoader`` over it (batches of 32, default collation into tensors)
with 1..--loader-workers worker processes: samples/s per loader worker (a pass over 8 copies of the
shard; worker start-up excluded: the first batch is taken before the clock starts).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from datagen.data.dataset import ShardedDataset
from datagen.data.shards import ShardWriter
from datagen.models.registry import resolve_model
from datagen.run.generator import FaceGenerator
from datagen.run.plan import plan
from datagen.spec import COMPRESSIONS, load_default_spec, load_spec, with_overrides
from datagen.files import atomic_write_text


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--job", default=None)
    parser.add_argument("--model-dir", default=None)
    parser.add_argument("--loader-workers", type=int, default=2)
    parser.add_argument("--compressions", default=",".join(COMPRESSIONS), help="comma-separated (default: all)")
    parser.add_argument("--loader-fields", default="", help="comma-separated fields the DataLoader reads "
                        "(default: all; a trainer's: image,landmarks_2d,params/identity,...)")
    args = parser.parse_args()
    spec = load_spec(args.job) if args.job else load_default_spec()
    spec = with_overrides(spec, num_samples=args.samples)
    spec = dataclasses.replace(spec, output=dataclasses.replace(spec.output, samples_per_shard=args.samples))
    model = resolve_model(spec.model_reference(), args.model_dir)
    arrays = FaceGenerator(spec, model).generate(range(args.samples))
    raw = sum(a.nbytes for a in arrays.values()) / args.samples
    print(f"{spec.name}: {args.samples} samples {spec.render.width}x{spec.render.height}, {raw / 1024:.0f} KiB per sample "
          f"uncompressed; medians of {args.repeats}\n")
    fields = args.loader_fields.split(",") if args.loader_fields else None
    if fields:
        print(f"DataLoader fields: {', '.join(fields)}")
    loader_columns = "".join(f"{f'{w} loader w.':>14}" for w in range(1, args.loader_workers + 1))
    print(f"{'compression':<12} {'write ms/sample':>16} {'KiB/sample':>11} {'ratio':>6} {'read samples/s':>15}"
          f"{loader_columns}   (DataLoader: samples/s per loader worker)")
    for name in args.compressions.split(","):
        job = dataclasses.replace(spec, output=dataclasses.replace(spec.output, compression=name))
        writes, reads, loaders = [], [], []
        for _ in range(args.repeats):
            with tempfile.TemporaryDirectory() as out:
                path = Path(out) / "shard-00000.h5"
                started = time.perf_counter()
                with ShardWriter(path, job, model, 0, range(args.samples)) as writer:
                    writer.write(arrays)
                writes.append((time.perf_counter() - started) / args.samples)
                manifest = plan(job, model)
                manifest["shards"][0].update(checksum=writer.checksum, bytes=path.stat().st_size)
                atomic_write_text(Path(out) / "manifest.json", json.dumps(manifest))
                size = path.stat().st_size / args.samples
                dataset = ShardedDataset(out)
                dataset[0]
                started = time.perf_counter()
                for i in range(len(dataset)):
                    dataset[i]
                reads.append(len(dataset) / (time.perf_counter() - started))
                dataset.close()
                for copy in range(1, 8):
                    shutil.copy(path, Path(out) / f"shard-{copy:05d}.h5")
                    manifest["shards"].append({**manifest["shards"][0], "file": f"shard-{copy:05d}.h5",
                                               "start": copy * args.samples, "stop": (copy + 1) * args.samples})
                manifest["num_samples"] = 8 * args.samples
                atomic_write_text(Path(out) / "manifest.json", json.dumps(manifest))
                loaders.append([loader_rate(out, workers, fields) / workers for workers in range(1, args.loader_workers + 1)])
        columns = "".join(f"{statistics.median(rates):>14.0f}" for rates in zip(*loaders))
        print(f"{name:<12} {statistics.median(writes) * 1e3:>16.2f} {size / 1024:>11.0f} {raw / size:>6.2f} "
              f"{statistics.median(reads):>15.0f}{columns}")


def loader_rate(folder, workers: int, fields=None) -> float:
    """Samples/s of a torch DataLoader over the dataset in ``folder`` (``fields`` of it) with ``workers`` processes."""
    import torch.utils.data

    dataset = ShardedDataset(folder, fields=fields)
    loader = torch.utils.data.DataLoader(dataset, batch_size=32, num_workers=workers, shuffle=True,
                                         generator=torch.Generator().manual_seed(0), persistent_workers=False)
    batches = iter(loader)
    next(batches)  # the workers started and warm
    started, count = time.perf_counter(), 0
    for batch in batches:
        count += len(batch["image"])
    rate = count / (time.perf_counter() - started)
    dataset.close()
    return rate


if __name__ == "__main__":
    main()
