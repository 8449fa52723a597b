"""Photo-realistic re-renders: how exactly a job that changes nothing gives its photos back, and
what a sample costs.

    datagen fit ../shared/faces --out /tmp/prlib --workers 1
    python bench/photoreal.py --library /tmp/prlib --size 224

Per fitted photo: PSNR of the unchanged re-render against the library's crop (resized to the
job's size) over the face the re-render replaces and over the whole image; then the median time
per sample of the default [photoreal] changes (pose, expression, light), per-photo layers warm.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from PIL import Image

from datagen.models.registry import resolve_model
from datagen.run.generator import FaceGenerator
from datagen.spec import parse_spec


def job(library: str, size: int, unchanged: bool) -> str:
    changes = ('yaw_change_deg = [0.0, 0.0]\npitch_change_deg = [0.0, 0.0]\nroll_change_deg = [0.0, 0.0]\n'
               'new_expression_probability = 0.0\nrelight_probability = 0.0\n') if unchanged else ""
    return (f'name = "photoreal-bench"\nnum_samples = 64\n[render]\nwidth = {size}\nheight = {size}\n'
            f'supersample = 2\n[photoreal]\nlibrary = "{library}"\n{changes}')


def psnr(a, b, where) -> float:
    error = ((a.astype(float) - b.astype(float))[where] ** 2).mean()
    return float("inf") if error == 0 else 10 * np.log10(255 ** 2 / error)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--library", required=True)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--model-dir", default=None)
    args = parser.parse_args()
    spec = parse_spec(job(args.library, args.size, unchanged=True), "<unchanged>")
    generator = FaceGenerator(spec, resolve_model(spec.model_reference(), args.model_dir))
    photos = generator.photos
    first = {}
    for index in range(64):
        first.setdefault(int(generator.sample_params(index).background[1]), index)
        if len(first) == len(photos):
            break
    arrays = generator.generate(sorted(first.values()))
    print(f"a job that changes nothing, {args.size}x{args.size}: PSNR against the library's crop")
    for (k, _), image in zip(sorted(first.items(), key=lambda item: item[1]), arrays["image"]):
        crop = np.asarray(Image.fromarray(photos.load(k).crop).resize((args.size, args.size), Image.LANCZOS))
        face = generator.composer.layers(k).face
        print(f"  {photos[k].name:<16} face {psnr(image, crop, face):6.1f} dB ({face.sum()} pixels), "
              f"image {psnr(image, crop, np.ones(face.shape, bool)):6.1f} dB")
    spec = parse_spec(job(args.library, args.size, unchanged=False), "<changed>")
    generator = FaceGenerator(spec, generator.model, generator.renderer)
    generator.generate(range(16))  # every photo's layers made
    times = []
    for repeat in range(3):
        started = time.perf_counter()
        generator.generate(range(16 + 16 * repeat, 32 + 16 * repeat))
        times.append((time.perf_counter() - started) / 16)
    print(f"new pose, expression and light ([photoreal] defaults): {1e3 * statistics.median(times):.0f} ms per "
          f"sample (median of 3 x 16, one process, layers warm)")


if __name__ == "__main__":
    main()
