"""The fidelity table: which data recipe transfers to real faces. One network and one training
budget; datasets that differ in one factor each; every row scored on AFLW2000-3D (the protocol of
``datagen evaluate --benchmark``), on the annotated photos, and on its own held-out renders.

    python bench/fidelity.py [--samples 4000] [--steps 1750 | --minutes 8] [--rows default,seed,...]
                             [--work bench-fidelity] [--shared ../shared] [--model-dir DIR]

Rows (later issues add theirs: hair, details, ...):
  default     the train20k recipe (jobs/train20k.toml) at --samples
  seed        the same, another data and training seed: the run-to-run spread
  skins       + photo skins: half the faces take the albedo of a photo fitted from <shared>/faces
  photoreal   the default data + a quarter as many photo-realistic re-renders of those photos
              (jobs/photoreal.toml at 128x128), trained on together (datagen train --data A --data B)
  backgrounds + image backgrounds: 70% of the faces over the parts of those photos away from their head
  no-augment  the default data, the trainer's augmentations off
  (issue 15's options, one each, then together:)
  hair        + procedural hair on 85% of the faces, eyelashes and brows with relief on all ([sampling.hair])
  capture     + camera effects on 80% of the images ([sampling.capture])
  balanced-skin + skin tones balanced over the ITA categories ([sampling.appearance] skin_tones)
  env-light   + half the faces lit by the lighting recovered from the photos ([sampling.lighting])
  clothing-occluders + shoulders and clothing, glasses on 20%, a hand on 10% ([sampling.clothing], [sampling.occluders])
  new-default every option above that needs no texture library, together (the candidate default priors)
  new-default-seed  the same, another data and training seed
  realistic   new-default + photo skins + image backgrounds + recovered lighting (needs a texture library)
  realistic-seed  the same, another data and training seed
A row's data and run folders in --work are reused when they are complete (delete them to redo a row).
Prints one line per row: synthetic held-out landmark NME (of the landmark box), AFLW2000-3D NME
(mean of the yaw bins) and the mean face's at the network's pose, their ratio (the domain gap),
and the photos' NME (of the inter-ocular distance). Everything it makes goes to --work.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np

from datagen.run.fit_job import fit_library
from datagen.spec import ClusterSpec
from datagen.reconstruction.benchmark import evaluate_aflw2000
from datagen.reconstruction.evaluation import evaluate_photos, evaluate_synthetic
from datagen.reconstruction.inference import Reconstructor
from datagen.reconstruction.runner import train
from datagen.reconstruction.training import TrainConfig
from datagen.run.job import run_job
from datagen.spec import load_spec, with_overrides

REPO = Path(__file__).resolve().parents[1]
ROWS = ("default", "seed", "skins", "photoreal", "backgrounds", "no-augment", "hair", "capture", "balanced-skin",
        "env-light", "clothing-occluders", "new-default", "new-default-seed", "realistic", "realistic-seed")
NEEDS_LIBRARY = {"skins", "photoreal", "backgrounds", "env-light", "realistic"}
# one option each: (table, keys)
OPTIONS = {
    "hair": [("hair", {"probability": 0.85, "eyelash_probability": 1.0, "brow_relief_probability": 1.0})],
    "capture": [("capture", {"probability": 0.8})],
    "balanced-skin": [("appearance", {"skin_tones": "balanced"})],
    "clothing-occluders": [("clothing", {"probability": 1.0}),
                           ("occluders", {"glasses_probability": 0.2, "hand_probability": 0.1})],
}


def with_sampling(spec, table: str, **values):
    """``spec`` with keys of one ``[sampling.<table>]`` changed."""
    changed = dataclasses.replace(getattr(spec.sampling, table), **values)
    return dataclasses.replace(spec, sampling=dataclasses.replace(spec.sampling, **{table: changed}))


def recipe(row: str, samples: int, library: Path):
    """({data folder name: job spec}, training seed, augment) of a row: its datasets are trained on together."""
    spec = with_overrides(load_spec(REPO / "jobs" / "train20k.toml"), num_samples=samples)
    spec = with_sampling(spec, "appearance", skin_tones="uniform")  # the default row: the priors before balanced tones
    if row == "seed":
        return {"data-seed": dataclasses.replace(spec, seed=spec.seed + 1000)}, 1, True
    if row == "skins":
        return {"data-skins": with_sampling(spec, "appearance", texture_libraries=(str(library),),
                                            texture_probability=0.5)}, 0, True
    if row == "photoreal":
        photoreal = load_spec(REPO / "jobs" / "photoreal.toml")
        photoreal = dataclasses.replace(photoreal, name="photoreal128", num_samples=samples // 4,
                                        render=spec.render, output=spec.output,
                                        photoreal=dataclasses.replace(photoreal.photoreal, library=str(library)))
        photoreal = with_sampling(photoreal, "detail", probability=0.0)  # the row as measured, before the job had detail
        return {"data-default": spec, "data-photoreal": photoreal}, 0, True
    with_library = {"skins": ("appearance", {"texture_libraries": (str(library),), "texture_probability": 0.5}),
                    "backgrounds": ("background", {"kind": "mixed", "image_probability": 0.7,
                                                   "texture_libraries": (str(library),)}),
                    "env-light": ("lighting", {"texture_libraries": (str(library),), "library_probability": 0.5})}
    if row in with_library:
        table, keys = with_library[row]
        return {f"data-{row}": with_sampling(spec, table, **keys)}, 0, True
    if row in OPTIONS or row.startswith(("new-default", "realistic")):
        changes = OPTIONS.get(row) or [change for option in OPTIONS.values() for change in option]
        if row.startswith("realistic"):
            changes = changes + list(with_library.values())
        for table, keys in changes:
            spec = with_sampling(spec, table, **keys)
        if row.endswith("-seed"):
            return {f"data-{row}": dataclasses.replace(spec, seed=spec.seed + 1000)}, 1, True
        return {f"data-{row}": spec}, 0, True
    return {"data-default": spec}, 0, row != "no-augment"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=4000)
    parser.add_argument("--steps", type=int, default=1750, help="optimiser steps a row trains (0: --minutes)")
    parser.add_argument("--minutes", type=float, default=8.0, help="with --steps 0: minutes a row trains")
    parser.add_argument("--rows", default=",".join(ROWS))
    parser.add_argument("--work", type=Path, default=REPO / "bench-fidelity")
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared")
    parser.add_argument("--model-dir", default=None)
    args = parser.parse_args()
    rows = args.rows.split(",")
    unknown = set(rows) - set(ROWS)
    if unknown:
        parser.error(f"unknown rows {sorted(unknown)}; choose from {', '.join(ROWS)}")
    args.work.mkdir(parents=True, exist_ok=True)
    library = args.work / "skins"
    if NEEDS_LIBRARY & set(rows) and not (library / "index.json").exists():
        summary = fit_library([args.shared / "faces"], library, "ict-facekit", args.model_dir, cluster=ClusterSpec(workers=1))
        print(f"texture library: {summary.fitted} photos of {args.shared / 'faces'} fitted into {library}")
    budget = f"{args.steps} optimiser steps of 64" if args.steps else f"{args.minutes:g} minutes on this machine"
    print(f"budget per row: {args.samples} samples at 128x128 (train20k's recipe), {budget} of training")
    print(f"{'recipe':<12} {'synthetic':>9} {'AFLW2000':>9} {'mean face':>9} {'gap':>6} {'photos':>7}   (NME %)")
    for row in rows:
        specs, seed, augment = recipe(row, args.samples, library)
        run = args.work / f"run-{row}"
        started = time.perf_counter()
        for name, spec in specs.items():
            run_job(spec, args.work / name, model_dir=args.model_dir, log=lambda m: None)
        data = [str(args.work / name) for name in specs]
        train(TrainConfig(data=data if len(data) > 1 else data[0], out=str(run), epochs=1000, steps=args.steps,
                          minutes=0 if args.steps else args.minutes, seed=seed, augment=augment,
                          evaluate_samples=300, model_dir=args.model_dir), log=lambda m: None)
        reconstructor = Reconstructor(run / "best.pt", args.model_dir)
        synthetic = evaluate_synthetic(reconstructor, data[0], 300)["landmark_nme"]
        aflw = evaluate_aflw2000(reconstructor, args.shared / "aflw2000")
        photos = evaluate_photos(reconstructor, args.shared / "faces")
        real, mean_face = aflw["nme"]["mean_of_bins"], aflw["mean_face_nme"]["mean_of_bins"]
        print(f"{row:<12} {100 * synthetic:9.2f} {100 * real:9.2f} {100 * mean_face:9.2f} {real / synthetic:6.2f} "
              f"{100 * np.mean([r['nme'] for r in photos.values()]):7.2f}   ({(time.perf_counter() - started) / 60:.1f} min)",
              flush=True)


if __name__ == "__main__":
    main()
