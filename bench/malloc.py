"""What dask's malloc setting costs a worker, and what ``cluster.reuse_freed_memory`` gives back.

    python bench/malloc.py [--repeats 2] [--model-dir DIR]

dask's nannies start every worker with ``MALLOC_TRIM_THRESHOLD_=65536`` (``distributed.nanny.pre-spawn-
environ``) and one BLAS thread. This runs ``generate_shard`` (the quickstart, shards of 64) in fresh
processes with exactly that environment and LP_NUM_THREADS=0, without and with the set-up a datagen
worker does (``reuse_freed_memory``), alternating, and prints ms per sample of two shards after a
first one (model, GL context and caches warm).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

PROBE = """
import sys, time, tempfile, dataclasses
if sys.argv[1] == "reuse":
    from datagen.run.cluster import reuse_freed_memory
    reuse_freed_memory()
from datagen.spec import load_default_spec, with_overrides
from datagen.run.job import generate_shard
spec = load_default_spec()
spec = with_overrides(spec, output=dataclasses.replace(spec.output, samples_per_shard=64))
model_dir = sys.argv[2] or None
with tempfile.TemporaryDirectory() as out:
    generate_shard(spec, 0, out, model_dir)
    started = time.perf_counter()
    for shard in (1, 2):
        generate_shard(spec, shard, out, model_dir)
    print((time.perf_counter() - started) / 128 * 1e3)
"""


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--model-dir", default="")
    args = parser.parse_args()
    env = {**os.environ, "MALLOC_TRIM_THRESHOLD_": "65536", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "OPENBLAS_NUM_THREADS": "1", "LP_NUM_THREADS": "0"}
    print("generate_shard in a process started as dask starts a worker (quickstart, 224x224, ms per sample):")
    for _ in range(args.repeats):
        for how in ("as dask starts it", "reuse"):
            out = subprocess.run([sys.executable, "-c", PROBE, how, args.model_dir], env=env, check=True,
                                 capture_output=True, text=True).stdout.split()[-1]
            label = "dask's setting alone" if how != "reuse" else "with reuse_freed_memory"
            print(f"  {label:<28} {float(out):7.1f}", flush=True)


if __name__ == "__main__":
    main()
