"""Photo fitting throughput: `datagen fit`'s per-photo work, with landmarks given and detected.

    python bench/fitting.py [--repeats 3] [--model ict-facekit] [--model-dir DIR] [--faces ../shared/faces]

For every photo in --faces with a .pts file (and, for detection, every photo MediaPipe finds one
face in), times one process doing what `datagen fit` does per photo (read, landmarks, crop, eos +
landmark refinement, photometric refinement, lighting, UV albedo), after a warm-up photo. Prints
photos/s as medians of --repeats passes, all from this one run, the photometric step's share, the
same without it (`PhotoFitter(photometric=False)`), and each photo's landmark and photometric
errors before and after the photometric step.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from datagen.photo.landmarks import Detector, LandmarkError, read_pts
from datagen.models.registry import resolve_model
from datagen.photo.fitter import PhotoFitter, read_photo


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", default="ict-facekit")
    parser.add_argument("--model-dir", default=None)
    parser.add_argument("--faces", default=str(Path(__file__).resolve().parents[2] / "shared" / "faces"))
    args = parser.parse_args()

    model = resolve_model(args.model, args.model_dir)
    fitter = PhotoFitter(model)
    landmarks_only = PhotoFitter(model, ctx=fitter.renderer.ctx, photometric=False)
    detector = Detector()
    photos = sorted(p for p in Path(args.faces).iterdir() if p.suffix.lower() in (".png", ".jpg", ".ppm"))
    annotated = [p for p in photos if p.with_suffix(".pts").exists()]
    detectable = []
    for p in photos:
        try:
            detector(read_photo(p), p.name)
            detectable.append(p)
        except LandmarkError as e:
            print(f"(detection: {e})")
    fitter.fit(annotated[0])  # warm-up: eos model, shaders

    def timed(paths, detect, fitter=fitter):
        seconds, detection, errors = [], [], {}
        for _ in range(args.repeats):
            start = time.perf_counter()
            spent = 0.0
            for p in paths:
                pts = None
                if detect:
                    t = time.perf_counter()
                    image = read_photo(p)
                    landmarks = detector(image, p.name)
                    spent += time.perf_counter() - t
                    tmp = Path("/tmp") / f"bench-{p.stem}.pts"
                    tmp.write_text("version: 1\nn_points: 68\n{\n" + "".join(f"{x + 0.5} {y + 0.5}\n" for x, y in landmarks) + "}\n")
                    pts = tmp
                fitted = fitter.fit(p, pts)
                errors[p.name] = fitted.fit.error_iod
                photometric[p.name] = fitted.photometric
            seconds.append(time.perf_counter() - start)
            detection.append(spent)
        return statistics.median(seconds), statistics.median(detection), errors

    photometric = {}
    print(f"model {model.name}, {len(annotated)} annotated photos, {len(detectable)} with one detectable face; "
          f"medians of {args.repeats} passes\n")
    wall, _, errors = timed(annotated, detect=False)
    print(f"landmarks from .pts: {len(annotated) / wall:.2f} photos/s ({1000 * wall / len(annotated):.0f} ms/photo)")
    step = statistics.median(r.seconds for r in photometric.values())
    print(f"  of which the photometric step: {1000 * step:.0f} ms/photo (median)")
    for name, r in photometric.items():
        print(f"  {name}: {r.describe()}, {r.compared_vertices} vertices compared, {r.steps} steps")
    wall_l, _, _ = timed(annotated, detect=False, fitter=landmarks_only)
    print(f"landmarks only:      {len(annotated) / wall_l:.2f} photos/s ({1000 * wall_l / len(annotated):.0f} ms/photo)")
    wall_d, detect_s, errors_d = timed(detectable, detect=True)
    print(f"landmarks detected:  {len(detectable) / wall_d:.2f} photos/s ({1000 * wall_d / len(detectable):.0f} ms/photo, "
          f"of which detection {1000 * detect_s / len(detectable):.0f} ms)")
    print("  landmark error (% IOD, against the detected points): "
          + ", ".join(f"{k} {100 * v:.1f}" for k, v in errors_d.items()))
    for p in annotated:  # detection against the annotations, where both exist
        if p in detectable:
            truth, found = read_pts(p.with_suffix(".pts")), detector(read_photo(p), p.name)
            iod = float(((truth[36] - truth[45]) ** 2).sum() ** 0.5)
            print(f"  detected vs annotated {p.name}: {100 * float(((found - truth) ** 2).sum(1).mean() ** 0.5) / iod:.1f}% IOD (RMS)")


if __name__ == "__main__":
    main()
