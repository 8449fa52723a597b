"""What a camera does to the picture, after the face is composited over its background: defocus,
motion blur, white balance and exposure, vignetting, sensor noise and JPEG (``CaptureParams``,
drawn by ``sampling.sample_capture`` from ``[sampling.capture]``).

None of them moves what a pixel shows, so depth, normals, segmentation and landmarks stay exact:
the blurs are centred (a point spreads around where it is), gains act in linear light as a
sensor's do, and the noise is a sensor's: read noise plus shot noise whose variance grows with
the signal, drawn from the sample's own stream so that a sample regenerates with the same grain.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageFilter
from scipy import ndimage

from .sampling import CaptureParams, frame_rng


def defocus_background(background: np.ndarray, capture: CaptureParams | None) -> np.ndarray:
    """(H, W, 3) uint8 background as a lens focused on the face shows it (depth of field)."""
    if capture is None or capture.background_sigma <= 0:
        return background
    return _gaussian(background, capture.background_sigma)


def apply_capture(image: np.ndarray, capture: CaptureParams | None, seed: int, index: int, frame: int = 0) -> np.ndarray:
    """(H, W, 3) uint8 composited picture -> the picture the camera records (uint8); each frame of a
    clip its own sensor noise."""
    if capture is None:
        return image
    if capture.lens_sigma > 0:
        image = _gaussian(image, capture.lens_sigma)
    if capture.motion_length >= 1:
        image = _motion_blur(image, capture.motion_length, capture.motion_angle)
    linear = _to_linear(image.astype(np.float32) / 255.0) * capture.gains * _vignette(image.shape, capture.vignetting)
    levels = _to_srgb(np.clip(linear, 0, 1)) * 255.0
    if capture.read_noise > 0:
        rng = frame_rng(seed, index, frame, "capture_noise")
        std = np.sqrt(capture.read_noise ** 2 + capture.shot_noise_gain * levels)
        levels = levels + std * rng.standard_normal(levels.shape, np.float32)
    image = np.clip(levels + 0.5, 0, 255).astype(np.uint8)
    return _jpeg(image, capture.jpeg_quality) if capture.jpeg_quality else image


def _gaussian(image: np.ndarray, sigma: float) -> np.ndarray:
    return np.asarray(Image.fromarray(image).filter(ImageFilter.GaussianBlur(sigma)))


def _motion_blur(image: np.ndarray, length: float, angle: float) -> np.ndarray:
    """A straight path of ``length`` pixels at ``angle``, centred: the kernel is symmetric."""
    half = int(np.ceil(length / 2))
    size = 2 * half + 1
    kernel = np.zeros((size, size), np.float32)
    for t in np.linspace(-length / 2, length / 2, 4 * size):
        kernel[int(round(half + t * np.sin(angle))), int(round(half + t * np.cos(angle)))] += 1
    kernel /= kernel.sum()
    return np.stack([ndimage.convolve(image[..., c].astype(np.float32), kernel, mode="nearest")
                     for c in range(3)], -1).round().astype(np.uint8)


def _vignette(shape, strength: float) -> np.ndarray:
    """(H, W, 1) gain 1 - strength * r^2, r = 1 at the corners."""
    height, width = shape[:2]
    y, x = np.ogrid[0:height, 0:width]
    r2 = (((x + 0.5) / width - 0.5) ** 2 + ((y + 0.5) / height - 0.5) ** 2) / 0.5
    return (1.0 - strength * r2)[..., None].astype(np.float32)


def _to_linear(c: np.ndarray) -> np.ndarray:
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def _to_srgb(c: np.ndarray) -> np.ndarray:
    return np.where(c <= 0.0031308, 12.92 * c, 1.055 * c ** (1 / 2.4) - 0.055)


def _jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "JPEG", quality=int(quality))
    with Image.open(io.BytesIO(buffer.getvalue())) as decoded:
        return np.asarray(decoded.convert("RGB"))
