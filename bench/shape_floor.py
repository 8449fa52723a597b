"""What the held-out shape metric can and cannot see: errors of oracle predictions, no network.

    python bench/shape_floor.py --data data/train20k

Over a dataset's held-out samples (their true identity and expression), prints the face-region
vertex error ratio to the mean face's (rigid alignment, as `datagen evaluate`) of:
- the true shape at the average size (an oracle that sees the shape but not its size, which the
  framing of a crop hides), the true shape with identity mode 0 (95% of it a uniform scale) set
  to zero, and with mode 0 estimated only so well (R^2 from 0.4 to 0.99);
- the true identity with no expression, no identity with the true expression, and the first k
  identity modes with the true expression;
how well a linear regression predicts a face's size from its size-free shape (R² on samples
it was not fitted on): how much of the size the model's proportions give away; and the error of
the reconstructor's model fit (refine.fit_to_points, the sampling prior N(0, 1) on identity) to
the true crop positions of the network's dense points with independent noise of a few pixels:
how precise the points must be for a given error ratio.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from datagen.data.dataset import ShardedDataset
from datagen.reconstruction.data import FaceTrainingSet, split_indices, translation_of
from datagen.reconstruction.evaluation import vertex_error
from datagen.reconstruction.network import FaceDecoder
from datagen.reconstruction.refine import fit_to_points
from datagen.reconstruction.training import TrainConfig, dense_vertex_ids, true_projection


def shapes(model, vertex_ids, identity, expression):
    """(B, V, 3) float64 vertices ``vertex_ids`` of the faces, through the trainer's decoder."""
    decoder = FaceDecoder(model, vertex_ids)
    return decoder(torch.from_numpy(identity).float(), torch.from_numpy(expression).float()).double().numpy()


def size_regression_r2(model, vertex_ids, identity, expression) -> float:
    truth = shapes(model, vertex_ids, identity, expression)
    centred = truth - truth.mean(1, keepdims=True)
    size = np.sqrt((centred ** 2).sum(-1).mean(1))
    normalised = (centred / size[:, None, None]).reshape(len(truth), -1)
    fit, test = slice(0, len(truth) * 4 // 5), slice(len(truth) * 4 // 5, None)
    mean = normalised[fit].mean(0)
    _, _, vt = np.linalg.svd(normalised[fit] - mean, full_matrices=False)
    features = np.c_[np.ones(len(truth)), (normalised - mean) @ vt[:150].T]
    weights = np.linalg.lstsq(features[fit], np.log(size[fit]), rcond=None)[0]
    residual = np.log(size[test]) - features[test] @ weights
    return 1 - residual.var() / np.log(size[test]).var()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument("--samples", type=int, default=1000, help="held-out samples (as datagen evaluate)")
    parser.add_argument("--regression-samples", type=int, default=5000)
    parser.add_argument("--fit-samples", type=int, default=256, help="held-out samples for the dense-point fits")
    args = parser.parse_args()
    data = ShardedDataset(args.data, fields=["params/identity", "params/expression"])
    model = data.model()
    face = np.flatnonzero(model.region_vertices("face")) if "face" in model.region_names else np.arange(model.num_vertices)

    def params(indices):
        rows = [data[int(i)] for i in indices]
        return (np.stack([r["params/identity"] for r in rows]).astype(np.float64),
                np.stack([r["params/expression"] for r in rows]).astype(np.float64))

    identity, expression = params(split_indices(len(data))[1][:args.samples])
    truth = shapes(model, face, identity, expression)
    baseline = vertex_error(np.broadcast_to(model.mean[face].astype(np.float64), truth.shape), truth).mean()

    def report(label, predicted):
        print(f"{label:55s} {vertex_error(predicted, truth).mean() / baseline:.3f}")

    print(f"{len(truth)} held-out samples, {len(face)} face vertices; mean face error {baseline:.2f} mm (ratio 1)")
    centred = truth - truth.mean(1, keepdims=True)
    size = np.sqrt((centred ** 2).sum(-1).mean(1))
    report("true shape at the average size", centred * (size.mean() / size)[:, None, None])
    no_mode0 = identity.copy()
    no_mode0[:, 0] = 0
    report("true shape, identity mode 0 set to zero", shapes(model, face, no_mode0, expression))
    # Every mode true but the size mode, estimated by a Bayes estimator with the given R^2: estimate =
    # r (x + n), n ~ N(0, var(x) (1 - r) / r) (a Gaussian's posterior mean from a noisy reading).
    noise = np.random.default_rng(0).normal(size=len(identity))
    for r2 in (0.4, 0.6, 0.8, 0.9, 0.95, 0.99):
        estimated = identity.copy()
        estimated[:, 0] = r2 * (identity[:, 0] + noise * identity[:, 0].std() * np.sqrt((1 - r2) / r2))
        report(f"true shape, mode 0 estimated with R^2 {r2:g}", shapes(model, face, estimated, expression))
    report("true identity, no expression", shapes(model, face, identity, 0 * expression))
    report("no identity, true expression", shapes(model, face, 0 * identity, expression))
    for k in (5, 10, 20, 40):
        first = identity.copy()
        first[:, k:] = 0
        report(f"first {k} identity modes, true expression", shapes(model, face, first, expression))
    step = max(1, len(data) // args.regression_samples)
    r2 = size_regression_r2(model, face[::4], *params(range(0, len(data), step)))
    print(f"size from the size-free shape, linear regression: R^2 = {r2:.4f} (held-out 20%)")
    dense_point_fits(args.data, model, face, args.fit_samples)


def dense_point_fits(path, model, face, samples, size=TrainConfig.size, noise_px=(0.0, 0.25, 0.5, 1.0, 2.0)):
    """Fit the model to the true dense points of held-out crops plus independent Gaussian noise; start
    and expression prior at the true expression and pose, identity at the mean face (prior N(0, 1))."""
    held = FaceTrainingSet(path, split_indices(len(ShardedDataset(path)))[1][:samples], size, augment=False)
    batch = next(iter(torch.utils.data.DataLoader(held, batch_size=samples)))
    point_ids = dense_vertex_ids(model, TrainConfig.points)
    points_decoder, face_decoder = FaceDecoder(model, point_ids), FaceDecoder(model, face)
    exact = true_projection(points_decoder, batch, size)
    truth = face_decoder(batch["identity"], batch["expression"]).double().numpy()
    baseline = vertex_error(np.broadcast_to(model.mean[face].astype(np.float64), truth.shape), truth).mean()
    generator = torch.Generator().manual_seed(0)
    for noise in noise_px:
        points = exact + noise * torch.randn(exact.shape, generator=generator)
        fit = fit_to_points(points_decoder, points, torch.full(exact.shape[:2], max(noise, 0.1)), batch["intrinsics"],
                            torch.zeros_like(batch["identity"]), batch["expression"], batch["rotation"],
                            translation_of(batch["position"], batch["scale"], batch["intrinsics"], size),
                            iterations=10, sigma_scale=1.0, identity_sigma=1.0)
        ratio = vertex_error(face_decoder(fit["identity"], fit["expression"]).double().numpy(), truth).mean() / baseline
        print(f"fit to {len(point_ids)} dense points with {noise:.2f} px independent noise ({size}-pixel crops)   {ratio:.3f}")


if __name__ == "__main__":
    main()
