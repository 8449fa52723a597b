"""FineNet: the detail on top of a CoarseNet reconstruction (Richardson et al. 2017's second network).

In: the face crop and the CoarseNet reconstruction rendered into it (its depth and camera-space
normals, and where it covers the crop). Out: a depth residual per crop pixel, millimetres along
the viewing axis, that takes the coarse depth to the fine surface's: ``depth_fine = coarse depth +
residual``. It corrects what the coarse fit got wrong at the scale of a few pixels and adds the
pores, lines and creases that the 3DMM cannot carry. One view does not tell a face's distance,
so the residual is trained and scored up to one offset per image (``offset_free``).

The fine normals are not a second output: they are the coarse normals turned by the residual's
relief (``fine_normals``: the change that the residual makes to the normals of the depth map,
back-projected with the crop's intrinsics), so the fine depth and the fine normals describe one
surface, as the ground truth's do (``depth_fine`` / ``normal_fine``, README "Fine detail"). Taking
the whole normal from the depth map instead would bring in its facets: at 64-128 px the rendered
coarse normals are closer to ``normal_fine`` (3.5 degrees) than the true fine depth's own
back-projected normals are (4.2 degrees; tests/test_finenet.py).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ..data.fields import LABELS

# The face's pixels, where the detail lives and FineNet is trained and scored (not the head, hair or eyes).
FACE_LABELS = tuple(LABELS.index(n) for n in ("skin", "nose", "upper_lip", "lower_lip"))
INPUT_CHANNELS = 8  # image RGB, coarse normal xyz, coarse depth (relative, / DEPTH_SCALE_MM), coarse coverage
DEPTH_SCALE_MM = 50.0  # the coarse depth enters relative to its median over the face, in these units
# loss = depth L1 (mm) + NORMAL_WEIGHT * |fine normal - normal_fine| (~ the angle in radians): a degree of
# tilt weighs as 0.17 mm of depth, so the detail's relief (tenths of a mm, degrees of tilt) is not
# drowned by the coarse fit's millimetres of depth error.
NORMAL_WEIGHT = 10.0


def _block(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                         nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class FineNet(nn.Module):
    """A U-Net: ``levels`` stages halving the resolution (``width`` channels doubling per stage),
    then back up with the skip connections, to a residual depth (mm) at the input's resolution."""

    def __init__(self, width: int = 16, levels: int = 4):
        super().__init__()
        channels = [width * 2 ** k for k in range(levels)]
        self.down = nn.ModuleList([_block(INPUT_CHANNELS, channels[0])] +
                                  [_block(channels[k - 1], channels[k], stride=2) for k in range(1, levels)])
        self.up = nn.ModuleList([_block(channels[k] + channels[k - 1], channels[k - 1]) for k in range(levels - 1, 0, -1)])
        self.head = nn.Conv2d(channels[0], 1, 1)
        nn.init.zeros_(self.head.weight)  # start at the coarse surface
        nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, INPUT_CHANNELS, S, S) -> (B, S, S) depth residual, mm (S divisible by 2^(levels - 1))."""
        skips = []
        for stage in self.down:
            x = stage(x)
            skips.append(x)
        for stage, skip in zip(self.up, reversed(skips[:-1])):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = stage(torch.cat([x, skip], 1))
        return self.head(x)[:, 0]


def fine_input(image: torch.Tensor, coarse_depth: torch.Tensor, coarse_normal: torch.Tensor) -> torch.Tensor:
    """FineNet's input from (B, 3, S, S) normalised crops (``data.network_input``), (B, S, S) coarse
    depth (mm, 0 where the reconstruction does not cover the pixel) and (B, S, S, 3) coarse normals."""
    covered = coarse_depth > 0
    centre = torch.stack([d[c].median() if c.any() else d.new_zeros(()) for d, c in zip(coarse_depth, covered)])
    relative = torch.where(covered, (coarse_depth - centre[:, None, None]) / DEPTH_SCALE_MM, 0.0)
    return torch.cat([image, coarse_normal.permute(0, 3, 1, 2), relative[:, None], covered[:, None].float()], 1)


def back_project(depth: torch.Tensor, intrinsics: torch.Tensor) -> torch.Tensor:
    """(B, S, S, 3) camera-space points of (B, S, S) depth maps (mm) at the pixel centres (``camera``
    conventions: u = fx x / depth + cx, v = cy - fy y / depth, z = -depth)."""
    s = depth.shape[-1]
    centres = torch.arange(s, dtype=depth.dtype, device=depth.device) + 0.5
    fx, fy, cx, cy = (intrinsics[:, k, None, None] for k in range(4))
    x = (centres[None, None, :] - cx) / fx * depth
    y = -(centres[None, :, None] - cy) / fy * depth
    return torch.stack([x, y, -depth], -1)


def depth_normals(depth: torch.Tensor, intrinsics: torch.Tensor) -> torch.Tensor:
    """(B, S, S, 3) unit camera-space normals (towards the camera) of the surface a depth map shows:
    central differences of the back-projected points; the border pixels' are zero."""
    p = back_project(depth, intrinsics)
    along_x = p[:, 1:-1, 2:] - p[:, 1:-1, :-2]
    up_y = p[:, :-2, 1:-1] - p[:, 2:, 1:-1]  # row 0 is the top: up is towards smaller rows
    n = F.normalize(torch.cross(along_x, up_y, dim=-1), dim=-1, eps=1e-12)
    return F.pad(n.permute(0, 3, 1, 2), (1, 1, 1, 1)).permute(0, 2, 3, 1)


def fine_normals(coarse_depth: torch.Tensor, coarse_normal: torch.Tensor, residual: torch.Tensor,
                 intrinsics: torch.Tensor) -> torch.Tensor:
    """(B, S, S, 3) unit normals of the coarse surface displaced by ``residual`` (mm, along the view):
    the coarse normals plus the change the residual makes to the depth map's normals (first order,
    as the renderer tilts the interpolated normal by the displacement's gradient)."""
    change = depth_normals(coarse_depth + residual, intrinsics) - depth_normals(coarse_depth, intrinsics)
    return F.normalize(coarse_normal + change, dim=-1, eps=1e-12)


def interior(mask: torch.Tensor) -> torch.Tensor:
    """(B, S, S) mask pixels whose 4 neighbours are in the mask too (their normals are defined)."""
    m = mask.float()[:, None]
    kernel = torch.tensor([[0, 1, 0], [1, 1, 1], [0, 1, 0]], dtype=m.dtype, device=m.device)[None, None]
    return F.conv2d(m, kernel, padding=1)[:, 0] > 4.5


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B,) mean of (B, S, S) ``values`` over each image's mask (0 where it is empty)."""
    m = mask.float()
    return (values * m).sum((1, 2)) / m.sum((1, 2)).clamp(min=1)


def offset_free(error: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """A depth error map less its mean over the mask: the per-image offset one view cannot tell."""
    return error - masked_mean(error, mask)[:, None, None]


def fine_losses(residual: torch.Tensor, batch: dict) -> dict[str, torch.Tensor]:
    """{depth: mm, normal: |n - n_true| (~ radians)}, means over the batch's face pixels (``mask``), of the fine
    surface (coarse depth + ``residual``) against the ground truth (``depth_fine``, ``normal_fine``)."""
    mask = batch["mask"]
    fine = batch["coarse_depth"] + residual
    depth = masked_mean(offset_free(fine - batch["depth_fine"], mask).abs(), mask)
    inside = interior(mask)
    normals = fine_normals(batch["coarse_depth"], batch["coarse_normal"], residual, batch["intrinsics"])
    miss = torch.sqrt(((normals - batch["normal_fine"]) ** 2).sum(-1) + 1e-12)
    return {"depth": depth.mean(), "normal": masked_mean(miss, inside).mean()}
