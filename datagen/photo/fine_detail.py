"""A fitted photo's own fine detail: the shading its coarse fit cannot explain, as a displacement map.

In UV space at the albedo's resolution, on the texels the photo shows (``extract_detail``):

1. what the coarse fit leaves unexplained: the photo over (smooth albedo x SH irradiance of the
   coarse normals), in log luminance, high-passed (``HIGH_PASS_MM``): the fit's slow misfit and
   the albedo's slow changes go, wrinkles, pores and creases stay. Since the albedo is the photo
   over the irradiance, this is the high-passed log luminance of the albedo itself;
2. shape from shading under the recovered lighting, to first order: the displaced surface's
   normal is n - grad_s d (face.frag's), so E(n') / E(n) - 1 = -(grad E(n) / E(n)) . grad_s d. Every
   seen texel gives one linear equation in d's gradient along the light's gradient; a small
   smoothness and a small pull towards 0 fill the direction the light does not see and the
   texels the photo does not show (least squares, sparse: conjugate gradients);
3. confidence: seen, times how strongly the light's shading varies across normals there;
4. the albedo is re-estimated under the fine normals (``recover_fine_albedo``), so that it no
   longer bakes the wrinkles' shading into colour: relit, the wrinkles' shading moves with the light.

What this cannot tell apart: albedo that changes at wrinkle scale (freckles, moles, stubble) reads
as relief too, in the light's direction only; the strength a job applies (``photo_strength``)
scales it all.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse
import scipy.sparse.linalg
from scipy.ndimage import binary_dilation, gaussian_filter, zoom

from ..camera import irradiance_basis, rotation_matrix
from ..errors import DatagenError
from .texture import SEEN, recover_albedo

HIGH_PASS_MM = 3.0  # the Gaussian the unexplained shading is high-passed with
SMOOTHNESS = 0.05  # weight of |grad d|^2 against the shading equations
RIDGE = 0.2  # weight of d^2: holds back the drift that integrating one derivative accumulates
MAX_DISPLACEMENT_MM = 1.5
CHROMA_TOLERANCE = 0.04  # high-passed log colour off grey by this much: pigment, not shading
MAX_UNEXPLAINED = 0.3  # log luminance: beyond it an edge of albedo (or a cast shadow), not a wrinkle
LUMINANCE = np.array([0.2126, 0.7152, 0.0722])
FILE = "detail.npz"


@dataclass(frozen=True)
class DetailMap:
    """A face's static displacement in UV space: (S, T*S) float32 mm along the normal, positive
    outwards, row 0 = v 0; ``confidence`` (S, T*S) in [0, 1]; ``tiles`` UDIM tiles side by side."""

    displacement: np.ndarray
    confidence: np.ndarray
    tiles: int

    @property
    def size(self) -> int:
        return self.displacement.shape[0]

    def resized(self, size: int) -> np.ndarray:
        """(size, T*size) float32 displacement: the map at another resolution (bilinear)."""
        if size == self.size:
            return self.displacement
        factors = (size / self.size, size * self.tiles / self.displacement.shape[1])
        return zoom(self.displacement, factors, order=1, mode="nearest", grid_mode=True).astype(np.float32)


def extract_detail(texels: dict, albedo, light_sh: np.ndarray, rotation: np.ndarray, reference: np.ndarray) -> DetailMap:
    """The photo's detail (module docstring). ``texels``: the UV rasteriser's maps of the fit;
    ``albedo``: the AlbedoMap recovered from them; ``reference``: (S, T*S, 3) mean-face position of
    each texel (mm, ``detail_bank.DetailBank.reference``); ``rotation``: the fit's (yaw, pitch, roll)."""
    seen = texels["covered"] & (albedo.confidence >= SEEN)
    s, width = seen.shape
    jacobian = _tangents(reference, rotation)  # (S, W, 3, 2): mm per texel along columns, rows
    texel_mm = float(np.median(np.linalg.norm(jacobian[seen], axis=-2))) if seen.any() else 1.0
    sigma = HIGH_PASS_MM / texel_mm
    weight = seen.astype(np.float64)
    log_rgb = np.log(np.maximum(albedo.albedo, 1e-4)).astype(np.float64)
    low = gaussian_filter(log_rgb * weight[..., None], (sigma, sigma, 0)) / np.maximum(
        gaussian_filter(weight, sigma), 1e-6)[..., None]
    high = np.where(seen[..., None], log_rgb - low, 0.0)  # (S, W, 3) high-passed log colour
    unexplained = high @ LUMINANCE
    # Shading scales every channel alike (a white-ish light); pigment (brows, lips, blotches, moles)
    # changes their ratios: texels whose high-passed colour is not grey are not read as relief.
    chroma = np.linalg.norm(high - unexplained[..., None], axis=-1)
    achromatic = np.exp(-(chroma / CHROMA_TOLERANCE) ** 2)
    unexplained = np.clip(unexplained, -MAX_UNEXPLAINED, MAX_UNEXPLAINED)
    normals = _unit(texels["normal"])
    gradient = _light_gradient(normals, light_sh)  # (S, W, 3): grad E / E in the tangent plane
    # a d_col + b d_row = -unexplained, with [a, b] = g^T J (J^T J)^-1 (the surface gradient of d)
    gram_inv = np.linalg.inv(np.einsum("...ki,...kj->...ij", jacobian, jacobian) + 1e-9 * np.eye(2))
    ab = np.einsum("...k,...ki,...ij->...j", gradient, jacobian, gram_inv)
    informative = np.clip(np.linalg.norm(gradient, axis=-1) / 0.5, 0, 1) * achromatic
    confidence = np.where(seen, albedo.confidence * informative, 0.0).astype(np.float32)
    near = binary_dilation(confidence > 0, iterations=4) & texels["covered"]
    d = _solve(ab, -unexplained, np.where(seen, informative, 0.0), near)
    inside = near.astype(np.float64)  # high-passed as the shading was: detail, not the fit's slow misfit
    d -= np.where(near, gaussian_filter(d * inside, sigma) / np.maximum(gaussian_filter(inside, sigma), 1e-6), 0.0)
    d = np.clip(d, -MAX_DISPLACEMENT_MM, MAX_DISPLACEMENT_MM)
    return DetailMap(displacement=d.astype(np.float32), confidence=confidence, tiles=albedo.tiles)


def fine_normals(texels: dict, detail: DetailMap, rotation, reference) -> np.ndarray:
    """(S, W, 3) the texels' normals with the detail: n - grad_s d, normalised (face.frag's)."""
    jacobian = _tangents(reference, rotation)
    d_row, d_col = np.gradient(detail.displacement)
    gram_inv = np.linalg.inv(np.einsum("...ki,...kj->...ij", jacobian, jacobian) + 1e-9 * np.eye(2))
    surface = np.einsum("...ki,...ij,...j->...k", jacobian, gram_inv, np.stack([d_col, d_row], -1))
    return _unit(_unit(texels["normal"]) - surface).astype(np.float32)


def recover_fine_albedo(texels: dict, light_sh, tiles: int, detail: DetailMap, rotation, reference):
    """The albedo under the fine normals: the photo's wrinkle shading left out of its colour."""
    return recover_albedo({**texels, "normal": fine_normals(texels, detail, rotation, reference)}, light_sh, tiles)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-9)


def _tangents(reference: np.ndarray, rotation) -> np.ndarray:
    """(S, W, 3, 2) camera-space d position / d (column, row) per texel, from the mean face turned by the fit."""
    d_row, d_col = np.gradient(reference.astype(np.float64), axis=(0, 1))
    r = rotation_matrix(np.asarray(rotation, np.float64))
    return np.stack([d_col @ r.T, d_row @ r.T], -1)


def _light_gradient(normals: np.ndarray, light_sh: np.ndarray, step: float = 1e-3) -> np.ndarray:
    """(S, W, 3) grad_n E(n) / E(n) of the luminance irradiance, projected on the tangent plane."""
    light = np.asarray(light_sh, np.float64) @ LUMINANCE
    flat = normals.reshape(-1, 3).astype(np.float64)
    e = np.maximum(irradiance_basis(flat) @ light, 1e-4)
    grad = np.stack([(irradiance_basis(flat + step * axis) @ light - irradiance_basis(flat - step * axis) @ light)
                     / (2 * step) for axis in np.eye(3)], -1) / e[:, None]
    grad -= (grad * flat).sum(-1, keepdims=True) * flat
    return grad.reshape(normals.shape)


def _solve(ab: np.ndarray, rhs: np.ndarray, weight: np.ndarray, inside: np.ndarray) -> np.ndarray:
    """Least squares for d on the texels ``inside`` (others 0): weight (a d_col + b d_row - rhs)
    + SMOOTHNESS |grad d| + RIDGE |d|, with central differences for the data, forward for the rest."""
    s, w = inside.shape
    ids = np.full(inside.shape, -1, np.int64)
    ids[inside] = np.arange(inside.sum())
    n = int(inside.sum())
    rows, cols, vals, b = [], [], [], []
    eq = 0

    def add(centre, neighbours, coefficients, target):  # one equation per texel of ``centre``
        nonlocal eq
        count = len(centre[0])
        for (r, c), k in zip(neighbours, coefficients):
            valid = ids[r, c] >= 0
            rows.append(eq + np.flatnonzero(valid))
            cols.append(ids[r, c][valid])
            vals.append(np.broadcast_to(k, (count,))[valid])
        b.append(target)
        eq += count

    r, c = np.nonzero(inside & (weight > 0))
    rp, rm, cp, cm = np.minimum(r + 1, s - 1), np.maximum(r - 1, 0), np.minimum(c + 1, w - 1), np.maximum(c - 1, 0)
    k = weight[r, c]
    a, bb = ab[r, c, 0] * k / 2, ab[r, c, 1] * k / 2
    add((r, c), [(r, cp), (r, cm), (rp, c), (rm, c)], [a, -a, bb, -bb], rhs[r, c] * k)
    r, c = np.nonzero(inside)
    rp, cp = np.minimum(r + 1, s - 1), np.minimum(c + 1, w - 1)
    add((r, c), [(r, cp), (r, c)], [SMOOTHNESS, -SMOOTHNESS], np.zeros(len(r)))
    add((r, c), [(rp, c), (r, c)], [SMOOTHNESS, -SMOOTHNESS], np.zeros(len(r)))
    add((r, c), [(r, c)], [RIDGE], np.zeros(len(r)))
    matrix = scipy.sparse.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(eq, n))
    normal = (matrix.T @ matrix).tocsr()
    x, _ = scipy.sparse.linalg.cg(normal, matrix.T @ np.concatenate(b), rtol=1e-4, maxiter=400)
    d = np.zeros(inside.shape)
    d[inside] = x
    return d


# --- in a texture-library entry (photo.library)


def save_detail(folder: Path, detail: DetailMap) -> None:
    np.savez(folder / FILE, displacement=detail.displacement.astype(np.float16),
             confidence=np.round(detail.confidence * 255).astype(np.uint8), tiles=detail.tiles)


def load_detail(folder: Path, albedo_shape: tuple) -> DetailMap | None:
    """An entry's detail map; None for an entry fitted before detail maps; a wrong-sized or corrupt
    one is one error naming the entry."""
    path = Path(folder) / FILE
    if not path.exists():
        return None
    try:
        with np.load(path) as data:
            displacement = data["displacement"].astype(np.float32)
            confidence = data["confidence"].astype(np.float32) / 255
            tiles = int(data["tiles"])
    except (OSError, ValueError, KeyError, EOFError) as e:
        raise DatagenError(f"{path}: unreadable detail map ({e}); fit the photo again") from None
    if displacement.shape != tuple(albedo_shape[:2]) or confidence.shape != displacement.shape:
        raise DatagenError(f"{path}: detail map of {displacement.shape[1]}x{displacement.shape[0]} texels, but the "
                           f"entry's albedo is {albedo_shape[1]}x{albedo_shape[0]}; fit the photo again")
    if not np.isfinite(displacement).all():
        raise DatagenError(f"{path}: the detail map holds non-finite values; fit the photo again")
    return DetailMap(displacement, confidence, tiles)
