"""End-to-end throughput of the quickstart job, next to the render-only limit and a numpy rasteriser.

    python bench/throughput.py [--samples 256] [--workers 0] [--repeats 5] [--model-dir DIR]

Prints (medians of --repeats runs, all measured in this one run):
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
import tempfile
import time

import numpy as np

from datagen.run.generator import FaceGenerator
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
    args = parser.parse_args()

    spec = with_overrides(load_default_spec(), num_samples=args.samples)
    workers = args.workers or os.cpu_count()
    model = resolve_model(spec.model.name, args.model_dir)
    print(f"quickstart job: {spec.num_samples} samples {spec.render.width}x{spec.render.height}, model "
          f"{model.name} ({model.num_vertices} vertices), {workers} workers, {os.cpu_count()} cores; "
          f"medians of {args.repeats} runs")
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
