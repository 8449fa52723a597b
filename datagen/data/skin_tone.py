"""Skin tone as dermatology measures it: the individual typology angle (ITA, Chardon et al. 1991),
ITA = arctan((L* - 50) / b*) in degrees, from CIELAB (D65) of the skin's colour, in the six
categories of Del Bino & Bernerd (2013). ``datagen inspect`` reports a dataset's distribution, to
compare it with the population a reconstructor is meant for.
"""

from __future__ import annotations

import numpy as np

# (name, lower bound in degrees): a tone is the first category whose bound its ITA exceeds.
ITA_CATEGORIES = (("very light", 55.0), ("light", 41.0), ("intermediate", 28.0), ("tan", 10.0),
                  ("brown", -30.0), ("dark", -np.inf))

_SRGB_TO_XYZ = np.array([[0.4124564, 0.3575761, 0.1804375],
                         [0.2126729, 0.7151522, 0.0721750],
                         [0.0193339, 0.1191920, 0.9503041]])
_WHITE_D65 = np.array([0.95047, 1.0, 1.08883])


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) sRGB in [0, 255] -> (..., 3) CIELAB (L* in [0, 100]) under D65."""
    c = np.asarray(rgb, np.float64) / 255.0
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    xyz = linear @ _SRGB_TO_XYZ.T / _WHITE_D65
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], -1)


def ita_degrees(lab: np.ndarray) -> np.ndarray:
    """ITA of (..., 3) CIELAB colours, degrees (-90, 90]; atan2 keeps b* = 0 defined."""
    lab = np.asarray(lab, np.float64)
    return np.degrees(np.arctan2(lab[..., 0] - 50.0, lab[..., 2]))


def ita_category(ita: float) -> str:
    for name, lower in ITA_CATEGORIES:
        if ita > lower:
            return name
    return ITA_CATEGORIES[-1][0]


def skin_tones(images: np.ndarray, segmentation: np.ndarray, skin_labels) -> np.ndarray:
    """(N,) ITA of each image's mean skin colour (pixels whose label is in ``skin_labels``); NaN
    where an image shows no skin."""
    out = np.full(len(images), np.nan)
    for k in range(len(images)):
        mask = np.isin(segmentation[k], skin_labels)
        if mask.any():
            out[k] = ita_degrees(srgb_to_lab(images[k][mask].mean(0)))
    return out
