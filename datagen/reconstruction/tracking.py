"""The tracking network (Guo et al.'s third network, for monocular video): the current frame and the
previous frame's reconstruction in, the parameter update out. Trained on a video dataset's frame pairs.

Input: the current frame cropped around the previous reconstruction's landmarks (as a tracker sees
it: no detector after the first frame) and the previous parameters expressed in that crop's camera
(identity, expression, rotation, position, scale: ``previous_vector``). Output: this frame's parameters,
CoarseNet's estimate of the frame blended with the previous ones by a learnt gate (``TrackerNet``);
the identity is the clip's, carried from its first frame's reconstruction.
Training pairs take frame t's true parameters disturbed by ``PREVIOUS_NOISE`` (a tracker's own
error, so that it learns to correct it rather than trust it) and frame t's landmarks, jittered, for
the crop of frame t+1.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..data.dataset import ShardedDataset
from ..data.fields import REGISTRY
from ..errors import DatagenError
from .data import FIELDS, camera_targets, crop_item, face_crop_box, jittered_box
from .network import GRID, CoarseNet

# Standard deviations of the disturbance of the previous frame's parameters in training pairs.
PREVIOUS_NOISE = {"identity": 0.3, "expression": 0.05, "rotation": np.radians(2.0), "position": 0.015, "scale": 0.03}
PREVIOUS_PARTS = ("identity", "expression", "rotation", "position", "scale")


def previous_size(num_identity: int, num_expression: int) -> int:
    return num_identity + num_expression + 3 + 2 + 1


class TrackerNet(nn.Module):
    """CoarseNet (encoder and head, initialised from a CoarseNet checkpoint: ``load_coarse``) estimates this
    frame; a gate network reads its features, that estimate and the previous parameters and blends the
    two per parameter (a learnt, Kalman-like filter), plus a small correction:
    ``updated = estimate + sigmoid(gate) * (previous - estimate) + correction``. Zero-initialised, the gate
    is one half and the correction none: an untrained tracker averages CoarseNet with the previous frame.
    ``forward(image, previous)`` -> CoarseNet's outputs (no dense points); the identity is the previous one."""

    def __init__(self, num_identity: int, num_expression: int, width: int = 32, blocks=(2, 2, 2, 2)):
        super().__init__()
        self.num_identity, self.num_expression, self.num_points = num_identity, num_expression, 0
        self.register_buffer("point_ids", torch.zeros(0, dtype=torch.long), persistent=False)
        coarse = CoarseNet(num_identity, num_expression, width, blocks)
        self.encoder, self.head = coarse.encoder, coarse.head
        features = width * 2 ** (len(blocks) - 1) * GRID * GRID
        moving = num_expression + 6  # expression, rotation, position, scale: what the tracker updates
        self.gate = nn.Sequential(nn.Linear(features + 2 * moving, 256), nn.ReLU(inplace=True), nn.Linear(256, 2 * moving))
        nn.init.zeros_(self.gate[-1].weight)
        nn.init.zeros_(self.gate[-1].bias)

    def load_coarse(self, state: dict) -> None:
        """A CoarseNet checkpoint's encoder and head (its dense points' outputs left out)."""
        self.encoder.load_state_dict({k[8:]: v for k, v in state.items() if k.startswith("encoder.")})
        rows = self.head[-1].out_features
        head = {k[5:]: v for k, v in state.items() if k.startswith("head.")}
        head["2.weight"], head["2.bias"] = head["2.weight"][:rows], head["2.bias"][:rows]
        self.head.load_state_dict(head)

    def forward(self, image: torch.Tensor, previous: torch.Tensor) -> dict[str, torch.Tensor]:
        features = self.encoder(image)
        out = self.head(features)
        k, e = self.num_identity, self.num_expression
        estimate = torch.cat([torch.sigmoid(out[:, k:k + e]), out[:, k + e:k + e + 6]], 1)
        gap = previous[:, k:] - estimate
        gate, correction = self.gate(torch.cat([features, estimate, gap], 1)).chunk(2, dim=1)
        updated = estimate + torch.sigmoid(gate) * gap + correction
        return {"identity": previous[:, :k], "expression": updated[:, :e], "rotation": updated[:, e:e + 3],
                "position": updated[:, e + 3:e + 5], "scale": updated[:, e + 5], "light": out[:, k + e + 6:k + e + 33]}


def previous_vector(identity, expression, rotation, translation, intrinsics, size: int) -> np.ndarray:
    """(K_id + K_ex + 6,) float32: a reconstruction's parameters in a crop's camera (``intrinsics``, its
    ``size``), as ``TrackerNet`` reads them."""
    position, scale = camera_targets(np.asarray(translation, np.float64), np.asarray(intrinsics, np.float64), size)
    return np.concatenate([identity, expression, rotation, position, [scale]]).astype(np.float32)


class TrackingPairs:
    """Frame pairs (t, t+1) of a video dataset's clips as training items: ``data.crop_item`` of frame t+1
    (cropped around frame t's landmarks) plus ``previous``, frame t's disturbed parameters in that crop."""

    def __init__(self, data, clips, size: int = 112, augment: bool = True, seed: int = 0):
        self.clips = ShardedDataset(data, fields=FIELDS)
        if self.clips.frames < 2:
            raise DatagenError(f"{data} holds stills: the tracker trains on a video dataset's clips ([video] frames > 1)")
        per_clip = self.clips.frames - 1
        self.pairs = [(int(c), t) for c in clips for t in range(per_clip)]
        self.size, self.augment, self.seed, self.epoch = size, augment, seed, 0
        self._cached = (None, None)

    def __len__(self) -> int:
        return len(self.pairs)

    def _clip(self, c: int) -> dict:
        if self._cached[0] != c:
            self._cached = (c, self.clips[c])
        return self._cached[1]

    def __getitem__(self, i: int) -> dict:
        c, t = self.pairs[i]
        clip = self._clip(c)
        frame, before = (frame_of(clip, k) for k in (t + 1, t))
        # held-out pairs: a fixed disturbance (the same every epoch), no augmentation
        rng = np.random.default_rng([self.seed, self.epoch + 1 if self.augment else 0, c, t])
        box = face_crop_box(before["landmarks_2d"].astype(np.float64))
        box = jittered_box(box, rng)
        item = crop_item(frame, box, self.size, rng if self.augment else None)
        noisy = {name: np.asarray(before[f"params/{name}"], np.float64) + rng.normal(0, PREVIOUS_NOISE[name],
                                                                                      before[f"params/{name}"].shape)
                 for name in ("identity", "expression", "rotation")}
        translation = np.asarray(before["params/translation"], np.float64)
        item["previous"] = previous_vector(noisy["identity"], noisy["expression"], noisy["rotation"], translation,
                                           item["intrinsics"], self.size)
        item["previous"][-3:-1] += rng.normal(0, PREVIOUS_NOISE["position"], 2)
        item["previous"][-1] += rng.normal(0, PREVIOUS_NOISE["scale"])
        return item

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_cached"] = (None, None)
        return state


def frame_of(clip: dict, t: int) -> dict:
    """Frame ``t`` of a clip's arrays as a still sample's (per-sample fields as they are)."""
    return {name: a[t] if REGISTRY[name].level == "frame" else a for name, a in clip.items()}
