"""Which pixels of a fitted photo show skin: the rest (hair over the forehead, glasses, a hand,
shadows too deep to trust) must not become skin albedo.

The method, per photo (a robust skin-colour model, as in 3DMM texture fitting practice):

1. reliable skin: pixels the fitted face covers with skin or nose inside the cheek-and-nose band
   (a polygon through the lower eyelids, the face outline at eye level, the jaw, the mouth corners
   and the nose base, shrunk 15% towards its centre), neither clipped dark nor bright;
2. the shading of those pixels: the first two SH bands of their luminance fitted by least squares
   (stable beyond the band's normals), floored at ``MIN_SHADING`` of its median there, so that
   every pixel's *shading-free* brightness can be compared: brightness = luminance / shading;
3. a colour model from the reliable pixels: the median and a trimmed covariance of the linear
   chromaticity (r, g) / (r + g + b) (a white light's intensity cancels), with a floor on its
   spread (greyscale photos have none);
4. skin = a covered skin pixel (skin, nose, head and neck labels) whose chromaticity lies within
   ``MAX_MAHALANOBIS`` of the model and whose albedo luminance lies within ``ALBEDO_RANGE`` times
   the reliable pixels' median; non-skin pixels are then grown by ``GROW_PX`` pixels, as hair
   edges blend into skin over a pixel or two. (Bright pixels pass up to 4x: a highlight is skin.)

Pixels the fitted face covers with another label (brows, lips, eyes) are judged by their own
label, not by this test: the brows' and lips' colours are the face's own.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import binary_dilation, label

from ..camera import sh_basis
from ..images import polygon_mask
from ..synth.face_parts import LABEL
from .texture import srgb_to_linear, unclipped

COVERED_SKIN = (LABEL["skin"], LABEL["nose"], LABEL["head_neck"])
RELIABLE_BAND = (1, 41, 40, 28, 47, 46, 15, 13, 54, 33, 48, 3)  # 68-point ids around the cheeks and nose
MAX_MAHALANOBIS = 5.0  # chromaticity distance to the skin model, in its standard deviations
MIN_CHROMA_STD = 0.008  # floor of the model's spread in chromaticity (JPEG noise, greyscale photos)
ALBEDO_RANGE = (0.4, 4.0)  # shading-free brightness relative to the reliable skin's median
MIN_SHADING = 0.3  # darker predicted shading is not trusted to explain a pixel (a deep shadow)
LUMINANCE = np.array([0.2126, 0.7152, 0.0722])
GROW_PX = 1


def reliable_band(landmarks: np.ndarray, shape: tuple[int, int], shrink: float = 0.15) -> np.ndarray:
    """(H, W) bool: the cheek-and-nose polygon of ``landmarks`` (68, 2 pixels)."""
    points = np.asarray(landmarks, np.float64)[list(RELIABLE_BAND)]
    centre = points.mean(0)
    return polygon_mask(shape, centre + (1 - shrink) * (points - centre))


def chromaticity(linear: np.ndarray) -> np.ndarray:
    """(..., 2): (r, g) / (r + g + b) of linear RGB colours, independent of their brightness."""
    c = np.asarray(linear, np.float64) + 1e-3
    return c[..., :2] / c.sum(-1, keepdims=True)


def excluded_pixels(srgb: np.ndarray, segmentation: np.ndarray, normals: np.ndarray, landmarks: np.ndarray,
                    face: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(excluded, occluding): (H, W) bool masks of the covered skin pixels.

    ``excluded``: whose colour must not become albedo. Outside ``face`` (the region a re-render
    replaces) every pixel that fails the skin test; inside it only what enters the face from
    above (``entering``: a fringe, glasses frames). A dark line or spot inside the face (an
    eyelid, a wrinkle, a nostril's shadow) stays: filling it from the mirror side or by
    inpainting looks worse than keeping it.
    ``occluding``: the excluded pixels that show something lying on the skin (hair, glasses):
    those whose colour is not skin's, or that are dark where the skin is lit. A deep shadow or a
    highlight is excluded but occludes nothing (re-renders draw the skin there).
    """
    skin, confident = photo_skin_mask(srgb, segmentation, normals, landmarks)
    covered = np.isin(segmentation, COVERED_SKIN)
    not_skin = covered & ~skin
    excluded = (not_skin & ~face) | entering(not_skin & face, face, landmarks)
    return excluded, excluded & binary_dilation(confident, iterations=GROW_PX)


def photo_skin_mask(srgb: np.ndarray, segmentation: np.ndarray, normals: np.ndarray,
                    landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(skin, confident): (H, W) bool masks: the covered skin pixels of a fitted photo that show
    skin (see the module doc), and those that are surely something else (off the skin's colour,
    or too dark where the shading model says the skin is lit).

    srgb: (H, W, 3) uint8 the photo; segmentation, normals: the fitted face's render at
    the photo's size; landmarks: (68, 2) the photo's landmarks in its pixels.
    """
    linear = srgb_to_linear(srgb)
    covered = np.isin(segmentation, COVERED_SKIN)
    trusted = unclipped(linear)
    reliable = covered & trusted & (segmentation != LABEL["head_neck"]) & reliable_band(landmarks, segmentation.shape)
    if reliable.sum() < 100:  # a face too small or too turned for a band: trust the face's coverage
        return covered, np.zeros_like(covered)
    luminance = linear @ LUMINANCE
    basis = sh_basis(normals)[..., :4]  # constant and linear bands: a smooth shading
    coefficients = np.linalg.lstsq(basis[reliable], luminance[reliable], rcond=None)[0]
    raw = basis @ coefficients
    lit = raw >= MIN_SHADING * np.median(raw[reliable])
    shading = np.maximum(raw, MIN_SHADING * np.median(raw[reliable]))
    brightness = luminance / shading
    relative = brightness / max(np.median(brightness[reliable]), 1e-6)  # the light's scale cancels

    chroma = chromaticity(linear)
    centre, inverse = _robust_model(chroma[reliable])
    offset = chroma - centre
    distance = np.sqrt(np.einsum("hwi,ij,hwj->hw", offset, inverse, offset))

    lo, hi = ALBEDO_RANGE
    off_colour = distance > MAX_MAHALANOBIS
    skin = covered & ~off_colour & (relative >= lo) & (relative <= hi)
    not_skin = binary_dilation(covered & ~skin, iterations=GROW_PX) if GROW_PX else covered & ~skin
    return covered & ~not_skin, covered & (off_colour | (lit & (relative < lo)))


def _robust_model(chroma: np.ndarray, keep: float = 0.8, rounds: int = 2):
    """(centre, inverse covariance) of (N, 2) chromaticities: the median, then the covariance of
    the ``keep`` nearest, ``rounds`` times; its spread floored at ``MIN_CHROMA_STD``."""
    centre = np.median(chroma, 0)
    inside = chroma
    for _ in range(rounds):
        covariance = np.cov(inside.T) + np.eye(2) * MIN_CHROMA_STD ** 2
        offset = chroma - centre
        d = np.einsum("ni,ij,nj->n", offset, np.linalg.inv(covariance), offset)
        inside = chroma[d <= np.quantile(d, keep)]
        centre = np.median(inside, 0)
    # the trimmed covariance underestimates the full one: scale back by the trimmed share's chi-square factor
    covariance = np.cov(inside.T) * _trim_correction(keep) + np.eye(2) * MIN_CHROMA_STD ** 2
    return centre, np.linalg.inv(covariance)


def _trim_correction(keep: float) -> float:
    """Variance of a 2D normal over that of its ``keep`` central mass (chi-square with 2 dof)."""
    r2 = -2 * np.log(1 - keep)  # the radius² holding ``keep`` of the mass
    inner = 1 - (1 + r2 / 2) * np.exp(-r2 / 2)  # E[d²; d² < r2] / 2 for chi-square(2)
    return keep / inner


def entering(candidates: np.ndarray, region: np.ndarray, landmarks: np.ndarray, min_share: float = 0.005) -> np.ndarray:
    """The connected parts of ``candidates`` that reach the border of ``region`` above the nose tip
    (landmark 30 of the 68 ``landmarks``) and cover at least ``min_share`` of it: hair over the
    forehead and glasses frames enter the face from the forehead and the temples. An eyelid's
    line, a nostril's shadow or a mole inside the face, and the shadow under the jaw, do not: kept
    in front of a moved face, they would tear it apart (the albedo is better without them)."""
    parts, count = label(candidates)
    if not count:
        return candidates
    rows = np.arange(region.shape[0])[:, None] < landmarks[30, 1]
    touching = np.unique(parts[binary_dilation(~region, iterations=1) & candidates & rows])
    sizes = np.bincount(parts.ravel(), minlength=count + 1)
    keep = np.zeros(count + 1, bool)
    keep[touching] = True
    keep &= sizes >= min_share * region.sum()
    keep[0] = False
    return keep[parts]
