"""Shards -> training tensors: a torch Dataset over ShardedDataset with augmentation in the loader workers.

Camera parameters are learnt in a crop-independent form (``targets``):
- ``position``: the pivot's pixel position / image size - 0.5 (x right, y down);
- ``scale``: log(fx * 100 mm / (-tz * size)): the image fraction that 100 mm at the pivot's depth covers;
together with the rotation they give the translation back for any focal length (``translation_of``).
Augmentation (random crop/scale around the face, colour jitter, blur, noise, JPEG) changes the
image and moves the landmarks and the intrinsics with it, so every target stays exact.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageFilter

from ..dataset import ShardedDataset

SCALE_MM = 100.0
FIELDS = ["image", "landmarks_2d", "landmark_visible", "params/identity", "params/expression", "params/rotation",
          "params/translation", "params/intrinsics", "params/light_sh", "sample_index"]


def split_indices(n: int, held_out_fraction: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """(training, held-out) positions: the last ``held_out_fraction`` of the sample indices is held out."""
    cut = int(round(n * (1 - held_out_fraction)))
    return np.arange(cut), np.arange(cut, n)


def camera_targets(translation: np.ndarray, intrinsics: np.ndarray, size: int) -> tuple[np.ndarray, float]:
    fx, fy, cx, cy = intrinsics
    depth = -translation[2]
    u, v = fx * translation[0] / depth + cx, cy - fy * translation[1] / depth
    return np.array([u / size - 0.5, v / size - 0.5], np.float32), float(np.log(fx * SCALE_MM / (depth * size)))


def translation_of(position, scale, intrinsics, size):
    """Inverse of ``camera_targets`` (numpy or torch): camera-space pivot position, mm."""
    fx, fy, cx, cy = (intrinsics[..., k] for k in range(4))
    depth = fx * SCALE_MM / (size * _exp(scale))
    u, v = (position[..., 0] + 0.5) * size, (position[..., 1] + 0.5) * size
    return _stack([(u - cx) * depth / fx, -(v - cy) * depth / fy, -depth])


def _exp(x):
    return x.exp() if hasattr(x, "exp") and not isinstance(x, np.ndarray) else np.exp(x)


def _stack(parts):
    if isinstance(parts[0], np.ndarray) or np.isscalar(parts[0]):
        return np.stack(parts, -1)
    import torch

    return torch.stack(parts, -1)


class FaceTrainingSet:
    """A map-style dataset (torch's DataLoader takes it as is): position -> dict of float32 arrays."""

    def __init__(self, path, positions, size: int = 128, augment: bool = True, seed: int = 0):
        self.shards = ShardedDataset(path, fields=FIELDS)
        self.positions = np.asarray(positions)
        self.size, self.augment, self.seed = size, augment, seed
        self.epoch = 0

    def __len__(self):
        return len(self.positions)

    def __getitem__(self, i):
        sample = self.shards[int(self.positions[i])]
        rng = np.random.default_rng([self.seed, self.epoch, int(self.positions[i])])
        image = sample["image"]
        intrinsics = sample["params/intrinsics"].astype(np.float64).copy()
        landmarks = sample["landmarks_2d"].astype(np.float64).copy()
        h = image.shape[0]
        if self.augment:  # random square crop inside the image: 80-100% of it, anywhere it fits
            side = h * rng.uniform(0.8, 1.0)
            x0, y0 = rng.uniform(0, h - side, 2)
        else:
            side, x0, y0 = h, 0.0, 0.0
        k = self.size / side
        picture = Image.fromarray(image).resize((self.size, self.size), Image.BILINEAR,
                                                box=(x0, y0, x0 + side, y0 + side))
        intrinsics = np.array([intrinsics[0] * k, intrinsics[1] * k, (intrinsics[2] - x0) * k, (intrinsics[3] - y0) * k])
        landmarks = (landmarks - [x0, y0]) * k
        if self.augment:
            picture = _photometric(picture, rng)
        position, scale = camera_targets(sample["params/translation"].astype(np.float64), intrinsics, self.size)
        pixels = np.asarray(picture, np.float32).transpose(2, 0, 1) / 255.0
        return {
            "image": (pixels - 0.5) / 0.25,
            "identity": sample["params/identity"], "expression": sample["params/expression"],
            "rotation": sample["params/rotation"], "position": position, "scale": np.float32(scale),
            "light": sample["params/light_sh"].reshape(-1), "intrinsics": intrinsics.astype(np.float32),
            "landmarks": landmarks.astype(np.float32), "visible": sample["landmark_visible"].astype(np.float32),
            "index": sample["sample_index"],
        }


def _photometric(picture: Image.Image, rng) -> Image.Image:
    """Colour jitter, blur, noise and JPEG: the gap between renders and photos."""
    a = np.asarray(picture, np.float32)
    gain = rng.uniform(0.75, 1.25) * rng.uniform(0.9, 1.1, 3)
    a = (a - a.mean()) * rng.uniform(0.8, 1.2) + a.mean()
    a = a * gain + rng.uniform(-15, 15)
    grey = a.mean(-1, keepdims=True)
    a = grey + (a - grey) * rng.uniform(0.6, 1.3)
    if rng.uniform() < 0.3:
        a = a + rng.normal(0, rng.uniform(2, 8), a.shape)
    picture = Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))
    if rng.uniform() < 0.3:
        picture = picture.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.2)))
    if rng.uniform() < 0.4:
        buffer = io.BytesIO()
        picture.save(buffer, "JPEG", quality=int(rng.integers(30, 90)))
        picture = Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")
    return picture
