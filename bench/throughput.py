"""End-to-end throughput of the quickstart job, next to the render-only limit and a numpy rasteriser.

    python bench/throughput.py [--samples 256] [--workers 0] [--repeats 5] [--model-dir DIR]
    python bench/throughput.py --feed       # item 0 alone
    python bench/throughput.py --device N [--max-workers 4] [--samples 4096]   # on a GPU node: the
        render calls' samples/s in layered batches and a sample at a time, then samples/s for 1..N workers

Prints (medians of --repeats runs, all measured in this one run):
  0. what feeding the device costs: per sample, the host-side cost (everything outside GL calls:
     sampling, scenes, compositing, annotation; and apart, writing: compression, HDF5, the read-back
     check) and the GL time, on the numpy path and on the device path (geometry = "device": the mesh by
     compute shaders, made backgrounds painted and normals rounded to float16 on the device); the
     device path's render calls in layered batches (synth/layered.py) against a sample at a time; the
     render-only rate of the same outputs in one process on one core (LP_NUM_THREADS=0, as a local
     worker renders); `datagen generate` on warm local clusters of 1 and 2 workers (bench/scaling.py's
     measure); and the ratio end to end (2 workers) / (render-only x the 2-worker scaling);
  1. end to end: `datagen generate` of the quickstart job (local dask cluster, HDF5 shards), samples/s
     over the whole wall time, cluster start included;
  2. per-stage cost in one process: sampling, geometry, rendering, annotation + compositing;
  3. render-only frames/s of the same meshes and outputs (the limit of this machine, one process);
  4. a plain vectorised numpy z-buffer rasteriser of the same meshes (depth + normals, no shading);
and the ratios between them; then
  5. the same per-sample costs for the props-and-capture recipe (jobs/realistic.toml without its
     texture-library options: hair, lashes, brows, clothing, glasses, hands, capture effects,
     balanced skin tones) at the quickstart's size, and its cost relative to the quickstart's;
  6. the same with fine detail (jobs/details.toml's [sampling.detail]: pores, lines and creases,
     depth_fine and normal_fine) at the quickstart's size: the detail bank's one-off build per
     worker, the per-sample costs against the quickstart's, the shard bytes per sample, and end to
     end with --workers (once);
  7. video clips ([video] frames = --frames, the quickstart's priors otherwise): the cost of a clip
     against as many stills (one process; the flow is one more attribute of the ground-truth pass),
     its parts (render with the neighbour frames' vertices, flow and occlusion on the host), and end
     to end with --workers (once): frames/s, frame pairs/s, shard bytes per frame.
     `--video` runs this item alone (with the still baseline it compares against).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from pathlib import Path
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

from datagen.run.generator import FaceGenerator
from datagen.synth.device_geometry import MAX_BATCH
from datagen.synth.geometry import build_scenes
from datagen.run.job import run_job
from datagen.models.registry import resolve_model
from datagen.synth.render import Renderer
from datagen.spec import load_default_spec, load_spec, with_overrides

REPO = Path(__file__).resolve().parents[1]


def numpy_zbuffer(vertices, normals, triangles, intrinsics, width, height):
    """Rasterise one mesh with numpy only: every (triangle, pixel-in-its-box) pair at once, then a z-buffer."""
    fx, fy, cx, cy = intrinsics
    z = -vertices[:, 2]
    px = np.stack([fx * vertices[:, 0] / z + cx, cy - fy * vertices[:, 1] / z], 1)
    a, b, c = px[triangles[:, 0]], px[triangles[:, 1]], px[triangles[:, 2]]
    area = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])
    keep = area < 0  # counter-clockwise in camera space is clockwise in (x right, y down) pixels: front faces
    t = np.flatnonzero(keep)
    lo = np.floor(np.minimum(np.minimum(a[t], b[t]), c[t]) - 0.5).astype(int)
    hi = np.ceil(np.maximum(np.maximum(a[t], b[t]), c[t]) - 0.5).astype(int)
    lo, hi = np.clip(lo, 0, [width - 1, height - 1]), np.clip(hi, 0, [width - 1, height - 1])
    spans = (hi - lo + 1).clip(min=0)
    counts = spans[:, 0] * spans[:, 1]
    tri = np.repeat(t, counts)
    local = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    w = np.repeat(spans[:, 0], counts)
    x = np.repeat(lo[:, 0], counts) + local % w
    y = np.repeat(lo[:, 1], counts) + local // w
    p = np.stack([x + 0.5, y + 0.5], 1)
    ta, tb, tc = px[triangles[tri, 0]], px[triangles[tri, 1]], px[triangles[tri, 2]]
    ar = area[tri]
    w0 = ((tb[:, 0] - p[:, 0]) * (tc[:, 1] - p[:, 1]) - (tb[:, 1] - p[:, 1]) * (tc[:, 0] - p[:, 0])) / ar
    w1 = ((tc[:, 0] - p[:, 0]) * (ta[:, 1] - p[:, 1]) - (tc[:, 1] - p[:, 1]) * (ta[:, 0] - p[:, 0])) / ar
    w2 = 1 - w0 - w1
    inside = (w0 >= 0) & (w1 >= 0) & (w2 >= 0)
    tri, x, y, w0, w1, w2 = tri[inside], x[inside], y[inside], w0[inside], w1[inside], w2[inside]
    inv_z = w0 / z[triangles[tri, 0]] + w1 / z[triangles[tri, 1]] + w2 / z[triangles[tri, 2]]
    depth = 1.0 / inv_z  # perspective-correct depth
    pixel = y * width + x
    order = np.lexsort((depth, pixel))
    first = np.ones(len(order), bool)
    first[1:] = pixel[order][1:] != pixel[order][:-1]
    win = order[first]
    out_depth = np.zeros(width * height, np.float32)
    out_depth[pixel[win]] = depth[win]
    n = (normals[triangles[tri[win], 0]] * w0[win, None] + normals[triangles[tri[win], 1]] * w1[win, None]
         + normals[triangles[tri[win], 2]] * w2[win, None])
    out_normal = np.zeros((width * height, 3), np.float32)
    out_normal[pixel[win]] = n / np.linalg.norm(n, axis=1, keepdims=True)
    return out_depth.reshape(height, width), out_normal.reshape(height, width, 3)


def timed(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--workers", type=int, default=0, help="0 = one per core")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--model-dir", default=None)
    parser.add_argument("--frames", type=int, default=8, help="frames per clip of item 7")
    parser.add_argument("--video", action="store_true", help="run item 7 (video clips) alone")
    parser.add_argument("--feed", action="store_true", help="run item 0 (host cost, end to end) alone")
    parser.add_argument("--render-only", action="store_true", help=argparse.SUPPRESS)  # item 0's subprocess
    parser.add_argument("--device", type=int, default=None, help="GPU mode: EGL device N, 1..--max-workers workers")
    parser.add_argument("--max-workers", type=int, default=4)
    args = parser.parse_args()
    if args.render_only:
        print(render_only_rate(args.model_dir, args.repeats))
        return
    if args.device is not None:
        device_mode(args)
        return

    spec = with_overrides(load_default_spec(), num_samples=args.samples)
    workers = args.workers or os.cpu_count()
    model = resolve_model(spec.model.name, args.model_dir)
    print(f"quickstart job: {spec.num_samples} samples {spec.render.width}x{spec.render.height}, model "
          f"{model.name} ({model.num_vertices} vertices), {workers} workers, {os.cpu_count()} cores; "
          f"medians of {args.repeats} runs")
    if args.feed or not args.video:
        feed_costs(spec, model, args)
        if args.feed:
            return
    if args.video:
        generator = FaceGenerator(spec, model)
        indices = list(range(1000, 1032))
        generator.generate(indices[:4])
        t_total = timed(lambda: generator.generate(indices), args.repeats) / len(indices)
        print(f"\nstills, one process: {1 / t_total:.1f} samples/s")
        video_costs(spec, model, args.frames, args.repeats, t_total, workers, args.model_dir)
        return

    # 1. end to end
    walls = []
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory() as out:
            summary = run_job(spec, out, model_dir=args.model_dir, workers=workers, log=lambda m: None)
            walls.append(summary.seconds)
    end_to_end = spec.num_samples / statistics.median(walls)
    print(f"\n1. end to end (datagen generate, {workers} workers): {end_to_end:7.1f} samples/s "
          f"({statistics.median(walls):.1f} s wall, cluster start included)")

    # 2 and 3: one process
    generator = FaceGenerator(spec, model)
    renderer = generator.renderer
    n = 32
    indices = list(range(1000, 1000 + n))
    generator.generate(indices[:4])  # warm up
    params = [generator.sample_params(i) for i in indices]
    scenes = build_scenes(model, params)
    t_sample = timed(lambda: [generator.sample_params(i) for i in indices], args.repeats) / n
    t_geometry = timed(lambda: build_scenes(model, params), args.repeats) / n
    t_render = timed(lambda: renderer.render(scenes), args.repeats) / n
    t_total = timed(lambda: generator.generate(indices), args.repeats) / n
    print(f"\n2. one process, per sample: sampling {t_sample * 1e3:.2f} ms, geometry {t_geometry * 1e3:.1f} ms, "
          f"render {t_render * 1e3:.1f} ms, rest (annotate, background) {(t_total - t_sample - t_geometry - t_render) * 1e3:.1f} ms "
          f"-> {1 / t_total:.1f} samples/s")
    print(f"3. render only (moderngl EGL, {renderer.ctx.info['GL_RENDERER']}): {1 / t_render:7.1f} frames/s per process "
          f"(ground-truth pass + {renderer.supersample}x supersampled colour pass)")

    # 4: numpy rasteriser of the same meshes (depth + normals only)
    tris = renderer.topology.triangles
    k = 8
    t_numpy = timed(lambda: [numpy_zbuffer(scenes.vertices[i], scenes.normals[i], tris, scenes.intrinsics[i],
                                           spec.render.width, spec.render.height) for i in range(k)], args.repeats) / k
    depth, _ = numpy_zbuffer(scenes.vertices[0], scenes.normals[0], tris, scenes.intrinsics[0], spec.render.width, spec.render.height)
    gl = renderer.render(scenes).depth[0]
    agree = np.mean((depth > 0) == (gl > 0))
    single = Renderer(model, spec.render.width, spec.render.height, msaa=0, supersample=1, ctx=renderer.ctx)
    t_single = timed(lambda: single.render(scenes), args.repeats) / n
    print(f"   one pass, no anti-aliasing (the same outputs, image aliased):          {1 / t_single:7.1f} frames/s")
    msaa = Renderer(model, spec.render.width, spec.render.height, msaa=4, ctx=renderer.ctx)
    t_msaa = timed(lambda: msaa.render(scenes), args.repeats) / n
    print(f"   ground-truth pass + 4x MSAA colour pass instead of supersampling:      {1 / t_msaa:7.1f} frames/s")
    print(f"4. numpy z-buffer rasteriser (same mesh, depth + normals, one pass, no shading): {1 / t_numpy:7.1f} frames/s "
          f"(its mask agrees with GL's on {agree:.1%} of pixels)")

    print(f"\nratios: end-to-end / (render-only x {workers} workers) = {end_to_end / (workers / t_render):.2f}; "
          f"end-to-end / one-process pipeline x {workers} = {end_to_end / (workers / t_total):.2f}; "
          f"moderngl / numpy rasteriser = {t_numpy / t_render:.1f}x (full render), "
          f"{t_numpy / t_single:.1f}x (one pass; numpy does depth + normals only)")
    realistic_costs(spec, model, renderer, indices, args.repeats, t_total)
    detail_costs(spec, model, indices, args.repeats, t_total, end_to_end, workers, args.model_dir)
    video_costs(spec, model, args.frames, args.repeats, t_total, workers, args.model_dir)


def with_geometry(spec, geometry: str):
    return dataclasses.replace(spec, render=dataclasses.replace(spec.render, geometry=geometry))


def render_only_rate(model_dir, repeats: int) -> float:
    """Frames/s of the quickstart's outputs, render calls only, in this process (its LP_NUM_THREADS)."""
    spec = load_default_spec()
    generator = FaceGenerator(spec, resolve_model(spec.model.name, model_dir))
    params = [generator.sample_params(i) for i in range(1000, 1032)]
    scenes = build_scenes(generator.model, params, topology=generator.renderer.topology, on_device=generator.on_device)
    generator.renderer.render(scenes)
    return len(params) / timed(lambda: generator.renderer.render(scenes), repeats)


def feed_costs(spec, model, args):
    from host_cost import host_cost
    from layered import compare as compare_layered
    from scaling import measure

    print("\n0. feeding the device (quickstart, 224x224, one process unless said):")
    for geometry in ("host", "device"):
        r = host_cost(with_geometry(spec, geometry), model, 32, args.repeats)
        path = "numpy path" if geometry == "host" else "device path (mesh, made background, float16 normals)"
        print(f"   {path}: host {r['host'] * 1e3:.2f} ms + writing "
              f"({spec.output.compression}) {r['write'] * 1e3:.2f} ms = {(r['host'] + r['write']) * 1e3:.2f} ms per sample "
              f"outside GL; GL {r['gl'] * 1e3:.1f} ms")
    ways = compare_layered(spec, model, 32, args.repeats)
    print(f"   device path, render calls only: layered batches (one draw per pass for up to {MAX_BATCH} samples) "
          f"{ways[True][2] * 1e3:.1f} ms and {ways[True][0]:.1f} GL calls a sample, a sample at a time "
          f"{ways[False][2] * 1e3:.1f} ms and {ways[False][0]:.1f} GL calls (bench/layered.py)")
    env = {**os.environ, "LP_NUM_THREADS": "0"}
    command = [sys.executable, __file__, "--render-only", "--repeats", str(args.repeats)]
    command += ["--model-dir", args.model_dir] if args.model_dir else []
    render_only = float(subprocess.run(command, env=env, check=True, capture_output=True, text=True).stdout.split()[-1])
    print(f"   render only, one core (LP_NUM_THREADS=0), geometry {spec.render.geometry}: {render_only:.1f} frames/s")
    job = with_overrides(spec, output=dataclasses.replace(spec.output, samples_per_shard=32))
    one = measure(job, 1, 0, args.model_dir, 1)
    two = measure(job, 2, 0, args.model_dir, 1)
    scaling = two["steady"] / one["steady"]
    print(f"   datagen generate, warm local cluster, {job.num_samples} samples in shards of 32: 1 worker "
          f"{one['end_to_end']:.1f} samples/s, 2 workers {two['end_to_end']:.1f} samples/s (steady {one['steady']:.1f}, "
          f"{two['steady']:.1f}: scaling {scaling:.2f}x)")
    print(f"   end to end (2 workers) / (render only x {scaling:.2f}) = "
          f"{two['end_to_end'] / (render_only * scaling):.2f} (target >= 0.8)")


def gpu_memory_mib() -> str:
    """Device memory in use, per GPU, from nvidia-smi ("n/a" without it)."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=30).stdout.split()
    except (OSError, subprocess.SubprocessError):
        return "n/a"
    return " + ".join(f"{m} MiB" for m in out) or "n/a"


def device_mode(args):
    """Samples/s of the quickstart at 224x224 on EGL device N with 1..--max-workers worker processes."""
    from layered import compare as compare_layered
    from scaling import measure

    spec = with_overrides(load_default_spec(), num_samples=args.samples,
                          output=dataclasses.replace(load_default_spec().output, samples_per_shard=64))
    print(f"GPU mode: EGL device {args.device}, quickstart {spec.render.width}x{spec.render.height}, {args.samples} "
          f"samples, shards of 64, geometry {spec.render.geometry}; {os.cpu_count()} cores; medians of {args.repeats} runs")
    print(f"{'workers':>8}{'steady samples/s':>18}{'end-to-end samples/s':>22}{'host cores busy':>17}  device memory")
    ways = compare_layered(spec, resolve_model(spec.model.name, args.model_dir), 64, args.repeats)
    print(f"render calls only, one process (bench/layered.py): layered batches {1 / ways[True][2]:.0f} samples/s, "
          f"a sample at a time {1 / ways[False][2]:.0f} samples/s")
    for workers in range(1, args.max_workers + 1):
        r = measure(spec, workers, 0, args.model_dir, args.repeats, env={"DATAGEN_EGL_DEVICE": str(args.device)},
                    probe=gpu_memory_mib)
        print(f"{workers:8d}{r['steady']:18.1f}{r['end_to_end']:22.1f}{r['cores']:17.2f}  {r['probe']}", flush=True)


def without_libraries(spec):
    """jobs/realistic.toml's recipe at ``spec``'s size, its texture-library options off."""
    recipe = load_spec(REPO / "jobs" / "realistic.toml")
    s = recipe.sampling
    sampling = dataclasses.replace(
        s, appearance=dataclasses.replace(s.appearance, texture_libraries=()),
        lighting=dataclasses.replace(s.lighting, texture_libraries=()),
        background=dataclasses.replace(s.background, kind="procedural", texture_libraries=()))
    return dataclasses.replace(spec, sampling=sampling)


def realistic_costs(spec, model, renderer, indices, repeats, t_plain):
    realistic = without_libraries(spec)
    generator = FaceGenerator(realistic, model, renderer)
    n = len(indices)
    generator.generate(indices[:4])
    params = [generator.sample_params(i) for i in indices]
    scenes = build_scenes(model, params)
    t_sample = timed(lambda: [generator.sample_params(i) for i in indices], repeats) / n
    t_geometry = timed(lambda: build_scenes(model, params), repeats) / n
    t_render = timed(lambda: renderer.render(scenes), repeats) / n
    t_total = timed(lambda: generator.generate(indices), repeats) / n
    triangles = np.mean([len(p.triangles) if p is not None else 0 for p in scenes.props])
    print(f"\n5. props and capture (jobs/realistic.toml without texture libraries), one process, per sample: "
          f"sampling {t_sample * 1e3:.2f} ms, geometry + props {t_geometry * 1e3:.1f} ms "
          f"({triangles:,.0f} prop triangles on average), render {t_render * 1e3:.1f} ms, rest (annotate, "
          f"background, capture) {(t_total - t_sample - t_geometry - t_render) * 1e3:.1f} ms -> {1 / t_total:.1f} "
          f"samples/s, {t_total / t_plain:.2f}x the quickstart's cost per sample")


def with_detail(spec):
    """``spec`` with jobs/details.toml's fine detail."""
    detail = load_spec(REPO / "jobs" / "details.toml").sampling.detail
    return dataclasses.replace(spec, sampling=dataclasses.replace(spec.sampling, detail=detail))


def detail_costs(spec, model, indices, repeats, t_plain, end_to_end_plain, workers, model_dir):
    detailed = with_detail(spec)
    started = time.perf_counter()
    generator = FaceGenerator(detailed, model)  # its renderer builds the detail bank
    t_bank = time.perf_counter() - started
    renderer, n = generator.renderer, len(indices)
    generator.generate(indices[:4])
    params = [generator.sample_params(i) for i in indices]
    scenes = build_scenes(model, params, topology=renderer.topology)
    t_sample = timed(lambda: [generator.sample_params(i) for i in indices], repeats) / n
    t_geometry = timed(lambda: build_scenes(model, params, topology=renderer.topology), repeats) / n
    t_render = timed(lambda: renderer.render(scenes), repeats) / n
    t_total = timed(lambda: generator.generate(indices), repeats) / n
    print(f"\n6. fine detail (jobs/details.toml's [sampling.detail], resolution {detailed.sampling.detail.resolution}), "
          f"one process, per sample: sampling {t_sample * 1e3:.2f} ms, geometry {t_geometry * 1e3:.1f} ms, render "
          f"{t_render * 1e3:.1f} ms, rest (annotate, background) {(t_total - t_sample - t_geometry - t_render) * 1e3:.1f} "
          f"ms -> {1 / t_total:.1f} samples/s, {t_total / t_plain:.2f}x the quickstart's cost per sample; the detail "
          f"bank's build, once per worker: {t_bank:.1f} s")
    sizes = {}
    for name, job in (("without", spec), ("with", detailed)):
        with tempfile.TemporaryDirectory() as out:
            summary = run_job(job, out, model_dir=model_dir, workers=workers, log=lambda m: None)
            sizes[name] = (sum(f.stat().st_size for f in Path(out).glob("*.h5")) / job.num_samples, summary.seconds)
    rate = spec.num_samples / sizes["with"][1]
    print(f"   end to end ({workers} workers, once each, the bank's build included): {rate:.1f} samples/s with detail, "
          f"{spec.num_samples / sizes['without'][1]:.1f} without (the median above: {end_to_end_plain:.1f}); shard bytes "
          f"per sample {sizes['with'][0] / 1024:.0f} KiB with, {sizes['without'][0] / 1024:.0f} KiB without")


def video_costs(spec, model, frames, repeats, t_still, workers, model_dir):
    from datagen.synth.flow import clip_flow, clip_motion

    video = dataclasses.replace(spec, video=dataclasses.replace(spec.video, frames=frames),
                                output=dataclasses.replace(spec.output, samples_per_shard=16 * frames))
    generator = FaceGenerator(video, model)
    clips = list(range(100, 104))
    generator.generate(clips[:1])
    t_clip = timed(lambda: generator.generate(clips), repeats) / len(clips)
    params = [p for c in clips for p in generator.clip_params(c)]
    scenes = [build_scenes(model, params[k * frames:(k + 1) * frames], topology=generator.renderer.topology)
              for k in range(len(clips))]
    renderer = generator.renderer
    t_moving = timed(lambda: [renderer.render(s, clip_motion(s)) for s in scenes], repeats) / len(clips)
    t_plain = timed(lambda: [renderer.render(s) for s in scenes], repeats) / len(clips)
    rendered = renderer.render(scenes[0], clip_motion(scenes[0]))
    zero = np.zeros((frames - 1, 2))
    t_flow = timed(lambda: clip_flow(rendered, zero, zero), repeats) / (frames - 1)
    print(f"\n7. video clips of {frames} frames (the quickstart's priors, [video] defaults), one process: "
          f"{t_clip * 1e3:.0f} ms per clip = {t_clip / (frames * t_still):.2f}x {frames} stills; render "
          f"{t_moving / frames * 1e3:.1f} ms per frame with the neighbour frames' vertices, {t_plain / frames * 1e3:.1f} "
          f"ms without; flow + occlusion on the host {t_flow * 1e3:.1f} ms per pair (both directions)")
    job = with_overrides(video, num_samples=max(2 * workers, 256 // frames))
    with tempfile.TemporaryDirectory() as out:
        summary = run_job(job, out, model_dir=model_dir, workers=workers, log=lambda m: None)
        size = sum(f.stat().st_size for f in Path(out).glob("*.h5")) / (job.num_samples * frames)
    clips_per_s = job.num_samples / summary.seconds
    print(f"   end to end ({workers} workers, {job.num_samples} clips, once, cluster start included): "
          f"{clips_per_s * frames:.1f} frames/s, {clips_per_s * (frames - 1):.1f} frame pairs/s; shard bytes per "
          f"frame {size / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
