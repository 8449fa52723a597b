"""How a trained network's dense points and the model fit to them do, and what the fit's settings change.

    python bench/fit_settings.py --checkpoint runs/coarse/best.pt --data data/train20k [--photos ../shared/faces]

On held-out samples: the error of the network's dense points (pixels of the crop) and their
predicted sigmas; the face-region vertex error ratio to the mean face's (rigid alignment, as
`datagen evaluate`) of the regressed parameters and of the fit (refine.fit_to_points) under a few
settings, with the fit's time per batch; how well the fit knows the face's size (identity mode 0)
and the ratio when parts of its identity are replaced by the truth; the fit to the points of
several crops of each face at once (test-time augmentation); with --photos, the mean landmark
NME of the annotated photos with and without the fit. The shipped settings are refine.SIGMA_SCALE / IDENTITY_SIGMA.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from datagen.data.dataset import ShardedDataset
from datagen.reconstruction import refine
from datagen.images import crop_photo
from datagen.reconstruction.data import FaceTrainingSet, face_crop_box, network_input, split_indices
from datagen.reconstruction.evaluation import evaluate_photos, vertex_error
from datagen.reconstruction.inference import Reconstructor
from datagen.reconstruction.network import POINT_LOG_SIGMA, FaceDecoder
from datagen.reconstruction.training import true_projection

# (points' sigma scale, identity prior sigma, prior centred on the regressed identity?)
SETTINGS = ((refine.SIGMA_SCALE, refine.IDENTITY_SIGMA, True), (1.0, 1.0, False), (3.0, 1.0, False),
            (1.0, 0.7, True), (10.0, 0.7, True), (3.0, 0.5, True))
# Crops of one face for the multi-crop fit: (side factor, centre shift x, y as fractions of the side)
VIEWS = ((1.0, 0.0, 0.0), (1.12, 0.0, 0.0), (0.89, 0.0, 0.0), (1.0, 0.05, 0.05), (1.0, -0.05, -0.05),
         (1.0, 0.05, -0.05), (1.0, -0.05, 0.05))


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
    shipped = refine.fit_to_points(decoder, points, sigma, batch["intrinsics"], **start)
    size_r2 = 1 - ((shipped["identity"][:, 0] - batch["identity"][:, 0]) ** 2).mean() / batch["identity"][:, 0].var()
    print(f"identity mode 0 (the face's size, 95% of it) after the shipped fit: R^2 {size_r2:.3f}")
    for label, true_modes in (("the true mode 0 (size)", slice(0, 1)), ("every true mode but 0", slice(1, None)),
                              ("the true first 10 modes", slice(0, 10))):
        identity = shipped["identity"].clone()
        identity[:, true_modes] = batch["identity"][:, true_modes]
        print(f"shipped fit with {label:38s} {ratio({**shipped, 'identity': identity}):.3f}")
    print(f"shipped fit to the points of {len(VIEWS)} crops of each face at once          "
          f"{ratio(multi_crop_fit(reconstructor, args.data, held)):.3f}")
    if args.photos:
        with_fit = evaluate_photos(reconstructor, args.photos)
        reconstructor.point_decoder = None
        without = evaluate_photos(reconstructor, args.photos)
        for label, rows in (("with the fit", with_fit), ("regressed parameters", without)):
            print(f"photos, mean landmark NME {label}: {100 * np.mean([r['nme'] for r in rows.values()]):.2f}% "
                  f"(of the inter-ocular distance, {len(rows)} photos)")


@torch.no_grad()
def multi_crop_fit(reconstructor, data, held) -> dict:
    """The shipped fit to the dense points of every crop in VIEWS at once (test-time augmentation),
    in the first crop's pixels; the start: the first crop's pose, the views' mean identity and expression."""
    shards = ShardedDataset(data, fields=["image", "landmarks_2d", "params/intrinsics"])
    samples = [shards[int(i)] for i in held]
    size = reconstructor.size
    boxes = np.array([face_crop_box(s["landmarks_2d"].astype(np.float64)) for s in samples])
    first_x0, first_y0, first_side = boxes.T
    points, sigmas, outputs = [], [], []
    for factor, dx, dy in VIEWS:
        side = first_side * factor
        x0, y0 = first_x0 + first_side * (0.5 + dx) - side / 2, first_y0 + first_side * (0.5 + dy) - side / 2
        crops = np.stack([crop_photo(s["image"], box, size) for s, box in zip(samples, zip(x0, y0, side))])
        out = reconstructor.net(torch.from_numpy(network_input(crops)))
        # crop pixels -> photo pixels -> the first crop's pixels
        photo = (out["points"].double() + 0.5) * torch.from_numpy(side)[:, None, None] + torch.from_numpy(np.c_[x0, y0])[:, None]
        points.append((photo - torch.from_numpy(np.c_[first_x0, first_y0])[:, None]) * torch.from_numpy(size / first_side)[:, None, None])
        sigmas.append(out["point_log_sigma"].clamp(*POINT_LOG_SIGMA).exp() * factor)  # crop pixels of this view -> the first's
        outputs.append(out)
    photo_intrinsics = np.stack([s["params/intrinsics"] for s in samples]).astype(np.float64)
    k = size / first_side
    intrinsics = torch.from_numpy(np.c_[photo_intrinsics[:, :2] * k[:, None], (photo_intrinsics[:, 2] - first_x0) * k,
                                        (photo_intrinsics[:, 3] - first_y0) * k]).float()
    start = refine.final_parameters(outputs[0], intrinsics, size)
    start["identity"] = torch.stack([o["identity"] for o in outputs]).mean(0)
    start["expression"] = torch.stack([o["expression"] for o in outputs]).mean(0)
    # n views of one face are not n independent looks: their sigmas are scaled by sqrt(n)
    all_points = FaceDecoder(reconstructor.model, np.tile(reconstructor.net.point_ids.cpu().numpy(), len(VIEWS)))
    return refine.fit_to_points(all_points, torch.cat(points, 1).float(), torch.cat(sigmas, 1).float() * len(VIEWS) ** 0.5,
                                intrinsics, **start)


if __name__ == "__main__":
    main()
