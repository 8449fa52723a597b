"""The host's share of a sample, piece by piece: what bench/host_cost.py's totals are made of.

    python bench/host_parts.py [--samples 64] [--repeats 5] [--model-dir DIR]

The quickstart job at 224x224, one process; each piece timed alone over --samples samples, median of
--repeats, in ms per sample:
  generating: sampling the parameters, numpy's made background, compositing over it, numpy's float16
  conversion of the normals (what readback.HalfNormals does on the device), copying read-back pixels;
  writing (``ShardWriter``'s steps): the content checksum (SHA-256), the finite check (float16 on its
  bits, and numpy's isfinite for comparison), HDF5 in memory (chunks, Fletcher-32, the job's
  compression), writing and syncing the file, and the writer's byte comparison read past the page cache.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

from datagen.data.compression import compression_options
from datagen.data.shards import ContentHash, all_finite, same_bytes
from datagen.files import drop_cached_pages
from datagen.models.registry import resolve_model
from datagen.run.generator import FaceGenerator
from datagen.spec import load_default_spec, with_overrides
from datagen.synth.background import composite, make_background


def per_sample(work, samples: int, repeats: int) -> float:
    """Median over ``repeats`` of ``work()``'s seconds, per sample, in ms."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return 1e3 * statistics.median(times) / samples


def shard_image(arrays: dict, options: dict) -> bytes:
    """The shard's bytes as the writer assembles them in memory (HDF5's core driver)."""
    n = len(arrays["sample_index"])
    f = h5py.File("parts.h5", "w", driver="core", backing_store=False, libver=("v110", "latest"))
    for name, a in arrays.items():
        f.create_dataset(name, data=a, chunks=(1, *a.shape[1:]) if a.ndim > 1 else (n,), fletcher32=True,
                         **(options if a.ndim > 1 else {}))
    f.flush()
    image = f.id.get_file_image()
    f.close()
    return image


def write_and_sync(image: bytes, folder: str) -> None:
    with open(Path(folder) / "shard.h5", "wb") as f:
        f.write(image)
        f.flush()
        os.fsync(f.fileno())


def compare_read_back(image: bytes, folder: str) -> None:
    with open(Path(folder) / "shard.h5", "rb", buffering=0) as f:
        drop_cached_pages(f.fileno())
        assert same_bytes(f, memoryview(image))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--model-dir", default=None)
    args = parser.parse_args()
    spec = with_overrides(load_default_spec(), num_samples=args.samples)
    model = resolve_model(spec.model.name, args.model_dir)
    generator = FaceGenerator(spec, model)
    indices = range(1000, 1000 + args.samples)
    params = [generator.sample_params(i) for i in indices]
    rendered = generator._submit(params)[2].result()
    arrays = generator.generate(indices)
    normals = rendered.normal.astype(np.float32)
    n, r, w, h = args.samples, args.repeats, spec.render.width, spec.render.height
    made = [make_background(spec.seed, i, np.array([0, -1]), [], w, h) for i in indices]
    print(f"host pieces, quickstart {w}x{h}, {n} samples, ms per sample (median of {r}):")
    print("  generating:")
    rows = [("sampling the parameters", lambda: [generator.sample_params(i) for i in indices]),
            ("numpy's made background", lambda: [make_background(spec.seed, i, np.array([0, -1]), [], w, h) for i in indices]),
            ("compositing", lambda: [composite(rendered.colour[k], made[k]) for k in range(n)]),
            ("float16 normals by numpy", lambda: normals.astype(np.float16)),
            ("copying read-back pixels (colour, depth, normals)",
             lambda: [np.ascontiguousarray(a[:, ::-1]) for a in (rendered.colour, rendered.depth, normals)])]
    for name, work in rows:
        print(f"    {name:<52}{per_sample(work, n, r):7.3f}")
    print("  writing:")
    options = compression_options(spec.output.compression, spec.output.compression_level)
    image = shard_image(arrays, options)
    half = arrays["normal"]
    with tempfile.TemporaryDirectory() as folder:
        rows = [("content checksum (SHA-256 of the arrays)", lambda: ContentHash(arrays).update(arrays)),
                ("finite check, float16 normals on their bits", lambda: all_finite(half)),
                ("  the same with numpy's isfinite", lambda: np.isfinite(half).all()),
                (f"HDF5 in memory (chunks, Fletcher-32, {spec.output.compression})", lambda: shard_image(arrays, options)),
                ("writing and syncing the file", lambda: write_and_sync(image, folder)),
                ("byte comparison, read past the page cache", lambda: compare_read_back(image, folder))]
        for name, work in rows:
            print(f"    {name:<52}{per_sample(work, n, r):7.3f}")
    print(f"  shard bytes per sample: {len(image) / n / 1e3:.0f} kB")


if __name__ == "__main__":
    main()
