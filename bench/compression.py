"""Shard compression: write rate, read rate and size of each `[output] compression` on the same samples.

    python bench/compression.py [--samples 64] [--repeats 3] [--job JOB] [--model-dir DIR]

Renders --samples samples of the job (default: the quickstart, 224²) once in this process, then per
compression (medians of --repeats): the writer's cost per sample (`ShardWriter`: HDF5 in memory,
compression, the file written, flushed, read back and checked), bytes per sample, and the read rate of
`ShardedDataset` (every field of every sample, one process, the file in the page cache).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
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
    args = parser.parse_args()
    spec = load_spec(args.job) if args.job else load_default_spec()
    spec = with_overrides(spec, num_samples=args.samples)
    spec = dataclasses.replace(spec, output=dataclasses.replace(spec.output, samples_per_shard=args.samples))
    model = resolve_model(spec.model_reference(), args.model_dir)
    arrays = FaceGenerator(spec, model).generate(range(args.samples))
    raw = sum(a.nbytes for a in arrays.values()) / args.samples
    print(f"{spec.name}: {args.samples} samples {spec.render.width}x{spec.render.height}, {raw / 1024:.0f} KiB per sample "
          f"uncompressed; medians of {args.repeats}\n")
    print(f"{'compression':<12} {'write ms/sample':>16} {'KiB/sample':>11} {'ratio':>6} {'read samples/s':>15}")
    for name in COMPRESSIONS:
        job = dataclasses.replace(spec, output=dataclasses.replace(spec.output, compression=name))
        writes, reads = [], []
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
        print(f"{name:<12} {statistics.median(writes) * 1e3:>16.2f} {size / 1024:>11.0f} {raw / size:>6.2f} "
              f"{statistics.median(reads):>15.0f}")


if __name__ == "__main__":
    main()
