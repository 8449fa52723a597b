"""Headless rendering with moderngl over EGL: NVIDIA on GPU nodes, Mesa llvmpipe elsewhere.

A ``Renderer`` is built once per process (context, shaders, static vertex attributes,
framebuffers, noise texture); ``render`` only uploads each sample's camera-space vertices and
normals, draws and reads back. Two passes per sample:

1. ground truth, single-sampled at pixel centres (exact per pixel): depth, normal, segmentation label;
2. anti-aliased colour, either multisampled (``msaa`` samples, resolved; cheap on GPUs) or
   supersampled (drawn at ``supersample`` times the size and box-filtered; on llvmpipe 2x
   supersampling is faster than 4x MSAA, see bench/throughput.py). Alpha is the pixel's coverage.

With neither, the colour comes from the first pass.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from importlib import resources

import numpy as np

from ..camera import glsl_sh_constants, projection_matrix
from ..data.fields import APPEARANCE_NAMES
from ..errors import RenderError
from .geometry import MeshTopology, SceneBatch, mesh_topology
from .detail_bank import detail_bank
from .skin import glsl_skin_constants
from ..models.morphable_model import MorphableModel

# The vertex buffers, named once: (shader input, topology attribute or None, format) in buffer order.
# Per sample (uploaded for each draw): camera-space position and normal. Per model (uploaded once):
# the topology's attributes.
DYNAMIC_LAYOUT = (("in_position", None, "3f"), ("in_normal", None, "3f"))
STATIC_LAYOUT = (("in_uv", "uv", "2f"), ("in_label", "label", "1f"), ("in_material", "material", "1f"),
                 ("in_weights", "weights", "4f"))
# A sample's props (props.PropMesh), all per sample: (shader input, PropMesh attribute, format). The
# face's vertex array leaves in_tangent and in_colour unbound (GL reads them as 0).
PROP_LAYOUT = (("in_position", "positions", "3f"), ("in_normal", "normals", "3f"), ("in_tangent", "tangents", "3f"),
               ("in_colour", "colour", "3f"), ("in_uv", "uv", "2f"), ("in_label", "label", "1f"),
               ("in_material", "material", "1f"), ("in_weights", "weights", "4f"))


def _floats(layout) -> int:
    return sum(int(fmt[:-1]) for _, _, fmt in layout)


def _format(layout, inputs) -> str:
    """The moderngl buffer format reading ``inputs`` of ``layout`` and skipping the rest ("2f 24x")."""
    parts = []
    for name, _, fmt in layout:
        size = 4 * int(fmt[:-1])
        parts.append(fmt if name in inputs else f"{size}x")
    return " ".join(parts)


@dataclass(frozen=True)
class RenderOutput:
    """Per-pixel outputs of a batch, row 0 = the top of the image.

    colour:       (B, H, W, 4) uint8 sRGB; alpha = fraction of the pixel the face covers
    depth:        (B, H, W) float32 mm along the viewing axis (-z); 0 on background
    normal:       (B, H, W, 3) float32 unit camera-space normals; 0 on background
    segmentation: (B, H, W) uint8 labels (face_parts.LABELS); 0 on background
    depth_fine, normal_fine: the same of the surface displaced by the fine detail (synth/detail.py),
                  equal to depth and normal where a sample has none; None from a renderer without detail
    """

    colour: np.ndarray
    depth: np.ndarray
    normal: np.ndarray
    segmentation: np.ndarray
    depth_fine: np.ndarray | None = None
    normal_fine: np.ndarray | None = None


def create_context(device_index: int | None = None):
    """A headless EGL context: the only place datagen makes one.

    ``device_index`` (default: this process's binding, see ``gpus.egl_device``: ``$DATAGEN_EGL_DEVICE``,
    else a GPU no other worker on this node holds, else llvmpipe) picks the EGL device.
    """
    import moderngl

    from .gpus import egl_device

    load_llvm_users_first()
    if device_index is None:
        device_index = egl_device().device
    try:
        return moderngl.create_context(standalone=True, backend="egl", require=330, device_index=device_index)
    except Exception as e:  # moderngl raises plain Exceptions for every EGL failure
        raise RenderError(
            f"cannot create a headless OpenGL (EGL) context on device {device_index}: {e}. "
            "Install an EGL driver: on NVIDIA nodes the driver's libEGL_nvidia; elsewhere Mesa "
            "(Debian/Ubuntu: apt-get install libegl1 libgl1-mesa-dri)") from None


# Packages that bring their own LLVM and crash the process (SIGSEGV) when first loaded after Mesa's
# llvmpipe has loaded its own: triton (installed with CUDA builds of PyTorch; torch imports it
# lazily, e.g. when an optimiser is created). Loaded before, they coexist.
LLVM_USERS = ("triton",)


def load_llvm_users_first() -> None:
    """Import the installed ``LLVM_USERS`` before any GL context exists (a no-op once imported)."""
    import importlib
    import importlib.util

    for name in LLVM_USERS:
        if name in sys.modules:
            continue
        try:
            if importlib.util.find_spec(name) is not None:
                importlib.import_module(name)
        except Exception:  # a broken install of an optional package: it cannot be imported later either
            pass


def describe_context(ctx) -> str:
    with ctx:
        return f"{ctx.info['GL_RENDERER']} ({ctx.info['GL_VERSION']})"


def is_software(ctx) -> bool:
    with ctx:
        renderer = ctx.info["GL_RENDERER"].lower()
    return any(name in renderer for name in ("llvmpipe", "softpipe", "swrast", "lavapipe"))


def shader_source(name: str) -> str:
    """A shader of shaders/, with the constants it takes from Python (the SH basis, the skin's pigments,
    the material size)."""
    source = resources.files("datagen.synth").joinpath("shaders", name).read_text()
    return (source.replace("SH_CONSTANTS", glsl_sh_constants()).replace("SKIN_CONSTANTS", glsl_skin_constants())
            .replace("APPEARANCE_SIZE", str(len(APPEARANCE_NAMES))))


class Renderer:
    """Draws batches of one model's faces into fixed-size images."""

    def __init__(self, model: MorphableModel, width: int, height: int, msaa: int = 0, supersample: int = 2, ctx=None,
                 topology: MeshTopology | None = None, detail_size: int = 0):
        """``detail_size``: texels per UV tile of the fine detail's maps; 0 = no detail (no fine outputs)."""
        self.ctx = ctx or create_context()
        self.model, self.width, self.height = model, width, height
        self.msaa = msaa if msaa > 1 else 0
        self.supersample = 1 if self.msaa else max(1, supersample)
        self.topology = topology or mesh_topology(model)
        self.detail = detail_bank(self, detail_size) if detail_size else None  # makes its context current itself
        # Every GL call runs with this context current in this thread: a process may hold several
        # contexts (a preview beside a fitter, tests), and a call lands in whichever is current.
        with self.ctx:
            self._build_buffers()
            self.program = self.ctx.program(vertex_shader=shader_source("face.vert"),
                                            fragment_shader=shader_source("face.frag"))
            self.vao = self.ctx.vertex_array(
                self.program, self.vertex_buffers(*(name for name, _, _ in DYNAMIC_LAYOUT + STATIC_LAYOUT)),
                index_buffer=self.index)
            self.noise = self._noise_texture()
            for unit, name in enumerate(("u_noise", "u_albedo_map", "u_reference", "u_creases", "u_pores", "u_photo_detail")):
                self.program[name] = unit  # every sampler its own unit, used or not (GL forbids two types on one)
            self._albedo_texture = self._albedo_source = None
            self.program["u_detail"] = False
            self.program["u_detail_tiles"] = 1.0
            if self.detail is not None:
                self._upload_detail(self.detail)
            self._build_framebuffers()
        self.prop_vao, self._prop_vertices, self._prop_indices, self._prop_count = None, 0, 0, 0

    # --- set-up (once per process)

    def _build_buffers(self):
        """The index and per-model buffers from the topology, and room for a sample's vertices."""
        t = self.topology
        columns = [np.asarray(t.attributes[key], np.float32).reshape(len(t.render_to_model), -1)
                   for _, key, _ in STATIC_LAYOUT]
        self.static = self.ctx.buffer(np.ascontiguousarray(np.concatenate(columns, axis=1), np.float32).tobytes())
        self.index = self.ctx.buffer(t.render_triangles.tobytes())
        self.dynamic = self.ctx.buffer(reserve=len(t.render_to_model) * _floats(DYNAMIC_LAYOUT) * 4, dynamic=True)
        self._upload = np.empty((len(t.render_to_model), _floats(DYNAMIC_LAYOUT)), np.float32)

    def vertex_buffers(self, *inputs: str) -> list[tuple]:
        """moderngl ``vertex_array`` content that feeds the shader ``inputs`` from this renderer's
        buffers (a shader of another pass, as texture.UVRasteriser's, shares them this way)."""
        content = []
        for buffer, layout in ((self.dynamic, DYNAMIC_LAYOUT), (self.static, STATIC_LAYOUT)):
            names = [name for name, _, _ in layout if name in inputs]
            if names:
                content.append((buffer, _format(layout, names), *names))
        return content

    def _noise_texture(self):
        from scipy.ndimage import gaussian_filter

        rng = np.random.default_rng(20201)  # fixed: the pattern is part of the renderer, not of a sample
        size = 256
        channels = [gaussian_filter(rng.standard_normal((size, size)), sigma, mode="wrap") for sigma in (12, 0.8, 4)]
        streaks = gaussian_filter(rng.standard_normal((size, size)), (0.6, 3.0), mode="wrap")
        channels.append(streaks)
        noise = np.stack([(c - c.mean()) / (4 * c.std()) + 0.5 for c in channels], -1)
        texture = self.ctx.texture((size, size), 4, (np.clip(noise, 0, 1) * 255).astype(np.uint8).tobytes())
        texture.repeat_x = texture.repeat_y = True
        texture.build_mipmaps()
        return texture

    def _upload_detail(self, bank) -> None:
        """The detail bank's maps on the GPU, mipmapped (see face.frag's ``fine_surface``)."""
        ctx = self.ctx
        shape = bank.reference.shape[1::-1]
        self._reference_texture = ctx.texture(shape, 4, np.ascontiguousarray(bank.reference, np.float32).tobytes(), dtype="f4")
        layers = -(-bank.creases.shape[-1] // 4)
        creases = np.zeros(bank.creases.shape[:2] + (4 * layers,), np.float32)
        creases[..., :bank.creases.shape[-1]] = bank.creases
        creases = creases.reshape(creases.shape[:2] + (layers, 4)).transpose(2, 0, 1, 3)
        self._crease_texture = ctx.texture_array(shape + (layers,), 4, np.ascontiguousarray(creases, np.float16).tobytes(),
                                                 dtype="f2")
        n = bank.noise.shape[0]
        self._pore_texture = ctx.texture3d((n, n, n), 4, np.ascontiguousarray(bank.noise).tobytes())
        for texture in (self._reference_texture, self._crease_texture, self._pore_texture):
            texture.filter = (ctx.LINEAR_MIPMAP_LINEAR, ctx.LINEAR)
            texture.build_mipmaps()
        self._pore_texture.repeat_x = self._pore_texture.repeat_y = self._pore_texture.repeat_z = True
        for texture in (self._reference_texture, self._crease_texture):
            texture.repeat_x = texture.repeat_y = False
        self.program["u_detail_tiles"] = float(bank.tiles)
        self.program["u_detail_texels"] = (float(shape[0]), float(shape[1]))
        self.program["u_noise_voxels"] = float(n)
        self._photo_detail_texture = self._photo_detail_source = None

    def _use_detail(self, detail) -> None:
        """Sample uniforms of a scene's ``detail.SurfaceDetail`` (None: none)."""
        self.program["u_detail"] = detail is not None
        if detail is None:
            return
        weights = np.zeros(12, np.float32)
        weights[:len(detail.crease_mm)] = detail.crease_mm
        self.program["u_crease_weight"].write(weights.tobytes())
        self.program["u_pore_weight"].value = tuple(float(w) for w in detail.pore_mm)
        self.program["u_noise_frequency"] = float(detail.noise_frequency)
        self.program["u_noise_origin"].value = tuple(float(o) for o in detail.noise_origin)
        self._use_photo_detail(detail.photo_map)
        self.program["u_photo_detail_weight"] = float(detail.photo_mm)
        self._reference_texture.use(2)
        self._crease_texture.use(3)
        self._pore_texture.use(4)

    def _use_photo_detail(self, photo_map) -> None:
        self.program["u_use_photo_detail"] = photo_map is not None
        if photo_map is None:
            return
        if photo_map is not self._photo_detail_source:
            self._photo_detail_source = photo_map
            texels = np.ascontiguousarray(photo_map.resized(self.detail.size), np.float32)  # row 0 = v 0
            if self._photo_detail_texture is not None:
                self._photo_detail_texture.release()
            self._photo_detail_texture = self.ctx.texture(texels.shape[1::-1], 1, texels.tobytes(), dtype="f4")
            self._photo_detail_texture.filter = (self.ctx.LINEAR_MIPMAP_LINEAR, self.ctx.LINEAR)
            self._photo_detail_texture.build_mipmaps()
        self._photo_detail_texture.use(5)

    def _build_framebuffers(self):
        size = (self.width, self.height)
        ctx = self.ctx
        fine = [ctx.texture(size, 4, dtype="f4")] if self.detail is not None else []
        self.gt_fbo = ctx.framebuffer(
            color_attachments=[ctx.texture(size, 4), ctx.texture(size, 4, dtype="f4"), ctx.texture(size, 1)] + fine,
            depth_attachment=ctx.depth_renderbuffer(size))
        if self.msaa:
            self.msaa_fbo = ctx.framebuffer(color_attachments=[ctx.renderbuffer(size, 4, samples=self.msaa)],
                                            depth_attachment=ctx.depth_renderbuffer(size, samples=self.msaa))
            self.resolve_fbo = ctx.framebuffer(color_attachments=[ctx.texture(size, 4)])
        if self.supersample > 1:
            big = (self.width * self.supersample, self.height * self.supersample)
            self.super_fbo = ctx.framebuffer(color_attachments=[ctx.texture(big, 4)],
                                             depth_attachment=ctx.depth_renderbuffer(big))

    # --- per sample

    def render(self, scenes: SceneBatch) -> RenderOutput:
        """Draw every sample of the batch with its own light and material (an albedo map, else the
        procedural appearance)."""
        b, h, w = len(scenes), self.height, self.width
        fine = self.detail is not None
        out = RenderOutput(colour=np.empty((b, h, w, 4), np.uint8), depth=np.empty((b, h, w), np.float32),
                           normal=np.empty((b, h, w, 3), np.float32), segmentation=np.empty((b, h, w), np.uint8),
                           depth_fine=np.empty((b, h, w), np.float32) if fine else None,
                           normal_fine=np.empty((b, h, w, 3), np.float32) if fine else None)
        with self.ctx:  # current in this thread (see __init__)
            for i in range(b):
                self._use_albedo_map(scenes.albedo_maps[i])
                if fine:
                    self._use_detail(scenes.details[i] if scenes.details else None)
                self._draw(scenes, i, out)
        return out

    def _use_albedo_map(self, albedo) -> None:
        self.program["u_use_albedo_map"] = albedo is not None
        if albedo is None:
            return
        if albedo is self._albedo_source:  # the same map as the last sample: already on the GPU
            self._albedo_texture.use(1)
            return
        self._albedo_source = albedo
        texels = albedo.gl_texels  # (S, S, 3) float16 linear RGB, row 0 = v 0
        size = texels.shape[1::-1]
        if self._albedo_texture is None or self._albedo_texture.size != size:
            if self._albedo_texture is not None:
                self._albedo_texture.release()
            self._albedo_texture = self.ctx.texture(size, 3, dtype="f2")
            self._albedo_texture.filter = (self.ctx.LINEAR, self.ctx.LINEAR)
        self._albedo_texture.write(texels.tobytes())
        self.program["u_albedo_tiles"] = float(albedo.tiles)
        self._albedo_texture.use(1)

    def upload(self, scenes: SceneBatch, i: int) -> None:
        """Put sample i's camera-space vertices and normals in the vertex buffer (shared with texture.UVRasteriser)."""
        ids = self.topology.render_to_model  # DYNAMIC_LAYOUT: position, then normal
        self._upload[:, :3] = scenes.vertices[i][ids]
        self._upload[:, 3:] = scenes.normals[i][ids]
        self.dynamic.write(self._upload)

    def _upload_props(self, props) -> None:
        """Put a sample's PropMesh (or None: nothing besides the face) in the prop buffers, grown as needed."""
        self._prop_count = 0 if props is None else 3 * len(props.triangles)
        if not self._prop_count:
            return
        data = np.concatenate([np.asarray(getattr(props, key), np.float32).reshape(len(props), -1)
                               for _, key, _ in PROP_LAYOUT], 1)
        if len(props) > self._prop_vertices or self._prop_count > self._prop_indices:
            if self.prop_vao is not None:
                for thing in (self.prop_vao, self.prop_buffer, self.prop_index):
                    thing.release()
            self._prop_vertices = max(int(1.5 * len(props)), self._prop_vertices)
            self._prop_indices = max(int(1.5 * self._prop_count), self._prop_indices)
            self.prop_buffer = self.ctx.buffer(reserve=self._prop_vertices * data.shape[1] * 4, dynamic=True)
            self.prop_index = self.ctx.buffer(reserve=self._prop_indices * 4, dynamic=True)
            names = [name for name, _, _ in PROP_LAYOUT]
            self.prop_vao = self.ctx.vertex_array(
                self.program, [(self.prop_buffer, " ".join(fmt for _, _, fmt in PROP_LAYOUT), *names)],
                index_buffer=self.prop_index)
        self.prop_buffer.write(np.ascontiguousarray(data).tobytes())
        self.prop_index.write(np.ascontiguousarray(props.triangles, np.int32).tobytes())

    def _draw_scene(self) -> None:
        self.vao.render()
        if self._prop_count:
            self.prop_vao.render(vertices=self._prop_count)

    def _draw(self, scenes: SceneBatch, i: int, out: RenderOutput) -> None:
        ctx = self.ctx
        vertices = scenes.vertices[i]
        self.upload(scenes, i)
        props = scenes.props[i] if scenes.props else None
        self._upload_props(props)
        if props is not None:
            vertices = np.concatenate([vertices, props.positions])
        depth = -vertices[:, 2]
        near = max(float(depth.min()) * 0.5, 1.0)
        far = float(depth.max()) * 1.5 + 1.0
        proj = projection_matrix(scenes.intrinsics[i], self.width, self.height, near, far)
        self.program["u_projection"].write(np.ascontiguousarray(proj.T).tobytes())
        self.program["u_sh"].write(np.ascontiguousarray(scenes.light_sh[i], np.float32).tobytes())
        self.program["u_appearance"].write(np.ascontiguousarray(scenes.appearance[i], np.float32).tobytes())
        self.noise.use(0)
        ctx.enable(ctx.DEPTH_TEST | ctx.CULL_FACE)  # closed, outward-facing (CCW) surfaces: back faces are hidden

        antialiased = self.msaa or self.supersample > 1
        self.program["u_shade"] = not antialiased
        self.program["u_lod_bias"] = 0.0
        self.gt_fbo.use()
        self.gt_fbo.clear(0.0, 0.0, 0.0, 0.0, depth=1.0)
        self._draw_scene()
        geometry = self._read(self.gt_fbo, 1, 4, "f4")
        out.depth[i] = geometry[..., 0]
        out.normal[i] = geometry[..., 1:]
        out.segmentation[i] = self._read(self.gt_fbo, 2, 1, "f1")[..., 0]
        if out.depth_fine is not None:
            fine = self._read(self.gt_fbo, 3, 4, "f4")
            out.depth_fine[i] = fine[..., 0]
            out.normal_fine[i] = fine[..., 1:]
        if self.msaa:
            self.program["u_shade"] = True
            self.msaa_fbo.use()
            self.msaa_fbo.clear(0.0, 0.0, 0.0, 0.0, depth=1.0)
            self._draw_scene()
            ctx.copy_framebuffer(self.resolve_fbo, self.msaa_fbo)
            out.colour[i] = self._read(self.resolve_fbo, 0, 4, "f1")
        elif self.supersample > 1:
            self.program["u_shade"] = True
            self.program["u_lod_bias"] = float(np.log2(self.supersample))
            self.super_fbo.use()
            self.super_fbo.clear(0.0, 0.0, 0.0, 0.0, depth=1.0)
            self._draw_scene()
            s = self.supersample
            big = np.frombuffer(self.super_fbo.read(components=4), np.uint8)
            # Each output pixel averages the s x s block centred on it (same pixel centre as pass 1).
            big = big.reshape(self.height, s, self.width, s, 4)
            rows = sum(big[:, k].astype(np.uint16) for k in range(s))  # explicit adds: far faster than .sum(axes)
            block = sum(rows[:, :, k] for k in range(s))
            out.colour[i] = ((block + s * s // 2) // (s * s)).astype(np.uint8)[::-1]
        else:
            out.colour[i] = self._read(self.gt_fbo, 0, 4, "f1")

    def _read(self, fbo, attachment: int, components: int, dtype: str) -> np.ndarray:
        data = fbo.read(attachment=attachment, components=components, dtype=dtype)
        array = np.frombuffer(data, np.float32 if dtype == "f4" else np.uint8)
        return array.reshape(self.height, self.width, components)[::-1]

    def release(self) -> None:
        self.ctx.release()
