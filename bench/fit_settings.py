"""How a trained network's dense points and the model fit to them do, and what the fit's settings change.

    python bench/fit_settings.py --checkpoint runs/coarse/best.pt --data data/train20k [--photos ../shared/faces]

On held-out samples: the error of the network's dense points (pixels of the crop) and their
predicted sigmas; the face-region vertex error ratio to the mean face's (rigid alignment, as
`datagen evaluate`) of the regressed parameters and of the fit (refine.fit_to_points) under a few
settings, with the fit's time per batch; with --photos, the mean landmark NME of the annotated
photos with and without the fit. The shipped settings are refine.SIGMA_SCALE / IDENTITY_SIGMA.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from datagen.dataset import ShardedDataset
from datagen.reconstruction import refine
from datagen.reconstruction.data import FaceTrainingSet, split_indices
from datagen.reconstruction.evaluation import evaluate_photos, vertex_error
from datagen.reconstruction.inference import Reconstructor
from datagen.reconstruction.network import POINT_LOG_SIGMA, FaceDecoder
from datagen.reconstruction.training import true_projection

# (points' sigma scale, identity prior sigma, prior centred on the regressed identity?)
SETTINGS = ((refine.SIGMA_SCALE, refine.IDENTITY_SIGMA, True), (1.0, 1.0, False), (3.0, 1.0, False),
            (1.0, 0.7, True), (10.0, 0.7, True), (3.0, 0.5, True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--samples", type=int, default=384, help="held-out samples, one batch")
    parser.add_argument("--photos", default=None, help="a folder of photos with .pts annotations")
    args = parser.parse_args()
    reconstructor = Reconstructor(args.checkpoint)
    model, size, decoder = reconstructor.model, reconstructor.size, reconstructor.point_decoder
    if decoder is None:
        raise SystemExit(f"{args.checkpoint}: a network without dense points (trained with --points 0)")
    held = split_indices(len(ShardedDataset(args.data)))[1][:args.samples]
    batch = next(iter(torch.utils.data.DataLoader(FaceTrainingSet(args.data, held, size, augment=False),
                                                  batch_size=len(held))))
    with torch.no_grad():
        predicted = reconstructor.net(batch["image"])
    points, sigma = (predicted["points"] + 0.5) * size, predicted["point_log_sigma"].clamp(*POINT_LOG_SIGMA).exp()
    error = (points - true_projection(decoder, batch, size)).norm(dim=-1)
    print(f"{len(held)} held-out samples, {decoder.mean.shape[0]} dense points: error median {error.median():.2f} px, "
          f"mean {error.mean():.2f} px; predicted sigma median {sigma.median():.2f} px")

    face = np.flatnonzero(model.region_vertices("face")) if "face" in model.region_names else np.arange(model.num_vertices)
    face_decoder = FaceDecoder(model, face)
    truth = face_decoder(batch["identity"], batch["expression"]).double().numpy()
    baseline = vertex_error(np.broadcast_to(model.mean[face].astype(np.float64), truth.shape), truth).mean()

    def ratio(parameters):
        shape = face_decoder(parameters["identity"], parameters["expression"]).double().numpy()
        return vertex_error(shape, truth).mean() / baseline

    start = refine.final_parameters(predicted, batch["intrinsics"], size)
    print(f"regressed parameters                                      {ratio(start):.3f}")
    for sigma_scale, identity_sigma, centred in SETTINGS:
        began = time.perf_counter()
        fit = refine.fit_to_points(decoder, points, sigma, batch["intrinsics"],
                                   **{**start, "identity": start["identity"] if centred else 0 * start["identity"]},
                                   sigma_scale=sigma_scale, identity_sigma=identity_sigma)
        seconds = time.perf_counter() - began
        centre = "the regressed identity" if centred else "the mean face"
        print(f"fit: sigma x {sigma_scale:<4g} identity sigma {identity_sigma:<4g} about {centre:22s} {ratio(fit):.3f}"
              f"   ({seconds:.1f} s)")
    if args.photos:
        with_fit = evaluate_photos(reconstructor, args.photos)
        reconstructor.point_decoder = None
        without = evaluate_photos(reconstructor, args.photos)
        for label, rows in (("with the fit", with_fit), ("regressed parameters", without)):
            print(f"photos, mean landmark NME {label}: {100 * np.mean([r['nme'] for r in rows.values()]):.2f}% "
                  f"(of the inter-ocular distance, {len(rows)} photos)")


if __name__ == "__main__":
    main()
