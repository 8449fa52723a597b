"""The model's UV layout: its UDIM tiles, the triangles unwrapped in it, and maps of it.

UV maps are stored with row 0 = v 0 (OpenGL's order), u spanning ``uv_tiles`` UDIM tiles side by
side (ICT-FaceKit's face and head/neck: 2; the SFM: 1), ``size`` texels per tile. ``UVSurface``
rasterises the model's mean face into such a map (moderngl): where each texel lies on the face.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

import numpy as np
from scipy.ndimage import zoom

from .face_parts import MATERIAL, face_parts
from .geometry import MeshTopology, vertex_normals


def uv_tiles(model) -> int:
    """How many UDIM tiles the skin's UVs span (1 for a plain [0, 1] layout)."""
    parts = face_parts(model)
    drawn = model.triangles[parts.drawn_triangles]
    skin = np.isin(parts.material[drawn], (MATERIAL["skin"], MATERIAL["eye_socket"])).all(1)
    uv = model.uv[model.triangle_uv[parts.drawn_triangles][skin]]
    return max(1, int(np.ceil(uv[..., 0].max() - 1e-6)))


def unwrapped_triangles(topology: MeshTopology) -> np.ndarray:
    """The skin triangles (render-vertex ids, (F, 3)): those whose three vertices are skin or eye
    socket. (A triangle straddling skin and eye, as the SFM's eye outlines do, is left out rather
    than stretched across the map.)"""
    material = topology.attributes["material"]
    skin = np.isin(material[topology.render_triangles], (MATERIAL["skin"], MATERIAL["eye_socket"])).all(1)
    return topology.render_triangles[skin]


def push_pull_fill(values: np.ndarray, known: np.ndarray) -> np.ndarray:
    """Fill the unknown texels of (H, W, C) ``values`` smoothly from the known ones (push-pull pyramid)."""
    levels = [(values * known[..., None], known.astype(np.float32))]
    while min(levels[-1][1].shape) > 1:
        v, w = levels[-1]
        h2, w2 = (v.shape[0] + 1) // 2 * 2, (v.shape[1] + 1) // 2 * 2
        v = np.pad(v, ((0, h2 - v.shape[0]), (0, w2 - v.shape[1]), (0, 0)))
        w = np.pad(w, ((0, h2 - w.shape[0]), (0, w2 - w.shape[1])))
        levels.append((v.reshape(h2 // 2, 2, w2 // 2, 2, -1).sum((1, 3)), w.reshape(h2 // 2, 2, w2 // 2, 2).sum((1, 3))))
    filled = levels[-1][0] / np.maximum(levels[-1][1], 1e-8)[..., None]
    for v, w in reversed(levels[:-1]):
        factors = (v.shape[0] / filled.shape[0], v.shape[1] / filled.shape[1], 1)
        coarse = zoom(filled, factors, order=1, mode="nearest", grid_mode=True)  # bilinear: no blocks
        mean = v / np.maximum(w, 1e-8)[..., None]
        alpha = np.clip(w, 0, 1)[..., None]
        filled = alpha * mean + (1 - alpha) * coarse
    out = values.copy()
    out[~known] = filled[~known]
    return out


@dataclass(frozen=True)
class SurfaceMap:
    """Where each texel of a (size, tiles * size) UV map lies on the model's neutral mean face.

    position: (S, T*S, 3) float32 model space, mm; normal: (S, T*S, 3) unit; material: (S, T*S)
    uint8 (face_parts.MATERIALS); covered: (S, T*S) bool, inside the unwrapped triangles.
    """

    position: np.ndarray
    normal: np.ndarray
    material: np.ndarray
    covered: np.ndarray
    tiles: int


def rasterise_mean_face(renderer, size: int) -> SurfaceMap:
    """The ``SurfaceMap`` of ``renderer``'s model at ``size`` texels per tile, drawn with its context."""
    model, topology, ctx = renderer.model, renderer.topology, renderer.ctx
    tiles = uv_tiles(model)
    mean = model.mean[None].astype(np.float32)
    normals = vertex_normals(mean, topology)[0]
    with ctx:  # current in this thread (see Renderer.__init__)
        shader = lambda name: resources.files("datagen.synth").joinpath("shaders", name).read_text()  # noqa: E731
        program = ctx.program(vertex_shader=shader("uv_surface.vert"), fragment_shader=shader("uv_surface.frag"))
        ids = topology.render_to_model
        data = np.concatenate([mean[0][ids], normals[ids], topology.render_uv,
                               topology.attributes["material"][:, None]], 1).astype(np.float32)
        buffer = ctx.buffer(np.ascontiguousarray(data).tobytes())
        index = ctx.buffer(unwrapped_triangles(topology).astype(np.int32).tobytes())
        vao = ctx.vertex_array(program, [(buffer, "3f 3f 2f 1f", "in_position", "in_normal", "in_uv", "in_material")],
                               index_buffer=index)
        shape = (tiles * size, size)
        fbo = ctx.framebuffer(color_attachments=[ctx.texture(shape, 4, dtype="f4") for _ in range(2)])
        try:
            program["u_tiles"] = float(tiles)
            fbo.use()
            fbo.clear(0.0, 0.0, 0.0, 0.0)
            ctx.disable(ctx.DEPTH_TEST | ctx.CULL_FACE)
            vao.render()
            position, normal = (np.frombuffer(fbo.read(attachment=k, components=4, dtype="f4"), np.float32)
                                .reshape(size, tiles * size, 4) for k in range(2))
        finally:
            for thing in (fbo, vao, index, buffer, program):
                thing.release()
    covered = position[..., 3] > 0
    unit = normal[..., :3] / np.maximum(np.linalg.norm(normal[..., :3], axis=-1, keepdims=True), 1e-12)
    return SurfaceMap(position=position[..., :3].copy(), normal=unit.astype(np.float32),
                      material=np.rint(normal[..., 3]).astype(np.uint8), covered=covered, tiles=tiles)
