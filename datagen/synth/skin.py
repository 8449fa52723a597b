"""The procedural skin's base colour and the skin-tone prior built on it.

The base albedo is face.frag's ``skin_albedo()`` without its noise and regional terms (lips,
cheeks, blotches, pores, brows): a white reflectance under the absorption of melanin, which falls
with wavelength, and of haemoglobin (green and blue), at R, G, B ~ 650, 550, 450 nm. The shader
takes its constants from here (``glsl_skin_constants``).

The balanced prior draws an individual typology angle (ITA, ``data.skin_tone``) category
uniformly, an angle uniformly inside it, and the melanin that gives the skin that angle as
rendered at ``EXPOSURE``: the median shading of the default lighting prior on a face (measured on
800 train20k samples, the rendered skin's ITA minus its albedo's at that exposure is 1.9 degrees
in the median), so that ``datagen inspect``'s rendered skin tones come out balanced too.
"""

from __future__ import annotations

import functools

import numpy as np

from ..data.skin_tone import ITA_CATEGORIES, ita_degrees, srgb_to_lab

WHITE = (0.95, 0.93, 0.9)  # reflectance without pigment, linear RGB
MELANIN_BASE, MELANIN_SCALE = 0.3, 2.2  # optical density of melanin = base + scale * melanin
MELANIN_ABSORPTION = (1.0, 1.35, 1.8)  # relative per channel
HAEMOGLOBIN_SCALE = 0.6
HAEMOGLOBIN_ABSORPTION = (0.1, 0.5, 0.35)
EXPOSURE = 0.7
# the angles drawn inside each of ITA_CATEGORIES (the outer two categories are open: bounded here)
ITA_RANGES = ((55.0, 70.0), (41.0, 55.0), (28.0, 41.0), (10.0, 28.0), (-30.0, 10.0), (-55.0, -30.0))
MELANIN_SEARCH = (-0.05, 1.05)  # melanin values the inverse looks among
# The procedural iris: ``iris_hue`` below each edge picks the colour (brown, hazel, green; blue
# above the last), scaled by ``iris_darkness`` + 0.3 (the shader's mean factor). Linear RGB albedo.
IRIS_COLOURS = ((0.09, 0.04, 0.015), (0.2, 0.13, 0.04), (0.1, 0.16, 0.07), (0.1, 0.18, 0.32))
IRIS_HUE_EDGES = (0.55, 0.7, 0.82)


def base_albedo(melanin, haemoglobin) -> np.ndarray:
    """(..., 3) linear RGB base albedo of the skin for melanin and haemoglobin in [0, 1]."""
    melanin, haemoglobin = np.asarray(melanin, np.float64)[..., None], np.asarray(haemoglobin, np.float64)[..., None]
    density = (MELANIN_BASE + MELANIN_SCALE * melanin) * MELANIN_ABSORPTION
    return np.asarray(WHITE) * np.exp(-density - HAEMOGLOBIN_SCALE * haemoglobin * np.asarray(HAEMOGLOBIN_ABSORPTION))


def rendered_ita(melanin, haemoglobin, exposure: float = EXPOSURE) -> np.ndarray:
    """ITA (degrees) of the base albedo shaded by ``exposure`` and encoded as sRGB, as an image shows it."""
    linear = np.clip(exposure * base_albedo(melanin, haemoglobin), 0, 1)
    srgb = np.where(linear <= 0.0031308, 12.92 * linear, 1.055 * linear ** (1 / 2.4) - 0.055) * 255
    return ita_degrees(srgb_to_lab(srgb))


def melanin_for_ita(ita: float, haemoglobin: float) -> float:
    """The melanin whose skin, with ``haemoglobin``, renders at angle ``ita`` (ITA falls as melanin rises)."""
    grid = _melanin_grid()
    angles = rendered_ita(grid, np.full_like(grid, haemoglobin))
    return float(np.interp(ita, angles[::-1], grid[::-1]))


@functools.lru_cache(maxsize=1)
def _melanin_grid() -> np.ndarray:
    return np.linspace(*MELANIN_SEARCH, 512)


def balanced_melanin(rng, haemoglobin: float) -> float:
    """Melanin of a skin tone drawn uniformly over the ITA categories (see the module docstring)."""
    lo, hi = ITA_RANGES[int(rng.integers(len(ITA_CATEGORIES)))]
    return melanin_for_ita(rng.uniform(lo, hi), haemoglobin)


def iris_appearance(colour) -> tuple[float, float]:
    """(iris_hue, iris_darkness) of the procedural iris nearest a linear RGB iris albedo: the
    palette colour of the nearest chromaticity, at the darkness that matches its luminance."""
    colour = np.maximum(np.asarray(colour, np.float64), 1e-4)
    palette = np.asarray(IRIS_COLOURS)
    chroma = lambda c: c / c.sum(-1, keepdims=True)  # noqa: E731
    k = int(np.argmin(((chroma(palette) - chroma(colour)) ** 2).sum(-1)))
    edges = (0.0,) + IRIS_HUE_EDGES + (1.0,)
    luminance = np.array([0.2126, 0.7152, 0.0722])
    darkness = float(np.clip(colour @ luminance / (palette[k] @ luminance) - 0.3, 0.0, 1.0))
    return (edges[k] + edges[k + 1]) / 2, darkness


def glsl_skin_constants() -> str:
    """The constants as the GLSL lines face.frag's ``skin_albedo()`` and eyes declare."""
    vec = lambda v: f"vec3({', '.join(repr(float(x)) for x in v)})"  # noqa: E731
    return (f"const vec3 iris_colours[4] = vec3[4]({', '.join(vec(c) for c in IRIS_COLOURS)});\n"
            f"const float iris_edges[3] = float[3]({', '.join(repr(float(e)) for e in IRIS_HUE_EDGES)});\n"
            f"const vec3 skin_white = {vec(WHITE)};\n"
            f"const float melanin_base = {MELANIN_BASE!r}, melanin_scale = {MELANIN_SCALE!r};\n"
            f"const vec3 melanin_absorption = {vec(MELANIN_ABSORPTION)};\n"
            f"const float haemoglobin_scale = {HAEMOGLOBIN_SCALE!r};\n"
            f"const vec3 haemoglobin_absorption = {vec(HAEMOGLOBIN_ABSORPTION)};")
