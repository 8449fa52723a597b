"""Worker scaling and per-task scheduling overhead of `datagen generate` on a local dask cluster.

    python bench/scaling.py [--samples 256] [--samples-per-shard 32] [--repeats 3] [--model-dir DIR]

Runs the quickstart job (ICT-FaceKit, 224x224) through ``run_job`` on LocalClusters of 1 and 2
single-threaded worker processes, llvmpipe rendering on each worker's own thread
(LP_NUM_THREADS=0, what a local cluster with a core per worker sets), so that each worker uses
one core; and once with 1 worker whose llvmpipe threads over every core (what `--workers 1` does). Prints, as medians of --repeats runs:

  - samples/s in steady state: samples / (last task end - first task start), from dask's task
    stream; the workers are set up (model, GL context) before the first task;
  - samples/s end to end: run_job's wall time with the cluster already up (manifest, shards,
    validation of the output included);
  - per-task overhead: the idle gaps between one worker's consecutive tasks (scheduler round
    trip, result hand-off) as a fraction of task compute time;
  - the ratio 2 workers / 1 worker (target >= 1.8 on 2 cores) and the overhead (target < 2%).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import statistics
import tempfile
import time

from distributed import Client, LocalCluster, get_task_stream

from datagen.run.job import run_job
from datagen.spec import load_default_spec, with_overrides


def measure(spec, workers: int, render_threads: int, model_dir, repeats: int, env: dict | None = None,
            probe=None) -> dict:
    """Medians over ``repeats`` runs on a warm LocalCluster: samples/s steady and end to end, the idle
    share between tasks, seconds per task, and the workers' CPU seconds per second of wall time;
    ``probe()``'s value, called while the workers are still up, as "probe"."""
    env = {"LP_NUM_THREADS": str(render_threads), **(env or {})}
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, env=env,
                      silence_logs=logging.ERROR, dashboard_address=":0") as cluster, Client(cluster) as client:
        steady, end_to_end, overhead, cores = [], [], [], []
        for repeat in range(repeats + 1):  # the first run warms the workers up (plugin: model + GL context)
            with tempfile.TemporaryDirectory() as out, get_task_stream(client) as stream:
                cpu = sum(client.run(time.process_time).values())
                started = time.perf_counter()
                run_job(spec, out, model_dir=model_dir, client=client, log=lambda m: None)
                wall = time.perf_counter() - started
                cpu = sum(client.run(time.process_time).values()) - cpu
            if repeat == 0:
                continue
            cores.append(cpu / wall)
            computes = [(task["worker"], part["start"], part["stop"]) for task in stream.data
                        for part in task["startstops"] if part["action"] == "compute"]
            span = max(c[2] for c in computes) - min(c[1] for c in computes)
            steady.append(spec.num_samples / span)
            end_to_end.append(spec.num_samples / wall)
            overhead.append(_gap_fraction(computes))
        probed = probe() if probe is not None else None
    return {"steady": statistics.median(steady), "end_to_end": statistics.median(end_to_end),
            "overhead": statistics.median(overhead), "task_seconds": span * workers / spec.num_shards,
            "cores": statistics.median(cores), "probe": probed}


def _gap_fraction(computes) -> float:
    """Idle time between consecutive tasks of the same worker / total compute time."""
    gaps = busy = 0.0
    for worker in {c[0] for c in computes}:
        runs = sorted((start, stop) for w, start, stop in computes if w == worker)
        busy += sum(stop - start for start, stop in runs)
        gaps += sum(max(0.0, nxt[0] - prev[1]) for prev, nxt in zip(runs, runs[1:]))  # clocks jitter by µs
    return gaps / busy


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--samples-per-shard", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model-dir", default=None)
    parser.add_argument("--render-threads", type=int, default=0,
                        help="LP_NUM_THREADS per worker in the scaling runs (0: llvmpipe renders on the calling thread)")
    args = parser.parse_args()

    spec = load_default_spec()
    output = dataclasses.replace(spec.output, samples_per_shard=args.samples_per_shard)
    spec = with_overrides(spec, num_samples=args.samples, output=output)
    print(f"quickstart job: {spec.num_samples} samples {spec.render.width}x{spec.render.height}, "
          f"{spec.num_shards} shards of {args.samples_per_shard} (one task each), {os.cpu_count()} cores; "
          f"medians of {args.repeats} runs after a warm-up run\n")
    threads = args.render_threads
    one = measure(spec, 1, threads, args.model_dir, args.repeats)
    two = measure(spec, 2, threads, args.model_dir, args.repeats)
    cores = os.cpu_count() or 1
    one_all = measure(spec, 1, cores, args.model_dir, args.repeats)
    rows = [(f"1 worker,  LP_NUM_THREADS={threads}", one), (f"2 workers, LP_NUM_THREADS={threads} each", two),
            (f"1 worker,  LP_NUM_THREADS={cores} (--workers 1)", one_all)]
    print(f"{'':44}{'steady samples/s':>18}{'end-to-end samples/s':>22}{'task overhead':>15}{'s/task':>8}")
    for name, r in rows:
        print(f"{name:44}{r['steady']:18.1f}{r['end_to_end']:22.1f}{100 * r['overhead']:14.2f}%{r['task_seconds']:8.2f}")
    print(f"\nscaling 2 workers / 1 worker: {two['steady'] / one['steady']:.2f}x steady, "
          f"{two['end_to_end'] / one['end_to_end']:.2f}x end to end (target >= 1.8x)")
    print(f"2 workers / 1 worker threading llvmpipe over {cores} cores: {two['steady'] / one_all['steady']:.2f}x steady")
    print(f"per-task scheduling overhead: {100 * max(one['overhead'], two['overhead']):.2f}% of task time at most "
          f"(target < 2%)")


if __name__ == "__main__":
    main()
