"""Where a sample's time goes outside GL: the host-side cost per sample, next to the GL time.

    python bench/host_cost.py [--samples 64] [--repeats 3] [--geometry auto|host|device] [--compression lzf] [--numpy-normals]

One process, the quickstart job (224x224). GL time is the time spent in the renderer's GL calls
(``Renderer.submit``: compute shaders, draws, queued read-back; ``result``: waiting for and mapping
the pixels); everything else in ``FaceGenerator.batches`` is host time: sampling, building scenes (the mesh on the
numpy path), compositing over backgrounds, capture, annotation. Writing (``ShardWriter``: checks,
compression, HDF5, the read-back check) is timed apart. Each repeat makes one shard as a worker does
(``job.generate_shard``); prints medians of --repeats runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time
from unittest import mock
from pathlib import Path

from datagen.data.shards import ShardWriter
from datagen.models.registry import resolve_model
from datagen.run.generator import FaceGenerator
from datagen.synth.render import Renderer
from datagen.spec import load_default_spec, with_overrides


class GLClock:
    """Wraps a renderer's submit and its pending results, summing the seconds spent in them."""

    def __init__(self, renderer):
        self.seconds = 0.0
        submit = renderer.submit

        def timed_submit(*args, **kwargs):
            started = time.perf_counter()
            pending = submit(*args, **kwargs)
            self.seconds += time.perf_counter() - started
            result = pending.result

            def timed_result():
                started = time.perf_counter()
                out = result()
                self.seconds += time.perf_counter() - started
                return out
            pending.result = timed_result
            return pending
        renderer.submit = timed_submit


def host_cost(spec, model, samples: int, repeats: int, numpy_normals: bool = False) -> dict:
    """Medians over ``repeats``, per sample, in seconds: total, gl, host, write; and the generator.

    Each repeat is one shard made as ``job.generate_shard`` makes it: ``generator.batches`` into a
    ``ShardWriter``; the writer's time (``write`` calls and finishing the file) is counted apart."""
    if numpy_normals:  # as releases before readback.HalfNormals: float32 normals read back, numpy converts them
        with mock.patch.object(Renderer, "use_half_normals", lambda renderer: None):
            generator = FaceGenerator(spec, model)
    else:
        generator = FaceGenerator(spec, model)
    clock = GLClock(generator.renderer)
    indices = range(1000, 1000 + samples)
    generator.generate(list(indices)[:4])  # warm up
    rows = []
    for _ in range(repeats):
        clock.seconds, writing = 0.0, 0.0
        with tempfile.TemporaryDirectory() as out:
            started = time.perf_counter()
            writer = ShardWriter(Path(out) / "shard.h5", spec, model, 0, indices)
            with writer:
                for batch in generator.batches(indices):
                    began = time.perf_counter()
                    writer.write(batch)
                    writing += time.perf_counter() - began
                began = time.perf_counter()
            total = time.perf_counter() - started
            writing += time.perf_counter() - began
        gl = clock.seconds
        rows.append((total / samples, gl / samples, (total - gl - writing) / samples, writing / samples))
    total, gl, host, write = (statistics.median(r[k] for r in rows) for k in range(4))
    return {"total": total, "gl": gl, "host": host, "write": write, "generator": generator}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--geometry", default="auto")
    parser.add_argument("--compression", default=None)
    parser.add_argument("--numpy-normals", action="store_true", help="on the device path, read float32 "
                        "normals back and convert them with numpy, as before readback.HalfNormals (the same bits)")
    parser.add_argument("--model-dir", default=None)
    args = parser.parse_args()
    spec = load_default_spec()
    output = dataclasses.replace(spec.output, samples_per_shard=args.samples,
                                 compression=args.compression or spec.output.compression)
    spec = with_overrides(spec, num_samples=args.samples, output=output,
                          render=dataclasses.replace(spec.render, geometry=args.geometry))
    model = resolve_model(spec.model.name, args.model_dir)
    r = host_cost(spec, model, args.samples, args.repeats, args.numpy_normals)
    half = ", float16 normals " + ("on the device" if r["generator"].renderer.half_normals else "by numpy")
    print(f"{r['generator'].device}{half}\nper sample: GL {r['gl'] * 1e3:.2f} ms, host {r['host'] * 1e3:.2f} ms, "
          f"writing ({spec.output.compression}) {r['write'] * 1e3:.2f} ms; host + writing "
          f"{(r['host'] + r['write']) * 1e3:.2f} ms")


if __name__ == "__main__":
    main()
