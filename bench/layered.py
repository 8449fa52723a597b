"""Layered batches against drawing a sample at a time, on the device path (synth/layered.py).

    python bench/layered.py [--samples 32] [--repeats 5] [--model-dir DIR]

The quickstart job with geometry = "device" (224x224), one process, the same scenes and made
backgrounds both ways (the same pixels: tests/test_layered.py). Per sample:
  - GL calls: the calls into moderngl's GL objects (a profiler hook counts them) and the few made
    directly (layered.py's depth arrays and layer reads), of one ``Renderer.submit`` and its result;
  - draw calls among them;
  - the render calls' time (submit and result, alternating the two ways; median of --repeats).
On llvmpipe the rasteriser's time is per pixel whichever way; the saving is the calls a GPU driver
would take one at a time.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import statistics
import sys
import time

from datagen.models.registry import resolve_model
from datagen.run.generator import FaceGenerator
from datagen.spec import load_default_spec
from datagen.synth import layered
from datagen.synth.geometry import build_scenes

DRAWS = ("render",)  # moderngl's draw call (VertexArray.render)


def device_job(spec):
    return dataclasses.replace(spec, render=dataclasses.replace(spec.render, geometry="device"))


def counted_calls(renderer, scenes, painted) -> collections.Counter:
    """{name: calls} of one submit and result: moderngl's GL objects' methods, and layered.py's own GL calls."""
    calls = collections.Counter()
    gl = layered._gl()
    direct = dict(vars(gl))
    for name, function in direct.items():
        setattr(gl, name, lambda *a, _f=function, _n=name: (calls.update(["gl" + _n]), _f(*a))[1])

    def hook(frame, event, arg):
        if event == "c_call" and type(getattr(arg, "__self__", None)).__module__ in ("mgl", "moderngl.mgl"):
            calls[arg.__name__] += 1

    sys.setprofile(hook)
    try:
        renderer.submit(scenes, None, painted).result()
    finally:
        sys.setprofile(None)
        for name, function in direct.items():
            setattr(gl, name, function)
    return calls


def compare(spec, model, samples: int, repeats: int) -> dict:
    """{True (layered) / False (a sample at a time): (GL calls, draw calls, render seconds) per sample}."""
    generator = FaceGenerator(device_job(spec), model)
    renderer = generator.renderer
    params = [generator.sample_params(i) for i in range(1000, 1000 + samples)]
    scenes = build_scenes(model, params, topology=renderer.topology, on_device=True)
    painted = generator._painted(params)
    counts, times = {}, {True: [], False: []}
    for on in (True, False):
        renderer.use_layered_draws(on)
        renderer.submit(scenes, None, painted).result()  # warm: programs and targets made
        counts[on] = counted_calls(renderer, scenes, painted)
    for _ in range(repeats):
        for on in (True, False):
            renderer.use_layered_draws(on)
            started = time.perf_counter()
            renderer.submit(scenes, None, painted).result()
            times[on].append((time.perf_counter() - started) / samples)
    renderer.release()
    return {on: (sum(counts[on].values()) / samples, sum(counts[on][d] for d in DRAWS) / samples,
                 statistics.median(times[on])) for on in (True, False)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--model-dir", default=None)
    args = parser.parse_args()
    spec = load_default_spec()
    result = compare(spec, resolve_model(spec.model.name, args.model_dir), args.samples, args.repeats)
    print(f"device path, quickstart {spec.render.width}x{spec.render.height}, {args.samples} samples, "
          f"per sample (time: median of {args.repeats}):")
    for on, label in ((True, "layered batches"), (False, "a sample at a time")):
        calls, draws, seconds = result[on]
        print(f"  {label:<20} {calls:6.1f} GL calls, {draws:5.2f} draw calls, render calls {seconds * 1e3:7.2f} ms")


if __name__ == "__main__":
    main()
