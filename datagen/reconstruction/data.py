"""Shards -> training tensors: a torch Dataset over ShardedDataset with augmentation in the loader workers.

Camera parameters are learnt in a crop-independent form (``targets``):
- ``position``: the pivot's pixel position / image size - 0.5 (x right, y down);
- ``scale``: log(fx * 100 mm / (-tz * size)): the image fraction that 100 mm at the pivot's depth covers;
together with the rotation they give the translation back for any focal length (``translation_of``).
The network sees a square crop around the face (``face_crop_box``: the landmark box's larger side
times ``CROP_SCALE``, as the reconstructor crops a detected face), so that the face fills the
input whatever the render's framing. Augmentation (the crop's scale and position jittered, colour
jitter, blur, noise, JPEG) changes the image and moves the landmarks and the intrinsics with it,
so every target stays exact.
"""

from __future__ import annotations

import bisect
import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from ..camera import crop_intrinsics, project_points
from ..data.dataset import ShardedDataset
from ..errors import DatagenError
from ..images import crop_photo

SCALE_MM = 100.0
CROP_SCALE = 1.6  # crop side / the larger side of the 68 landmarks' box: forehead to chin, ears to ears
CROP_JITTER_SCALE = 0.1  # training crops: side times exp(U(-j, j))
CROP_JITTER_SHIFT = 0.06  # training crops: centre moved by U(-j, j) of the side, per axis
FIELDS = ["image", "landmarks_2d", "landmark_visible", "params/identity", "params/expression", "params/rotation",
          "params/translation", "params/intrinsics", "params/light_sh", "sample_index"]


def split_indices(n: int, held_out_fraction: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """(training, held-out) positions: the last ``held_out_fraction`` of the sample indices is held out."""
    cut = int(round(n * (1 - held_out_fraction)))
    return np.arange(cut), np.arange(cut, n)


def data_paths(data) -> list[str]:
    """One dataset folder or several (a mix: ``datagen train --data A --data B``) as a list."""
    return [str(data)] if isinstance(data, (str, Path)) else [str(p) for p in data]


class DatasetMix:
    """Several datasets' samples as one sequence: the first dataset's, then the second's, ...

    Each part keeps its own held-out split (``split``), so a mix is scored on held-out samples of
    every part and a part added to a mix never moves another's split."""

    def __init__(self, data, fields: list[str] | None = None, model_dir: str | None = None):
        self.parts = [ShardedDataset(p, fields=fields, model_dir=model_dir) for p in data_paths(data)]
        if not self.parts:
            raise DatagenError("no dataset to train on: give at least one --data folder")
        self.starts = np.cumsum([0] + [len(p) for p in self.parts]).tolist()
        first = self.parts[0]
        for part in self.parts[1:]:
            if part.manifest["model"]["checksum"] != first.manifest["model"]["checksum"]:
                raise DatagenError(f"{part.path} was made with model '{part.manifest['model']['name']}', "
                                   f"{first.path} with '{first.manifest['model']['name']}' (or another version of "
                                   f"it): a mix trains one network, so its datasets share one model")

    def __len__(self) -> int:
        return self.starts[-1]

    def __getitem__(self, i: int) -> dict:
        k = bisect.bisect_right(self.starts, i) - 1
        return self.parts[k][i - self.starts[k]]

    def split(self, held_out_fraction: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
        """(training, held-out) positions in the mix: each part's ``split_indices``, offset."""
        pieces = [split_indices(len(p), held_out_fraction) for p in self.parts]
        return tuple(np.concatenate([piece[j] + start for piece, start in zip(pieces, self.starts)])
                     for j in (0, 1))

    def taking_turns(self, positions: np.ndarray) -> np.ndarray:
        """``positions`` reordered so that the parts take turns (the first of each part, then the
        second, ...): a prefix of it samples every part. One part: ``positions`` as they are."""
        positions = np.asarray(positions)
        part = np.searchsorted(self.starts, positions, side="right") - 1
        rank = np.zeros(len(positions), int)
        for k in np.unique(part):
            rank[part == k] = np.arange((part == k).sum())
        return positions[np.lexsort((part, rank))]


def face_crop_box(landmarks: np.ndarray, scale: float = CROP_SCALE) -> tuple[float, float, float]:
    """(x0, y0, side) of the square crop centred on the landmarks' box."""
    lo, hi = landmarks.min(0), landmarks.max(0)
    centre, side = (lo + hi) / 2, scale * float((hi - lo).max())
    return float(centre[0] - side / 2), float(centre[1] - side / 2), side


def network_input(crops: np.ndarray) -> np.ndarray:
    """(..., S, S, 3) uint8 crops -> (..., 3, S, S) float32 as CoarseNet reads them: (RGB / 255 - 0.5) / 0.25."""
    pixels = np.moveaxis(np.asarray(crops, np.float32), -1, -3) / 255.0
    return (pixels - 0.5) / 0.25


def camera_targets(translation: np.ndarray, intrinsics: np.ndarray, size: int) -> tuple[np.ndarray, float]:
    u, v = project_points(np.asarray(translation)[None], intrinsics)[0]  # the pivot's pixel
    return (np.array([u / size - 0.5, v / size - 0.5], np.float32),
            float(np.log(intrinsics[0] * SCALE_MM / (-translation[2] * size))))


def translation_of(position, scale, intrinsics, size):
    """Inverse of ``camera_targets`` (numpy or torch): camera-space pivot position, mm."""
    fx, fy, cx, cy = (intrinsics[..., k] for k in range(4))
    depth = fx * SCALE_MM / (size * _exp(scale))
    u, v = (position[..., 0] + 0.5) * size, (position[..., 1] + 0.5) * size
    return _stack([(u - cx) * depth / fx, -(v - cy) * depth / fy, -depth])


def _exp(x):
    """exp of a log scale kept inside [-8, 8]: a wild prediction early in training must not overflow."""
    return x.clamp(-8, 8).exp() if hasattr(x, "exp") and not isinstance(x, np.ndarray) else np.exp(np.clip(x, -8, 8))


def _stack(parts):
    if isinstance(parts[0], np.ndarray) or np.isscalar(parts[0]):
        return np.stack(parts, -1)
    import torch

    return torch.stack(parts, -1)


class FaceTrainingSet:
    """A map-style dataset (torch's DataLoader takes it as is): position -> dict of float32 arrays.
    ``data``: a dataset folder, or several (positions are then those of their ``DatasetMix``)."""

    def __init__(self, data, positions, size: int = 128, augment: bool = True, seed: int = 0):
        self.shards = DatasetMix(data, fields=FIELDS)
        clips = [str(part.path) for part in self.shards.parts if part.frames > 1]
        if clips:
            raise DatagenError(f"{', '.join(clips)}: a video dataset (clips); CoarseNet trains and is scored on stills "
                               "(the tracker on clips: --tracker)")
        self.positions = np.asarray(positions)
        self.size, self.augment, self.seed = size, augment, seed
        self.epoch = 0

    def __len__(self):
        return len(self.positions)

    def __getitem__(self, i):
        sample = self.shards[int(self.positions[i])]
        rng = np.random.default_rng([self.seed, self.epoch, int(self.positions[i])])
        box = face_crop_box(sample["landmarks_2d"].astype(np.float64))
        return crop_item(sample, jittered_box(box, rng) if self.augment else box, self.size, rng if self.augment else None)


def jittered_box(box, rng) -> tuple[float, float, float]:
    """A training crop: ``box`` moved and scaled at random (``CROP_JITTER_SHIFT``, ``CROP_JITTER_SCALE``)."""
    x0, y0, side = box
    centre = np.array([x0, y0]) + side / 2 + rng.uniform(-CROP_JITTER_SHIFT, CROP_JITTER_SHIFT, 2) * side
    side *= np.exp(rng.uniform(-CROP_JITTER_SCALE, CROP_JITTER_SCALE))
    x0, y0 = centre - side / 2
    return float(x0), float(y0), float(side)


def crop_item(sample: dict, box, size: int, rng=None) -> dict:
    """One sample (a still, or one frame of a clip) cropped to ``box`` at ``size`` pixels as the network
    reads it, with its targets in the crop's camera; ``rng``: photometric augmentation (None: none)."""
    x0, y0, side = box
    intrinsics = crop_intrinsics(sample["params/intrinsics"].astype(np.float64), box, size)
    landmarks = (sample["landmarks_2d"].astype(np.float64) - [x0, y0]) * (size / side)
    picture = Image.fromarray(crop_photo(sample["image"], box, size))
    if rng is not None:
        picture = photometric_augmentation(picture, rng)
    position, scale = camera_targets(sample["params/translation"].astype(np.float64), intrinsics, size)
    return {
        "image": network_input(np.asarray(picture)),
        "identity": sample["params/identity"], "expression": sample["params/expression"],
        "rotation": sample["params/rotation"], "position": position, "scale": np.float32(scale),
        "light": sample["params/light_sh"].reshape(-1), "intrinsics": intrinsics.astype(np.float32),
        "landmarks": landmarks.astype(np.float32), "visible": sample["landmark_visible"].astype(np.float32),
        "index": sample["sample_index"],
    }


def photometric_augmentation(picture: Image.Image, rng) -> Image.Image:
    """Colour jitter, blur, noise and JPEG: the gap between renders and photos.

    Contrast, per-channel gain, brightness and saturation are all affine in RGB, so they are
    applied as one 3x3 matrix and offset.
    """
    a = np.asarray(picture, np.float32).reshape(-1, 3)
    mean = a.mean(0).mean()
    contrast, brightness = rng.uniform(0.8, 1.2), rng.uniform(-15, 15)
    gain = rng.uniform(0.75, 1.25) * rng.uniform(0.9, 1.1, 3)
    saturation = rng.uniform(0.6, 1.3)
    grey = np.full((3, 3), 1 / 3)
    matrix = np.diag(gain) @ (saturation * np.eye(3) + (1 - saturation) * grey) * contrast
    offset = gain * (mean * (1 - contrast)) + brightness
    a = a @ matrix.T.astype(np.float32) + offset.astype(np.float32)
    if rng.uniform() < 0.3:
        a += rng.normal(0, rng.uniform(2, 8), a.shape).astype(np.float32)
    picture = Image.fromarray(np.clip(a, 0, 255).astype(np.uint8).reshape(picture.height, picture.width, 3))
    if rng.uniform() < 0.3:
        picture = picture.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.0)))
    if rng.uniform() < 0.4:
        buffer = io.BytesIO()
        picture.save(buffer, "JPEG", quality=int(rng.integers(40, 95)))
        picture = Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")
    return picture
