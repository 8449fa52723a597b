"""Inverse rendering of a fitted photo: its skin albedo in the model's UV space, and its lighting.

Following Guo et al. (inverse-rendered photo-realistic faces): with the face's geometry known
from the fit, every visible point of the photo gives ``colour = albedo * E(n)``, where E is the
SH irradiance the renderer uses (face.frag, Ramamoorthi & Hanrahan 2001). Steps:

1. render the fitted face's ground truth (depth, normals, labels) at the photo's resolution;
2. lighting: least squares for the 9x3 SH radiance coefficients on the visible skin pixels,
   taking the skin albedo as constant there (a typical skin colour, ``SKIN_ALBEDO``, fixes the
   scale and colour that albedo and light otherwise share);
3. rasterise the mesh in UV space (``UVRasteriser``, moderngl: a texel per fragment, no Python
   loops): each texel gets the photo's colour where its face point is visible (a depth test
   against step 1's depth map), a visibility weight (cosine of the viewing angle), its normal
   and its mirror texel;
4. albedo = colour / E(n) per visible texel; unseen texels take their mirror texel's albedo
   where that was seen, the rest is filled by push-pull inpainting (smooth, from the borders);
   ``confidence`` keeps how each texel was obtained (visibility weight >= SEEN; MIRRORED x the
   mirror's; 0).

Colours are linear RGB; images are sRGB. UV maps are stored with row 0 = v 0 (OpenGL's order),
u spanning ``tiles`` UDIM tiles (ICT-FaceKit's face and head/neck: 2; the SFM: 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from ..camera import irradiance_basis
from ..images import polygon_mask
from ..synth.face_parts import LABEL, MATERIAL
from ..synth.geometry import MeshTopology, SceneBatch
from ..synth.render import Renderer, shader_source
from ..synth.uv_layout import push_pull_fill, unwrapped_triangles, uv_tiles  # noqa: F401 (the albedo's layout)

SKIN_LABELS = (LABEL["skin"], LABEL["nose"], LABEL["head_neck"])
SKIN_ALBEDO = (0.52, 0.37, 0.30)  # a typical skin's linear RGB reflectance (luminance 0.4)
MAX_ALBEDO = 1.0
SEEN = 0.3  # confidence >= SEEN: seen in the photo (the visibility weight); below: filled
IRIS_QUANTILES = (0.15, 0.5)
MIRRORED = 0.8 * SEEN  # a mirrored texel's confidence: this times its mirror's weight (< SEEN)


def srgb_to_linear(image: np.ndarray) -> np.ndarray:
    c = np.asarray(image, np.float32) / 255.0
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4).astype(np.float32)


def unclipped(linear: np.ndarray) -> np.ndarray:
    """(H, W) bool: pixels of a linear-RGB image neither clipped dark nor bright (their colour can be trusted)."""
    return (linear.mean(-1) > 0.01) & (linear.max(-1) < 0.98)


def linear_to_srgb(colour: np.ndarray) -> np.ndarray:
    c = np.clip(colour, 0, 1)
    return np.round(255 * np.where(c <= 0.0031308, c * 12.92, 1.055 * c ** (1 / 2.4) - 0.055)).astype(np.uint8)


def estimate_lighting(colour: np.ndarray, normals: np.ndarray, skin_albedo=SKIN_ALBEDO,
                      ridge: float = 1e-3) -> np.ndarray:
    """(9, 3) SH radiance from linear colours (N, 3) of skin with unit normals (N, 3).

    The skin albedo is taken as constant there, ``skin_albedo`` (linear RGB): that fixes the scale
    and the colour that albedo and light otherwise share. The photo's skin colour then stays in
    the albedo, and only its departure from a typical skin goes into the light's colour, so that
    a face relit under white light keeps skin colours.
    """
    basis = irradiance_basis(normals.astype(np.float64))
    penalty = ridge * np.diag([0, 1, 1, 1, 4, 4, 4, 4, 4]) * len(basis)  # keep the higher bands modest
    sh = np.linalg.solve(basis.T @ basis + penalty, basis.T @ colour.astype(np.float64))
    return (sh / np.asarray(skin_albedo)).astype(np.float32)


def estimate_iris(linear: np.ndarray, normals: np.ndarray, light_sh: np.ndarray, landmarks: np.ndarray,
                  shown: np.ndarray) -> np.ndarray | None:
    """(3,) the photo's iris albedo, linear RGB: the median of colour / irradiance over the pixels
    inside both eyes' landmark outlines (36-41, 42-47 of the 68, shrunk by a fifth towards their
    centres: the eyeball, not the lids) that the photo ``shown``, between the IRIS_QUANTILES of
    their brightness (not the pupil below, nor the white above); None for eyes nearly closed."""
    shrunk = [e.mean(0) + 0.8 * (e - e.mean(0)) for e in (landmarks[36:42], landmarks[42:48])]
    eye = polygon_mask(shown.shape, *shrunk) & shown
    if eye.sum() < 30:
        return None
    colour, n = linear[eye].astype(np.float64), normals[eye].astype(np.float64)
    luminance = colour @ np.array([0.2126, 0.7152, 0.0722])
    lo, hi = np.quantile(luminance, IRIS_QUANTILES)
    iris = (luminance >= lo) & (luminance <= hi)
    irradiance = np.maximum(irradiance_basis(n[iris]) @ np.asarray(light_sh, np.float64), 0.05)
    return np.median(colour[iris] / irradiance, 0).astype(np.float32)


@dataclass
class AlbedoMap:
    """A face's skin albedo in UV space.

    albedo:     (S, tiles * S, 3) float32 linear RGB, row 0 = v 0
    confidence: (S, tiles * S) float32 in [0, 1]: the visibility weight (>= SEEN) where seen in the
                photo; MIRRORED times the mirror texel's (< SEEN) where filled by symmetry; 0 where
                inpainted or outside the UV layout
    """

    albedo: np.ndarray
    confidence: np.ndarray
    tiles: int

    @property
    def gl_texels(self) -> np.ndarray:
        return np.ascontiguousarray(self.albedo, np.float16)


def mirror_uvs(model, topology: MeshTopology) -> np.ndarray:
    """(R, 2) per render vertex: the UV of the vertex at its mirror position (x -> -x) on the mean face."""
    vertex = topology.render_to_model
    skin = np.flatnonzero(np.isin(topology.attributes["material"], (MATERIAL["skin"], MATERIAL["eye_socket"])))
    _, nearest = cKDTree(model.mean[vertex[skin]]).query(model.mean[vertex] * [-1, 1, 1])
    return topology.render_uv[skin[nearest]]  # only skin: the eyes' UVs overlap the face's tile


class UVRasteriser:
    """Rasterises a Renderer's mesh in UV space (sharing its vertex buffers) at ``size`` texels per tile."""

    def __init__(self, renderer: Renderer, size: int = 512):
        self.renderer, self.size = renderer, size
        self.tiles = uv_tiles(renderer.model)
        ctx = renderer.ctx
        with ctx:  # current in this thread (see Renderer.__init__)
            self.program = ctx.program(vertex_shader=shader_source("uv.vert"), fragment_shader=shader_source("uv.frag"))
            topology = renderer.topology
            self.mirror = ctx.buffer(np.ascontiguousarray(mirror_uvs(renderer.model, topology), np.float32).tobytes())
            self.index = ctx.buffer(unwrapped_triangles(topology).astype(np.int32).tobytes())
            self.vao = ctx.vertex_array(self.program, renderer.vertex_buffers("in_position", "in_normal", "in_uv")
                                        + [(self.mirror, "2f", "in_mirror_uv")], index_buffer=self.index)
            shape = (self.tiles * size, size)
            self.fbo = ctx.framebuffer(color_attachments=[ctx.texture(shape, 4, dtype="f4") for _ in range(3)])
            self.program["u_tiles"] = float(self.tiles)
            self.program["u_photo"] = 0
            self.program["u_depth"] = 1

    def rasterise(self, scenes: SceneBatch, i: int, photo_linear: np.ndarray, depth: np.ndarray,
                  depth_tolerance: float = 3.0) -> dict[str, np.ndarray]:
        """Texel maps (rows = v from 0) of sample i against a (H, W, 3) linear photo and its (H, W) depth map."""
        ctx = self.renderer.ctx
        with ctx:  # make this context current (see Renderer.render)
            return self._rasterise(ctx, scenes, i, photo_linear, depth, depth_tolerance)

    def _rasterise(self, ctx, scenes, i, photo_linear, depth, depth_tolerance):
        h, w = depth.shape
        photo = ctx.texture((w, h), 3, np.ascontiguousarray(photo_linear, np.float32).tobytes(), dtype="f4")
        depth_map = ctx.texture((w, h), 1, np.ascontiguousarray(depth, np.float32).tobytes(), dtype="f4")
        depth_map.filter = (ctx.NEAREST, ctx.NEAREST)
        try:
            self.renderer.upload(scenes, i)
            self.program["u_intrinsics"].value = tuple(float(v) for v in scenes.intrinsics[i])
            self.program["u_image_size"].value = (float(w), float(h))
            self.program["u_depth_tolerance"].value = depth_tolerance
            photo.use(0)
            depth_map.use(1)
            self.fbo.use()
            self.fbo.clear(0.0, 0.0, 0.0, 0.0)
            ctx.disable(ctx.DEPTH_TEST | ctx.CULL_FACE)
            self.vao.render()
            maps = [np.frombuffer(self.fbo.read(attachment=k, components=4, dtype="f4"), np.float32)
                    .reshape(self.size, self.tiles * self.size, 4) for k in range(3)]
        finally:
            photo.release()
            depth_map.release()
        observed, normal, mirror = maps
        return {"colour": observed[..., :3], "weight": observed[..., 3], "normal": normal[..., :3],
                "covered": normal[..., 3] > 0, "mirror_uv": mirror[..., :2]}


def recover_albedo(texels: dict[str, np.ndarray], light_sh: np.ndarray, tiles: int,
                   min_weight: float = SEEN) -> AlbedoMap:
    """Albedo = colour / E(n) where seen; mirror fill; push-pull inpainting inside the UV layout."""
    covered, weight = texels["covered"], texels["weight"]
    seen = covered & (weight > min_weight)
    s, width = covered.shape
    normals = texels["normal"][seen]
    normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-6)
    irradiance = irradiance_basis(normals) @ light_sh
    albedo = np.zeros((s, width, 3), np.float32)
    albedo[seen] = texels["colour"][seen] / np.maximum(irradiance, 1e-3)
    # Where the fitted light leaves the skin nearly dark, the quotient only amplifies noise and
    # misfit: such texels count as unseen (the mirror side or inpainting fills them).
    dim = np.zeros_like(seen)
    if len(irradiance):  # any channel: a warm light can leave blue nearly dark where red is not
        dim[seen] = (irradiance < 0.25 * np.median(irradiance, axis=0)).any(-1)
    # Texels whose albedo is far from the face's typical one saw something else where the fit
    # misses the photo (hair, background past the silhouette), or a shadow the SH cannot explain.
    level = albedo[seen].mean(-1)
    typical = np.median(level) if len(level) else 1.0
    seen[seen] = (level > 0.05 * typical) & (level < 3.0 * typical)
    seen &= ~dim
    albedo[~seen] = 0
    # Where the photo holds what Lambertian shading cannot explain (a highlight, a white collar in
    # dim light) the quotient passes 1: scale it down to 1 keeping its hue, so that relit faces
    # stay skin-coloured instead of saturating.
    albedo /= np.maximum(albedo.max(-1, keepdims=True) / MAX_ALBEDO, 1.0)
    confidence = np.where(seen, weight, 0).astype(np.float32)

    # symmetry: an unseen texel takes its mirror texel's albedo if that one was seen
    mirror = texels["mirror_uv"]
    mu = np.clip((mirror[..., 0] * width).astype(int), 0, width - 1)
    mv = np.clip((mirror[..., 1] * s).astype(int), 0, s - 1)
    take = covered & ~seen & seen[mv, mu]
    albedo[take] = albedo[mv[take], mu[take]]
    confidence[take] = MIRRORED * confidence[mv[take], mu[take]]

    known = seen | take
    albedo = push_pull_fill(albedo, known)
    albedo[~covered] = albedo[covered].mean(0) if covered.any() else 0  # outside the layout: mip-safe colour
    return AlbedoMap(albedo=albedo.astype(np.float32), confidence=confidence, tiles=tiles)
