"""Photo -> detailed 3D face: CoarseNet's reconstruction, then FineNet's depth residual in its crop
(``datagen reconstruct --fine``).

The coarse reconstruction is rendered into FineNet's crop (the coarse crop at FineNet's size);
FineNet's residual, less its median over the face (the offset one view cannot tell) and faded to
zero over ``TAPER_PX`` pixels at the face's edge (so the detailed face meets the rest of the head
without a step), moves each visible face vertex along its camera ray. The model's face triangles
are first subdivided until their edges are no longer than one crop pixel's footprint on the face
(``MAX_SUBDIVISIONS`` at most), so the mesh carries the detail the crop resolves. The picture beside
the mesh shows the crop, the coarse normals, the fine normals and the residual.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from scipy.ndimage import distance_transform_edt, gaussian_filter, map_coordinates

from ..camera import project
from ..errors import DatagenError
from ..images import crop_photo
from .data import network_input
from .fine_data import CoarseRenderer
from .finenet import FACE_LABELS, FineNet, fine_input, fine_normals
from .inference import Reconstruction, Reconstructor, load_checkpoint

TAPER_PX = 6.0
RELIEF_SIGMA_PX, RELIEF_MM = 2.0, 2.0  # the picture's relief: the residual less its blur; its full scale
MAX_SUBDIVISIONS = 2
VISIBLE_MM = 3.0  # a vertex is seen in the crop when its depth is within this of the coarse depth map's


@dataclass
class FineReconstruction:
    coarse: Reconstruction
    crop: np.ndarray  # (S, S, 3) uint8, FineNet's crop (the coarse crop's box)
    intrinsics: np.ndarray  # (4,) of that crop
    coarse_depth: np.ndarray  # (S, S) mm, 0 off the reconstruction
    coarse_normal: np.ndarray  # (S, S, 3)
    face: np.ndarray  # (S, S) bool: the reconstruction's face pixels
    residual: np.ndarray  # (S, S) mm, as applied: median-free over the face, tapered at its edge, 0 elsewhere
    depth: np.ndarray  # (S, S) fine depth, mm
    normal: np.ndarray  # (S, S, 3) fine normals (``finenet.fine_normals``)
    vertices: np.ndarray  # (V', 3) the detailed mesh, crop camera space (mm)
    triangles: np.ndarray  # (F', 3)
    uv: np.ndarray  # (T', 2)
    triangle_uv: np.ndarray  # (F', 3)


class FineReconstructor:
    """A FineNet checkpoint (``datagen train --fine``) with the CoarseNet it carries."""

    def __init__(self, checkpoint: str | Path, model_dir: str | None = None):
        path = Path(checkpoint)
        state = load_checkpoint(path)
        if state.get("kind") != "fine":
            raise DatagenError(f"{path}: a CoarseNet checkpoint; the detail needs a FineNet one "
                               "(datagen train --fine --coarse ...)")
        self.coarse = Reconstructor(path, model_dir, state=state)
        self.model, self.size = self.coarse.model, state["config"]["size"]
        self.net = FineNet(state["config"]["width"])
        try:
            self.net.load_state_dict(state["net"])
        except RuntimeError as e:
            raise DatagenError(f"{path}: its FineNet does not match its config ({str(e).splitlines()[0]})") from None
        self.net.eval()
        self.renderer = CoarseRenderer(self.model, self.size)

    @torch.no_grad()
    def residual(self, crops: np.ndarray, coarse_depth: np.ndarray, coarse_normal: np.ndarray) -> np.ndarray:
        """(B, S, S) FineNet depth residuals (mm) of (B, S, S, 3) uint8 crops and their coarse maps."""
        x = fine_input(torch.from_numpy(network_input(crops)), torch.from_numpy(np.asarray(coarse_depth, np.float32)),
                       torch.from_numpy(np.asarray(coarse_normal, np.float32)))
        return self.net(x).numpy()

    def reconstruct(self, image: np.ndarray, landmarks: np.ndarray) -> FineReconstruction:
        return self.refine(image, self.coarse.reconstruct(image, landmarks))

    def refine(self, image: np.ndarray, coarse: Reconstruction) -> FineReconstruction:
        """The detail of a coarse reconstruction of ``image``."""
        crop = crop_photo(image, coarse.box, self.size)
        depth, normal, labels = self.renderer.render([coarse.params], self.coarse.size)
        depth, normal, labels = depth[0], normal[0], labels[0]
        face = np.isin(labels, FACE_LABELS) & (depth > 0)
        raw = self.residual(crop[None], depth[None], normal[None])[0]
        taper = np.clip(distance_transform_edt(np.pad(face, 1))[1:-1, 1:-1] / TAPER_PX, 0, 1)  # the crop's edge too
        residual = np.where(face, (raw - (np.median(raw[face]) if face.any() else 0.0)) * taper, 0.0).astype(np.float32)
        intrinsics = (coarse.params.intrinsics * self.size / self.coarse.size).astype(np.float32)
        fine = np.where(depth > 0, depth + residual, 0.0).astype(np.float32)
        normals = fine_normals(*(torch.from_numpy(a[None]) for a in (depth, normal, residual, intrinsics)))[0].numpy()
        normals = np.where(face[..., None], normals, normal)
        mesh = detailed_mesh(self.model, coarse.vertices, depth, residual, intrinsics)
        return FineReconstruction(coarse, crop, intrinsics, depth, normal, face, residual, fine, normals, *mesh)

    @staticmethod
    def picture(result: FineReconstruction) -> Image.Image:
        return detail_picture(result)


def subdivide(vertices, triangles, uv, triangle_uv, selected, pinned=None):
    """Each selected triangle split into four at its edges' midpoints (positions and UVs); returns
    (vertices, triangles, uv, triangle_uv, selected, pinned), the new triangles selected. ``pinned``
    (V,) marks vertices that must not move: those of the unselected triangles, then the midpoints of
    edges between two pinned vertices (on the border with an unsplit triangle they are T-junctions,
    which move without a crack only if they stay on its edge)."""
    def midpoints(points, corners):
        edges = np.concatenate([corners[:, [0, 1]], corners[:, [1, 2]], corners[:, [2, 0]]])
        unique, inverse = np.unique(np.sort(edges, 1), axis=0, return_inverse=True)
        middle = len(points) + inverse.reshape(3, -1).T  # (F, 3): the midpoints of edges 01, 12, 20
        return np.concatenate([points, (points[unique[:, 0]] + points[unique[:, 1]]) / 2]), middle

    def split(corners, middle):
        a, b, c = corners.T
        ab, bc, ca = middle.T
        return np.concatenate([np.stack(t, 1) for t in ((a, ab, ca), (ab, b, bc), (ca, bc, c), (ab, bc, ca))])

    if pinned is None:
        pinned = np.zeros(len(vertices), bool)
        pinned[triangles[~selected].ravel()] = True
    count = len(vertices)
    vertices, middle = midpoints(vertices, triangles[selected])
    ends = np.zeros((len(vertices) - count, 2), int)
    for k, (a, b) in enumerate(((0, 1), (1, 2), (2, 0))):
        ends[middle[:, k] - count] = triangles[selected][:, [a, b]]
    pinned = np.concatenate([pinned, pinned[ends].all(1)])
    uv, uv_middle = midpoints(uv, triangle_uv[selected])
    new, new_uv = split(triangles[selected], middle), split(triangle_uv[selected], uv_middle)
    keep = ~selected
    return (vertices, np.concatenate([triangles[keep], new]), uv, np.concatenate([triangle_uv[keep], new_uv]),
            np.concatenate([np.zeros(keep.sum(), bool), np.ones(len(new), bool)]), pinned)


def detailed_mesh(model, vertices, coarse_depth, residual, intrinsics):
    """The reconstruction's mesh with its face triangles subdivided (module docstring) and each
    vertex seen in the crop moved along its camera ray by the residual at its pixel."""
    v, tri, uv, tri_uv = vertices.astype(np.float64), model.triangles, model.uv.astype(np.float64), model.triangle_uv
    selected = model.region_vertices("face")[tri].all(1)
    pinned = np.zeros(len(v), bool)  # only the face moves: what any other triangle holds stays
    pinned[tri[~selected].ravel()] = True
    for _ in range(MAX_SUBDIVISIONS):
        footprint = -v[tri[selected], 2].mean(1) / intrinsics[0]  # mm a crop pixel covers at the triangle
        longest = np.linalg.norm(v[tri[selected]] - v[tri[selected][:, [1, 2, 0]]], axis=-1).max(1)
        if not selected.any() or np.median(longest / footprint) <= 1.0:
            break
        v, tri, uv, tri_uv, selected, pinned = subdivide(v, tri, uv, tri_uv, selected, pinned)
    pixels = project(v[None], intrinsics[None].astype(np.float64))[0] - 0.5  # map_coordinates: pixel centres at integers
    at = [pixels[:, 1], pixels[:, 0]]
    seen_depth = map_coordinates(coarse_depth, at, order=0, cval=0.0)
    shift = map_coordinates(residual, at, order=1, cval=0.0)
    depth = -v[:, 2]
    shift = np.where((seen_depth > 0) & (np.abs(seen_depth - depth) < VISIBLE_MM) & ~pinned, shift, 0.0)
    return (v * ((depth + shift) / depth)[:, None]).astype(np.float32), tri, uv.astype(np.float32), tri_uv


def detail_picture(result: FineReconstruction, scale: int = 2) -> Image.Image:
    """crop | coarse normals | fine normals | the residual's relief: its part finer than RELIEF_SIGMA_PX
    (the rest corrects the coarse shape), red higher, blue deeper, RELIEF_MM full scale."""
    def normals(n):
        return np.where(np.any(n != 0, -1, keepdims=True), (n + 1) / 2 * 255, 0).astype(np.uint8)

    face = result.face.astype(np.float64)
    smooth = gaussian_filter(result.residual * face, RELIEF_SIGMA_PX) / np.maximum(gaussian_filter(face, RELIEF_SIGMA_PX), 1e-6)
    r = np.clip((result.residual - smooth) / RELIEF_MM, -1, 1)  # depth: positive is further from the camera (deeper)
    residual = np.stack([128 + 127 * np.clip(-r, 0, 1), 128 - 127 * np.abs(r), 128 + 127 * np.clip(r, 0, 1)], -1)
    residual = np.where(result.face[..., None], residual, 0).astype(np.uint8)
    row = np.concatenate([result.crop, normals(result.coarse_normal), normals(result.normal), residual], 1)
    s = result.crop.shape[0] * scale
    return Image.fromarray(row).resize((4 * s, s), Image.NEAREST)
