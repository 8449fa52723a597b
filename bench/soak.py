"""Memory over a long run: 20,000 samples generated and written in one process, its resident memory
sampled as it goes.

    python bench/soak.py [--samples 20000] [--shard 256] [--warm-up 2000] [--window 8] [--geometry auto] [--model-dir DIR]

What one dask worker does for a job (``FaceGenerator.batches`` into ``ShardWriter``, shard after
shard, malloc set up as ``cluster.WorkerSetup`` sets it), the quickstart's samples at 224x224, each
shard deleted once written (the disk stays small).
Prints the resident set size (VmRSS) after every shard of --shard samples, and at the end its growth
from just after the warm-up (model, GL context, first shards) to the end, each the median of
--window shards (one shard's batch arrays come and go, so a single reading swings by ~10%); the
target is < 5%.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time
from pathlib import Path

from datagen.data.shards import ShardWriter
from datagen.models.registry import resolve_model
from datagen.run.cluster import reuse_freed_memory
from datagen.run.generator import FaceGenerator
from datagen.spec import load_default_spec, with_overrides


def resident_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=20000)
    parser.add_argument("--shard", type=int, default=256)
    parser.add_argument("--warm-up", type=int, default=2000)
    parser.add_argument("--geometry", default="auto")
    parser.add_argument("--window", type=int, default=8)
    parser.add_argument("--model-dir", default=None)
    args = parser.parse_args()
    spec = load_default_spec()
    spec = with_overrides(spec, num_samples=args.samples,
                          output=dataclasses.replace(spec.output, samples_per_shard=args.shard),
                          render=dataclasses.replace(spec.render, geometry=args.geometry))
    model = resolve_model(spec.model.name, args.model_dir)
    reuse_freed_memory()  # as every dask worker does
    generator = FaceGenerator(spec, model)
    print(f"soak: {args.samples} samples of the quickstart job, {args.shard} a shard, one process; {generator.device}",
          flush=True)
    started, readings = time.perf_counter(), []
    with tempfile.TemporaryDirectory() as out:
        for shard in range(spec.num_shards):
            samples = spec.shard_range(shard)
            path = Path(out) / f"shard-{shard:05d}.h5"
            with ShardWriter(path, spec, model, shard, samples) as writer:
                for batch in generator.batches(samples):
                    writer.write(batch)
            path.unlink()
            rss = resident_mib()
            if samples.start >= args.warm_up:
                readings.append(rss)
            print(f"{samples.stop:6d} samples  {time.perf_counter() - started:7.0f} s  RSS {rss:7.1f} MiB", flush=True)
    first, last = statistics.median(readings[:args.window]), statistics.median(readings[-args.window:])
    print(f"\nresident memory (median of {args.window} shards): {first:.1f} MiB after {args.warm_up} samples, {last:.1f} "
          f"MiB at the end of {args.samples}: {100 * (last - first) / first:+.1f}% (target < 5%); highest "
          f"{max(readings):.1f} MiB; {args.samples / (time.perf_counter() - started):.1f} samples/s")


if __name__ == "__main__":
    main()
