"""Shards -> FineNet's training tensors: the face crop, the CoarseNet reconstruction rendered into it, and
the fine ground truth (``depth_fine``, ``normal_fine``) resampled to it.

The crop is CoarseNet's (``data.face_crop_box``: square around the 68 landmarks), at FineNet's own
size. The coarse reconstruction of every sample FineNet trains or is scored on is computed once
with the CoarseNet checkpoint (its own crop at its own size, with the sample's true camera, as
``evaluate`` scores it) and rendered at FineNet's size through the same crop (``CoarseMaps``); it is
kept in the run folder (``coarse-inputs/``, memory-mapped), so a resumed run does not compute it
again unless the checkpoint, the datasets or the size changed.
Maps are resampled by area (a box filter over the crop's footprint) among the pixels the surface
covers: no background zero is averaged into a depth.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..camera import crop_intrinsics
from ..errors import DatagenError
from ..images import crop_photo
from .data import DatasetMix, data_paths, face_crop_box, network_input, photometric_augmentation
from .finenet import FACE_LABELS

FIELDS = ["image", "landmarks_2d", "params/intrinsics", "segmentation", "depth", "normal", "depth_fine", "normal_fine",
          "sample_index"]
FULL_COVER = 0.999  # a crop pixel belongs to a region when this share of its footprint does


def crop_map(values: np.ndarray, valid: np.ndarray, box, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The square ``box`` of an (H, W) or (H, W, C) float map resampled to ``size`` by area, averaging
    only its ``valid`` pixels: (the map, 0 where no valid pixel falls; the valid share of each pixel)."""
    x0, y0, side = box
    h, w = valid.shape
    pad = int(np.ceil(max(0, -x0, -y0, x0 + side - w, y0 + side - h))) + 1
    region = (x0 + pad, y0 + pad, x0 + pad + side, y0 + pad + side)

    def resample(plane):
        padded = np.pad(np.asarray(plane, np.float32), pad)
        return np.asarray(Image.fromarray(padded, "F").resize((size, size), Image.BOX, box=region))

    weight = valid.astype(np.float32)
    share = resample(weight)
    planes = values[..., None] if values.ndim == 2 else values
    out = np.stack([resample(planes[..., c] * weight) for c in range(planes.shape[-1])], -1)
    out = np.where(share[..., None] > 1e-6, out / np.maximum(share[..., None], 1e-6), 0.0).astype(np.float32)
    return (out[..., 0] if values.ndim == 2 else out), share


def unit(normals: np.ndarray) -> np.ndarray:
    length = np.linalg.norm(normals, axis=-1, keepdims=True)
    return np.where(length > 1e-6, normals / np.maximum(length, 1e-6), 0.0).astype(np.float32)


@dataclass(frozen=True)
class CoarseMaps:
    """Coarse reconstructions rendered into FineNet crops: depth (N, S, S) float32 mm (0 off the
    face), normal (N, S, S, 3) float16 camera space; row k belongs to dataset position positions[k].
    Kept in a run folder they are memory-mapped: forked loader workers share the pages."""

    positions: np.ndarray
    depth: np.ndarray
    normal: np.ndarray
    key: str  # what made them (coarse_maps_key): a run reuses them only for the same key

    def rows(self, positions) -> np.ndarray:
        rows = np.searchsorted(self.positions, positions)
        if np.any(rows >= len(self.positions)) or np.any(self.positions[np.minimum(rows, len(self.positions) - 1)] != positions):
            raise DatagenError("the coarse reconstructions do not cover every sample asked for")
        return rows


def coarse_maps_key(checkpoint_digest: str, data, size: int) -> str:
    """The CoarseNet checkpoint, the datasets (their manifests) and the crop size that coarse maps are made of."""
    h = hashlib.sha256(f"{checkpoint_digest} {size}".encode())
    for path in data_paths(data):
        h.update((Path(path) / "manifest.json").read_bytes())
    return h.hexdigest()[:16]


def require_fine_fields(data) -> None:
    """One clear error unless every dataset has the fine ground truth FineNet learns."""
    for part in DatasetMix(data).parts:
        if "depth_fine" not in part.field_names():
            raise DatagenError(f"{part.path} has no fine ground truth (depth_fine, normal_fine): generate it "
                               "with [sampling.detail] probability > 0, e.g. jobs/details.toml")


class CoarseRenderer:
    """Renders CoarseNet reconstructions (``FaceParams`` in CoarseNet's crop camera) at FineNet's size:
    the same crop, its intrinsics scaled; (depth, normal, segmentation) as ``render.RenderOutput``'s.
    One GL renderer, made on first use."""

    def __init__(self, model, size: int):
        self.model, self.size, self._renderer = model, size, None

    def render(self, params: list, coarse_size: int):
        from ..synth.geometry import build_scenes  # GL only where a reconstruction is rendered
        from ..synth.render import Renderer

        if self._renderer is None:
            self._renderer = Renderer(self.model, self.size, self.size, supersample=1)
        k = self.size / coarse_size
        scaled = [dataclasses.replace(p, intrinsics=(np.asarray(p.intrinsics) * k).astype(np.float32)) for p in params]
        out = self._renderer.render(build_scenes(self.model, scaled, topology=self._renderer.topology))
        return out.depth, out.normal, out.segmentation


def compute_coarse_maps(reconstructor, data, positions, size: int, key: str, folder: str | Path | None = None,
                        batch_size: int = 32, log=print) -> CoarseMaps:
    """Every position's coarse reconstruction (``reconstructor``: a CoarseNet ``Reconstructor``) in its
    FineNet crop of ``size`` pixels; written to ``folder`` (whole or not at all) and memory-mapped
    from it when one is given."""
    import shutil
    import time

    shards = DatasetMix(data, fields=["image", "landmarks_2d", "params/intrinsics"])
    positions = np.sort(np.asarray(positions))
    renderer = CoarseRenderer(reconstructor.model, size)
    partial = Path(str(folder) + ".partial") if folder is not None else None
    if partial is not None:
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        depth = np.lib.format.open_memmap(partial / "depth.npy", "w+", np.float32, (len(positions), size, size))
        normal = np.lib.format.open_memmap(partial / "normal.npy", "w+", np.float16, (len(positions), size, size, 3))
    else:
        depth = np.zeros((len(positions), size, size), np.float32)
        normal = np.zeros((len(positions), size, size, 3), np.float16)
    started = last = time.perf_counter()
    for start in range(0, len(positions), batch_size):
        crops, intrinsics = [], []
        for p in positions[start:start + batch_size]:
            sample = shards[int(p)]
            box = face_crop_box(sample["landmarks_2d"].astype(np.float64))
            crops.append(crop_photo(sample["image"], box, reconstructor.size))
            intrinsics.append(crop_intrinsics(sample["params/intrinsics"].astype(np.float64), box, reconstructor.size))
        params = reconstructor.predict(np.stack(crops), np.stack(intrinsics).astype(np.float32))
        d, n, _ = renderer.render(params, reconstructor.size)
        depth[start:start + len(params)], normal[start:start + len(params)] = d, n
        done = start + len(params)
        if time.perf_counter() - last > 30 or done == len(positions):
            last = time.perf_counter()
            log(f"coarse reconstructions for FineNet: {done}/{len(positions)} samples, "
                f"{done / max(last - started, 1e-9):.1f} samples/s")
    if partial is None:
        return CoarseMaps(positions, depth, normal, key)
    depth.flush()
    normal.flush()
    del depth, normal
    np.save(partial / "positions.npy", positions)
    (partial / "key.txt").write_text(key)
    shutil.rmtree(folder, ignore_errors=True)
    partial.rename(folder)
    return load_coarse_maps(folder, key, positions)


def load_coarse_maps(folder: str | Path, key: str, positions) -> CoarseMaps | None:
    """The maps kept in ``folder`` (memory-mapped) if they were made with that key for those positions, else None."""
    folder = Path(folder)
    try:
        if (folder / "key.txt").read_text() != key:
            return None
        maps = CoarseMaps(np.load(folder / "positions.npy"), np.load(folder / "depth.npy", mmap_mode="r"),
                          np.load(folder / "normal.npy", mmap_mode="r"), key)
    except (OSError, ValueError):
        return None
    return maps if np.array_equal(maps.positions, np.sort(np.asarray(positions))) else None


class FineTrainingSet:
    """A map-style dataset of FineNet's tensors: position -> dict of float32 arrays (module docstring).
    ``coarse``: the ``CoarseMaps`` covering ``positions``."""

    def __init__(self, data, positions, coarse: CoarseMaps, size: int = 128, augment: bool = True, seed: int = 0):
        require_fine_fields(data)
        self.shards = DatasetMix(data, fields=FIELDS)
        self.positions = np.asarray(positions)
        self.rows = coarse.rows(self.positions)
        self.coarse, self.size, self.augment, self.seed = coarse, size, augment, seed
        self.epoch = 0

    def __len__(self):
        return len(self.positions)

    def __getitem__(self, i):
        position = int(self.positions[i])
        sample = self.shards[position]
        box = face_crop_box(sample["landmarks_2d"].astype(np.float64))
        picture = Image.fromarray(crop_photo(sample["image"], box, self.size))
        if self.augment:
            picture = photometric_augmentation(picture, np.random.default_rng([self.seed, self.epoch, position]))
        surface = sample["depth_fine"] > 0
        # the fine truth, and the true coarse surface (for the metrics' floor), resampled in one pass
        maps = np.dstack([sample["depth_fine"], sample["normal_fine"], sample["depth"], sample["normal"]]).astype(np.float32)
        maps, covered = crop_map(maps, surface, box, self.size)
        depth_fine, normal_fine, depth, normal = maps[..., 0], maps[..., 1:4], maps[..., 4], maps[..., 5:8]
        _, face = crop_map(np.zeros(surface.shape, np.float32), np.isin(sample["segmentation"], FACE_LABELS), box, self.size)
        coarse_depth = np.array(self.coarse.depth[self.rows[i]])  # a copy: the maps may be memory-mapped
        mask = (face > FULL_COVER) & (covered > FULL_COVER) & (coarse_depth > 0)
        intrinsics = crop_intrinsics(sample["params/intrinsics"].astype(np.float64), box, self.size)
        return {"image": network_input(np.asarray(picture)), "coarse_depth": coarse_depth,
                "coarse_normal": self.coarse.normal[self.rows[i]].astype(np.float32),
                "depth_fine": depth_fine, "normal_fine": unit(normal_fine), "depth": depth, "normal": unit(normal),
                "mask": mask,
                "intrinsics": intrinsics.astype(np.float32), "index": sample["sample_index"]}
