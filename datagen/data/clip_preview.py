"""What a person looks at to judge a video job's clips (``datagen preview`` of a ``[video]`` job).

- an animation (animated WebP, GIF or PNG, by the file's suffix): frame t of every clip side by side,
  each clip a 2x2 block: image with landmarks, segmentation, depth, forward flow (``flow_colours``;
  occluded pixels black);
- ``<name>-flow.png``: per clip, frames 0 and 1, the flow between them, the occlusion mask over
  frame 0 (red: hidden or gone in frame 1), and the colour wheel that reads the flow;
- ``<name>-strip.png``: per clip, its frames in a row (for readers that show no animation).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .preview import sample_panels

GAP = 4


def flow_colours(flow: np.ndarray, scale: float | None = None) -> np.ndarray:
    """(H, W, 3) uint8: hue = the flow's direction (right red, down yellow-green, left cyan, up violet),
    saturation = its length over ``scale`` (default: the 99th percentile of the lengths); white = still."""
    flow = np.asarray(flow, np.float32)
    length = np.linalg.norm(flow, axis=-1)
    scale = scale or max(float(np.percentile(length, 99)), 1e-3)
    hue = (np.arctan2(flow[..., 1], flow[..., 0]) / (2 * np.pi)) % 1.0
    saturation = np.clip(length / scale, 0, 1)
    return _hsv_to_rgb(hue, saturation, np.ones_like(hue))


def colour_wheel(size: int) -> np.ndarray:
    """(size, size, 3) the key of ``flow_colours``: each pixel coloured by its offset from the centre."""
    c = (np.arange(size) + 0.5 - size / 2) / (size / 2)
    xs, ys = np.meshgrid(c, c)
    wheel = flow_colours(np.stack([xs, ys], -1), 1.0)
    wheel[np.hypot(xs, ys) > 1] = 255
    return wheel


def _hsv_to_rgb(h, s, v) -> np.ndarray:
    i = np.floor(h * 6).astype(int) % 6
    f = h * 6 - np.floor(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    table = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)]
    rgb = np.zeros(h.shape + (3,), np.float32)
    for k, channels in enumerate(table):
        rgb[i == k] = np.stack(channels, -1)[i == k]
    return (rgb * 255 + 0.5).astype(np.uint8)


@dataclass
class ClipPreview:
    frames: list  # PIL images, one per frame of the clips
    flow: Image.Image
    strip: Image.Image
    fps: float

    def save(self, path: str | Path) -> list[Path]:
        """Write the animation to ``path`` and the flow and strip pictures beside it; returns the three paths."""
        path = Path(path)
        duration = int(round(1000 / self.fps))
        self.frames[0].save(path, save_all=True, append_images=self.frames[1:], duration=duration, loop=0,
                            **({"lossless": False, "quality": 85} if path.suffix.lower() == ".webp" else {}))
        flow, strip = path.with_name(f"{path.stem}-flow.png"), path.with_name(f"{path.stem}-strip.png")
        self.flow.save(flow)
        self.strip.save(strip)
        return [path, flow, strip]


def clip_preview(arrays: dict, fps: float) -> ClipPreview:
    """The pictures of a batch of clips (the generator's arrays, (N, K, ...) per-frame fields)."""
    n, k = arrays["image"].shape[:2]
    scale = max(float(np.percentile(np.linalg.norm(arrays["flow_forward"].astype(np.float32), axis=-1), 99)), 0.5)
    frames = [_sheet([_clip_block(arrays, c, t, scale) for c in range(n)]) for t in range(k)]
    h = arrays["image"].shape[2]
    rows = [_row([arrays["image"][c, 0], arrays["image"][c, 1], _flow_picture(arrays, c, 0, scale),
                  _occlusion_picture(arrays, c), colour_wheel(h)]) for c in range(n)]
    strip = [_row(list(arrays["image"][c])) for c in range(n)]
    return ClipPreview(frames=frames, flow=Image.fromarray(_stack(rows)), strip=Image.fromarray(_stack(strip)), fps=fps)


def _clip_block(arrays, c: int, t: int, scale: float) -> np.ndarray:
    frame = {name: arrays[name][c] for name in ("image", "landmarks_2d", "landmark_visible", "segmentation", "depth",
                                                "normal")}
    block = sample_panels(frame, t)
    h, w = arrays["image"].shape[2:4]
    block[h:, w:] = _flow_picture(arrays, c, min(t, arrays["flow_forward"].shape[1] - 1), scale)
    return block


def _flow_picture(arrays, c: int, t: int, scale: float) -> np.ndarray:
    picture = flow_colours(arrays["flow_forward"][c, t], scale)
    picture[arrays["occluded_forward"][c, t]] = 0
    return picture


def _occlusion_picture(arrays, c: int) -> np.ndarray:
    picture = arrays["image"][c, 0].copy()
    hidden = arrays["occluded_forward"][c, 0]
    picture[hidden] = (0.4 * picture[hidden] + [153, 0, 0]).astype(np.uint8)
    return picture


def _row(pictures) -> np.ndarray:
    h = pictures[0].shape[0]
    parts = []
    for p in pictures:
        parts += [p, np.full((h, GAP, 3), 255, np.uint8)]
    return np.concatenate(parts[:-1], 1)


def _stack(rows) -> np.ndarray:
    w = max(r.shape[1] for r in rows)
    parts = []
    for r in rows:
        r = np.pad(r, ((0, 0), (0, w - r.shape[1]), (0, 0)), constant_values=255)
        parts += [r, np.full((GAP, w, 3), 255, np.uint8)]
    return np.concatenate(parts[:-1], 0)


def _sheet(blocks) -> Image.Image:
    columns = int(np.ceil(np.sqrt(len(blocks))))
    rows = [_row(blocks[i:i + columns]) for i in range(0, len(blocks), columns)]
    return Image.fromarray(_stack(rows))
