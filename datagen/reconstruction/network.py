"""CoarseNet: a ResNet-style encoder that regresses 3DMM parameters, and the face decoder in the graph.

Outputs per image: identity (K_id, standard normal), expression (K_ex blendshape weights, sigmoid
to [0, 1]), rotation (yaw, pitch, roll), position and scale (see data.camera_targets), the
(9 x 3) SH lighting and, given ``point_ids``, dense 2D points: the crop positions of those face
vertices (``training.dense_vertex_ids``) with an uncertainty each, which ``refine`` fits the model
to (dense landmarks, as Wood et al. 2022 "3D face reconstruction with dense landmarks").
``FaceDecoder`` turns parameters into vertices with the model's bases as fixed tensors, so losses on vertices and reprojected landmarks train the parameters end to end.
No pretrained weights: everything is learnt from the shards.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..camera import project_torch, to_camera_torch

GRID = 4  # the encoder's output grid
POINT_LOG_SIGMA = (-2.0, 4.0)  # a dense point's log standard deviation (pixels) is read inside this range


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.skip = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                     if stride != 1 or cin != cout else nn.Identity())

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(y)) + self.skip(x))


class CoarseNet(nn.Module):
    def __init__(self, num_identity: int, num_expression: int, width: int = 32, blocks=(2, 2, 2, 2),
                 point_ids: np.ndarray | None = None):
        super().__init__()
        point_ids = np.zeros(0, np.int64) if point_ids is None else np.asarray(point_ids, np.int64)
        self.num_identity, self.num_expression, self.num_points = num_identity, num_expression, len(point_ids)
        # the model vertex ids of the dense points (not saved: the checkpoint's config gives them back)
        self.register_buffer("point_ids", torch.from_numpy(point_ids), persistent=False)
        layers = [nn.Conv2d(3, width, 5, 2, 2, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
        cin = width
        for stage, count in enumerate(blocks):
            cout = width * 2 ** stage
            for b in range(count):
                layers.append(BasicBlock(cin, cout, 2 if b == 0 else 1))
                cin = cout
        # A 4 x 4 grid of features rather than one global average: where a feature is in the face
        # (a mouth corner, the jaw line) is what the shape and pose are read from.
        self.encoder = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(GRID), nn.Flatten())
        self.head = nn.Sequential(nn.Linear(cin * GRID * GRID, 512), nn.ReLU(inplace=True),
                                  nn.Linear(512, num_identity + num_expression + 3 + 2 + 1 + 27 + 3 * self.num_points))

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self.head(self.encoder(image))
        k, e = self.num_identity, self.num_expression
        n = k + e + 6 + 27
        predicted = {"identity": out[:, :k], "expression": torch.sigmoid(out[:, k:k + e]),
                     "rotation": out[:, k + e:k + e + 3], "position": out[:, k + e + 3:k + e + 5],
                     "scale": out[:, k + e + 5], "light": out[:, k + e + 6:n]}
        if self.num_points:
            # points: crop position / crop size - 0.5 (x right, y down); their log standard deviation in pixels
            predicted["points"] = out[:, n:n + 2 * self.num_points].reshape(-1, self.num_points, 2)
            predicted["point_log_sigma"] = out[:, n + 2 * self.num_points:]
        return predicted


class FaceDecoder(nn.Module):
    """Model-space vertices of chosen vertex ids from parameters, and their camera-space projection."""

    def __init__(self, model, vertex_ids: np.ndarray):
        super().__init__()
        ids = np.asarray(vertex_ids)
        self.register_buffer("mean", torch.from_numpy(model.mean[ids].astype(np.float32)))
        self.register_buffer("identity", torch.from_numpy(model.identity_basis[:, ids].astype(np.float32)))
        self.register_buffer("expression", torch.from_numpy(model.expression_basis[:, ids].astype(np.float32)))
        self.register_buffer("pivot", torch.from_numpy(model.pivot.astype(np.float32)))

    def forward(self, identity, expression):
        return (self.mean + torch.einsum("bk,kvc->bvc", identity, self.identity)
                + torch.einsum("be,evc->bvc", expression, self.expression))

    def project(self, vertices, rotation, translation, intrinsics):
        return project_torch(to_camera_torch(vertices, self.pivot, rotation, translation), intrinsics)
