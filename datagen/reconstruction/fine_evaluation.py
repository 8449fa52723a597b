"""FineNet's metrics, next to the coarse reconstruction's, on held-out samples with fine ground truth.

Over each crop's face pixels (``finenet.FACE_LABELS`` in the ground truth, covered by the coarse
reconstruction), against the ground truth's ``depth_fine`` and ``normal_fine``:
- depth error: mean |depth - depth_fine| in mm, less its mean over the face (one view does not
  tell a face's distance: ``finenet.offset_free``), of the coarse depth and of the fine one;
- detail error: the same of the depth error's high-passed part (the error less its Gaussian blur
  over the face, sigma ``DETAIL_SIGMA_PX``): how much of the pores, lines and creases is missed;
- normal error: mean angle (degrees) between ``normal_fine`` and the coarse normals, and the fine
  normals (``finenet.fine_normals``: the coarse ones turned by the residual's relief); next to them
  the same of the true coarse surface turned by the true detail (``depth_fine - depth``): what a
  perfect FineNet would score on top of a perfect CoarseNet at this crop size.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch.nn import functional as F

from .finenet import fine_input, fine_normals, interior, masked_mean, offset_free

DETAIL_SIGMA_PX = 2.0


def _blur(values: torch.Tensor, mask: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian blur of (B, S, S) ``values`` over the mask (normalised by the mask's own blur)."""
    radius = int(math.ceil(3 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=values.dtype, device=values.device)
    g = torch.exp(-x ** 2 / (2 * sigma ** 2))
    g = g / g.sum()
    m = mask.to(values.dtype)[:, None]

    def smooth(a):
        a = F.conv2d(a, g.view(1, 1, 1, -1), padding=(0, radius))
        return F.conv2d(a, g.view(1, 1, -1, 1), padding=(radius, 0))

    return (smooth(values[:, None] * m) / smooth(m).clamp(min=1e-6))[:, 0]


def _angle(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.rad2deg(torch.acos((a * b).sum(-1).clamp(-1, 1)))


def surface_errors(depth: torch.Tensor, normals: torch.Tensor, batch: dict) -> dict[str, torch.Tensor]:
    """(B,) depth, detail (mm) and normal (degrees) errors of a surface (depth, normals) against the truth."""
    mask = batch["mask"]
    error = offset_free(depth - batch["depth_fine"], mask)
    detail = error - _blur(error, mask, DETAIL_SIGMA_PX)
    return {"depth": masked_mean(error.abs(), mask), "detail": masked_mean(detail.abs(), mask),
            "normal": masked_mean(_angle(normals, batch["normal_fine"]), interior(mask))}


@torch.no_grad()
def evaluate_fine(net, held_out, device, batch_size: int = 16) -> dict:
    """FineNet ``net`` on a ``fine_data.FineTrainingSet`` (no augmentation): the module docstring's
    metrics, coarse and fine, means over the samples. The network is left in the mode it came in."""
    was_training = net.training
    net.eval()
    columns: dict[str, list] = {}
    for batch in torch.utils.data.DataLoader(held_out, batch_size=batch_size, num_workers=0):
        batch = {k: v.to(device) for k, v in batch.items()}
        # a sample whose face the coarse fit missed says nothing
        keep = (batch["mask"].flatten(1).sum(1) > 100) & (interior(batch["mask"]).flatten(1).sum(1) > 0)
        batch = {k: v[keep] for k, v in batch.items()}
        if not len(batch["mask"]):
            continue
        residual = net(fine_input(batch["image"], batch["coarse_depth"], batch["coarse_normal"]))
        fine = batch["coarse_depth"] + residual
        rows = {f"coarse_{k}": v for k, v in surface_errors(batch["coarse_depth"], batch["coarse_normal"], batch).items()}
        normals = fine_normals(batch["coarse_depth"], batch["coarse_normal"], residual, batch["intrinsics"])
        rows.update({f"fine_{k}": v for k, v in surface_errors(fine, normals, batch).items()})
        floor = fine_normals(batch["depth"], batch["normal"], batch["depth_fine"] - batch["depth"], batch["intrinsics"])
        rows["normal_floor"] = masked_mean(_angle(floor, batch["normal_fine"]), interior(batch["mask"]))
        for name, values in rows.items():
            columns.setdefault(name, []).append(values.cpu().numpy())
    net.train(was_training)
    mean = {name: float(np.concatenate(values).mean()) for name, values in columns.items()}
    return {"samples": int(sum(len(v) for v in columns.get("fine_depth", []))),
            "coarse_depth_error_mm": mean.get("coarse_depth", math.nan),
            "fine_depth_error_mm": mean.get("fine_depth", math.nan),
            "coarse_detail_error_mm": mean.get("coarse_detail", math.nan),
            "fine_detail_error_mm": mean.get("fine_detail", math.nan),
            "coarse_normal_error_deg": mean.get("coarse_normal", math.nan),
            "fine_normal_error_deg": mean.get("fine_normal", math.nan),
            "normal_floor_deg": mean.get("normal_floor", math.nan)}


def fine_report(r: dict) -> list[str]:
    """``evaluate_fine``'s metrics as the lines ``datagen evaluate`` prints."""
    return [f"fine detail ({r['samples']} held-out samples, face pixels): depth error {r['fine_depth_error_mm']:.3f} mm "
            f"(coarse reconstruction {r['coarse_depth_error_mm']:.3f} mm), detail error {r['fine_detail_error_mm']:.3f} mm "
            f"(coarse {r['coarse_detail_error_mm']:.3f}); normal error {r['fine_normal_error_deg']:.2f} deg "
            f"(coarse {r['coarse_normal_error_deg']:.2f}; the true coarse surface with the true detail: {r['normal_floor_deg']:.2f})"]


def evaluate_fine_synthetic(fine_reconstructor, data, samples: int = 1000, log=print) -> dict:
    """Score a ``fine_inference.FineReconstructor`` on a dataset's held-out split (the last 5%), each
    sample reconstructed by its CoarseNet with the sample's true camera (as ``evaluation.evaluate_synthetic``)."""
    from ..data.dataset import ShardedDataset
    from .data import split_indices
    from .fine_data import FineTrainingSet, compute_coarse_maps, require_fine_fields

    require_fine_fields(data)
    _, held = split_indices(len(ShardedDataset(data)))
    held = held[:samples]
    maps = compute_coarse_maps(fine_reconstructor.coarse, data, held, fine_reconstructor.size, "", log=log)
    held_out = FineTrainingSet(data, held, maps, fine_reconstructor.size, augment=False)
    return evaluate_fine(fine_reconstructor.net, held_out, torch.device("cpu"))
