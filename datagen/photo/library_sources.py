"""What jobs take from texture libraries besides the faces themselves: the lighting recovered from
their photos (real environments), the photos as backgrounds that never show the head, and whether
their entries carry fine detail."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import DatagenError
from ..images import ImageReadError
from ..synth.background import BackgroundImage, window_outside
from .library import CATALOGUE, TextureLibrary, _entry_id


def _entries(path, lacking: str) -> list[dict]:
    entries = TextureLibrary(path).index()["entries"]
    if not entries:
        raise DatagenError(f"{path}: the texture library is empty, so it has {lacking}; add photos with 'datagen fit'")
    return entries


def library_lights(libraries) -> list[np.ndarray]:
    """The (9, 3) SH lighting recovered from every photo of texture ``libraries`` (a job's real environments)."""
    lights = []
    for path in libraries:
        entries = _entries(path, "no lighting to give")
        try:
            stored = TextureLibrary(path).catalogue() if (Path(path) / CATALOGUE).exists() else None
        except DatagenError:
            stored = None
        if stored is not None and list(stored["ids"]) == [_entry_id(e) for e in entries]:
            lights += list(stored["light_sh"].reshape(-1, 9, 3))  # one file, not a fit.json per entry
            continue
        for entry in entries:
            fit = Path(path) / entry["name"] / "fit.json"
            try:
                lights.append(np.asarray(json.loads(fit.read_text())["light_sh"], np.float32).reshape(9, 3))
            except (OSError, ValueError, KeyError) as e:
                raise DatagenError(f"{fit.parent}: unreadable texture entry ({e}); fit the photo again") from None
    return lights


HEAD_MARGIN = (0.15, 0.9, 0.15, 0.35)  # the head around the 68 landmarks' box: its width left and right, its height above (forehead, hair) and below (neck)


def photo_backgrounds(libraries) -> list[BackgroundImage]:
    """The photos of texture ``libraries`` as background images whose head (the landmarks' box grown
    by ``HEAD_MARGIN``) is never shown; photos without a band beside the head wide enough are left out."""
    images = []
    for path in libraries:
        for entry in _entries(path, "no photos to give as backgrounds"):
            folder = Path(path) / entry["name"]
            try:
                landmarks = np.asarray(json.loads((folder / "fit.json").read_text())["landmarks"], float)
                with Image.open(folder / "photo.png") as im:
                    size = im.size
            except (OSError, ValueError, KeyError) as e:
                raise DatagenError(f"{folder}: unreadable texture entry ({e}); fit the photo again") from None
            (x0, y0), (x1, y1) = landmarks.min(0), landmarks.max(0)
            left, above, right, below = HEAD_MARGIN
            box = (x0 - left * (x1 - x0), y0 - above * (y1 - y0), x1 + right * (x1 - x0), y1 + below * (y1 - y0))
            try:
                window_outside(np.random.default_rng(0), size, box)
            except ImageReadError:
                continue
            images.append(BackgroundImage(folder / "photo.png", tuple(float(v) for v in box)))
    return images


def detail_libraries(spec) -> list[str]:
    """The texture libraries whose photos' detail a job with fine detail uses (its own, its donors')."""
    d = spec.sampling.detail
    if not d.probability:
        return []
    own = [path for _, path in spec.texture_libraries()] if d.photo_strength > 0 else []
    return own + [spec.path(w) for w in d.donor_libraries]


def libraries_without_detail(spec) -> list[str]:
    """Lines for a person: each detail library (``detail_libraries``) holding entries fitted before
    detail maps, which give no detail of their own (those faces get the procedural detail only)."""
    from .fine_detail import FILE

    notes = []
    for path in detail_libraries(spec):
        entries = _entries(path, "no detail to give")
        old = sum(not (Path(path) / e["name"] / FILE).exists() for e in entries)
        if old:
            notes.append(f"{path}: {old} of {len(entries)} entries were fitted before detail maps and give no detail of "
                         f"their own (procedural detail only); run 'datagen fit' on their photos again to extract it")
    return notes
