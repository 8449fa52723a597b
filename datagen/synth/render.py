"""Headless rendering with moderngl over EGL: NVIDIA on GPU nodes, Mesa llvmpipe elsewhere.

A ``Renderer`` is built once per process (context, shaders, static vertex attributes,
framebuffers, noise texture); ``render`` only uploads each sample's camera-space vertices and
normals, draws and reads back; on the device path, a batch's meshes never leave the device and its
samples are drawn together, one instanced call per pass (layered.py). Two passes per sample:

1. ground truth, single-sampled at pixel centres (exact per pixel): depth, normal, segmentation label;
   With ``flow``, the same pass also gives, per pixel, where the surface point seen there is in the
   previous and the next frame of its clip (``SceneMotion``): its pixel position, depth and whether
   it faces the camera there. synth/flow.py turns them into optical flow and occlusion.
2. anti-aliased colour, either multisampled (``msaa`` samples, resolved; cheap on GPUs) or
   supersampled (drawn at ``supersample`` times the size and box-filtered; on llvmpipe 2x
   supersampling is faster than 4x MSAA, see bench/throughput.py). Alpha is the pixel's coverage.

With neither, the colour comes from the first pass.
"""

from __future__ import annotations

from importlib import resources

import numpy as np

from ..camera import glsl_sh_constants, projection_matrix
from ..data.fields import APPEARANCE_NAMES
from .geometry import MeshTopology, SceneBatch, mesh_topology
from .detail_bank import detail_bank
from .detail_textures import DetailTextures
from .device_background import DeviceBackgrounds
from .device_geometry import MAX_BATCH, DeviceGeometry
from .gpus import create_context
from .layered import EXTENSION as LAYER_EXTENSION, VERTICES_BINDING, LayeredDraws, supports_layers
from .readback import BoxFilter, HalfNormals, Output, Readback
from .render_output import PendingRender, RenderOutput, SceneMotion  # noqa: F401 (importable from here)
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


def shader_source(name: str, outputs: tuple = (), layered: bool = False) -> str:
    """A shader of shaders/, with the constants it takes from Python (the SH basis, the skin's pigments,
    the material size); ``outputs``: the optional outputs of the ground-truth pass this renderer attaches
    ("fine", "next", "prev"), in attachment order after the first three (the others go to unattached
    locations, where GL drops them). ``layered``: compiled for layered batches (layered.py)."""
    source = resources.files("datagen.synth").joinpath("shaders", name).read_text()
    source = source.replace("SAMPLES", str(MAX_BATCH if layered else 1))
    if layered and name.endswith(".vert"):
        source = source.replace("#version 330", f"#version 430\n#extension {LAYER_EXTENSION} : require\n#define LAYERED", 1)
        source = source.replace("VERTICES_BINDING", str(VERTICES_BINDING))
    spare = iter(range(7, 2, -1))
    for output in OPTIONAL_OUTPUTS:
        location = 3 + outputs.index(output) if output in outputs else next(spare)
        source = source.replace(f"{output.upper()}_LOCATION", str(location))
    return (source.replace("SH_CONSTANTS", glsl_sh_constants()).replace("SKIN_CONSTANTS", glsl_skin_constants())
            .replace("APPEARANCE_SIZE", str(len(APPEARANCE_NAMES))))


OPTIONAL_OUTPUTS = ("fine", "next", "prev")  # ground-truth attachments 3.. (face.frag's *_LOCATION)
MOTION_FORMAT = ("3f 3f", "in_prev", "in_next")  # SceneMotion's per-vertex buffer (face and props alike)


class Renderer:
    """Draws batches of one model's faces into fixed-size images."""

    def __init__(self, model: MorphableModel, width: int, height: int, msaa: int = 0, supersample: int = 2, ctx=None,
                 topology: MeshTopology | None = None, detail_size: int = 0, flow: bool = False,
                 geometry_on_device: bool = False):
        """``detail_size``: texels per UV tile of the fine detail's maps; 0 = no detail (no fine outputs).
        ``flow``: render takes a ``SceneMotion`` and gives ``seen_next`` / ``seen_prev`` (video clips).
        ``geometry_on_device``: render also takes scenes whose mesh is left to the device (``SceneBatch.shape``):
        compute shaders blend and pose it and make its normals (device_geometry.py; GL 4.3)."""
        self.ctx = ctx or create_context()
        self.model, self.width, self.height = model, width, height
        self.msaa = msaa if msaa > 1 else 0
        self.supersample = 1 if self.msaa else max(1, supersample)
        self.topology = topology or mesh_topology(model)
        self.detail = detail_bank(self, detail_size) if detail_size else None  # makes its context current itself
        self.flow = flow
        self.outputs = (("fine",) if self.detail else ()) + (("next", "prev") if flow else ())
        # Every GL call runs with this context current in this thread: a process may hold several
        # contexts (a preview beside a fitter, tests), and a call lands in whichever is current.
        with self.ctx:
            self._build_buffers()
            self.program = self._face_program()
            motion = [(self.motion, *MOTION_FORMAT)] if flow else []
            self.vao = self.ctx.vertex_array(
                self.program, self.vertex_buffers(*(name for name, _, _ in DYNAMIC_LAYOUT + STATIC_LAYOUT)) + motion,
                index_buffer=self.index)
            self.noise = self._noise_texture()
            self._albedo_texture = self._albedo_source = None
            self.detail_textures = DetailTextures(self.ctx, self.program, self.detail) if self.detail else None
            self._build_framebuffers()
            self.device_geometry = self.device_backgrounds = self.half_normals = self.layered = None
            self._layers_off = False
        if geometry_on_device:
            self.use_device_geometry()
        self.prop_vao, self._prop_vertices, self._prop_indices, self._prop_count = None, 0, 0, 0

    # --- set-up (once per process)

    def _face_program(self, layered: bool = False):
        program = self.ctx.program(vertex_shader=shader_source("face.vert", layered=layered),
                                   fragment_shader=shader_source("face.frag", self.outputs, layered=layered))
        program["u_flow"] = False
        for unit, name in enumerate(("u_noise", "u_albedo_map", "u_reference", "u_creases", "u_pores", "u_photo_detail")):
            if name in program:
                program[name] = unit  # every sampler its own unit, used or not (GL forbids two types on one)
        program["u_detail"] = False
        program["u_detail_tiles"] = 1.0
        return program

    def use_device_geometry(self) -> None:
        """Take scenes whose mesh is left to the device from now on (device_geometry.py), drawn in layered
        batches where the context and this renderer's outputs allow (``use_layered_draws``)."""
        if self.device_geometry is None:
            self.device_geometry = DeviceGeometry(self.ctx, self.model, self.topology)
            self.use_layered_draws()

    def use_layered_draws(self, enabled: bool = True) -> None:
        """Draw batches of device-geometry scenes with one instanced call per pass (layered.py), where the
        context has what that needs and this renderer has no MSAA, fine detail or flow; ``enabled=False``:
        a sample at a time (the same pixels; tests compare the two), the layered targets kept."""
        self._layers_off = not enabled
        if not enabled or self.layered is not None or self.msaa or self.detail or self.flow or not supports_layers(self.ctx):
            return
        with self.ctx:
            program = self._face_program(layered=True)
            vao = self.ctx.vertex_array(program, self.vertex_buffers(*(name for name, _, _ in STATIC_LAYOUT)),
                                        index_buffer=self.index)
            try:
                self.layered = LayeredDraws(self.ctx, program, vao, (self.width, self.height), self.supersample)
            except RuntimeError:  # this driver cannot make the layered targets: a sample at a time
                vao.release()
                program.release()

    @property
    def draws_layered(self) -> bool:
        """Whether batches of device-geometry scenes are drawn in layers (``use_layered_draws``)."""
        return self.layered is not None and not self._layers_off

    def use_device_backgrounds(self) -> None:
        """Paint made backgrounds on the device from now on (``submit``'s ``backgrounds``; device_background.py)."""
        if self.device_backgrounds is None:
            with self.ctx:
                self.device_backgrounds = DeviceBackgrounds(self.ctx, self.width, self.height)
                self._read_also([self.device_backgrounds.output])

    def use_half_normals(self) -> None:
        """Give ``RenderOutput.normal`` as float16 from now on, made on the device (readback.HalfNormals)."""
        if self.half_normals is None:
            with self.ctx:
                self.half_normals = HalfNormals(self.ctx, (self.width, self.height))
                outputs = [Output("depth", self.gt_fbo, 1, 1, "f4"), Output("normal16", self.half_normals.fbo, 0, 3, "u2")]
                self._read_also(outputs, instead_of="geometry")

    def _read_also(self, outputs: list[Output], instead_of: str = "") -> None:
        kept = [o for o in self.readback.outputs if o.name != instead_of]
        self.readback.release()
        self.readback = Readback(self.ctx, kept + outputs, self.width, self.height)

    def _build_buffers(self):
        """The index and per-model buffers from the topology, and room for a sample's vertices."""
        t = self.topology
        columns = [np.asarray(t.attributes[key], np.float32).reshape(len(t.render_to_model), -1)
                   for _, key, _ in STATIC_LAYOUT]
        self.static = self.ctx.buffer(np.ascontiguousarray(np.concatenate(columns, axis=1), np.float32).tobytes())
        self.index = self.ctx.buffer(t.render_triangles.tobytes())
        self.dynamic = self.ctx.buffer(reserve=len(t.render_to_model) * _floats(DYNAMIC_LAYOUT) * 4, dynamic=True)
        self._upload = np.empty((len(t.render_to_model), _floats(DYNAMIC_LAYOUT)), np.float32)
        if self.flow:
            self.motion = self.ctx.buffer(reserve=len(t.render_to_model) * 6 * 4, dynamic=True)
            self._motion_upload = np.empty((len(t.render_to_model), 6), np.float32)

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

    def _build_framebuffers(self):
        size = (self.width, self.height)
        ctx = self.ctx
        optional = [ctx.texture(size, 4, dtype="f4") for _ in self.outputs]
        self.gt_fbo = ctx.framebuffer(
            color_attachments=[ctx.texture(size, 4), ctx.texture(size, 4, dtype="f4"), ctx.texture(size, 1)] + optional,
            depth_attachment=ctx.depth_renderbuffer(size))
        outputs = [Output("geometry", self.gt_fbo, 1, 4, "f4"), Output("segmentation", self.gt_fbo, 2, 1, "f1")]
        outputs += [Output(name, self.gt_fbo, 3 + k, 4, "f4") for k, name in enumerate(self.outputs)]
        colour = self.gt_fbo
        if self.msaa:
            self.msaa_fbo = ctx.framebuffer(color_attachments=[ctx.renderbuffer(size, 4, samples=self.msaa)],
                                            depth_attachment=ctx.depth_renderbuffer(size, samples=self.msaa))
            colour = self.resolve_fbo = ctx.framebuffer(color_attachments=[ctx.texture(size, 4)])
        elif self.supersample > 1:
            big = (self.width * self.supersample, self.height * self.supersample)
            self.super_fbo = ctx.framebuffer(color_attachments=[ctx.texture(big, 4)],
                                             depth_attachment=ctx.depth_renderbuffer(big))
            self.box_filter = BoxFilter(ctx, self.supersample, size)
            colour = self.box_filter.fbo
        self.readback = Readback(ctx, outputs + [Output("colour", colour, 0, 4, "f1")], self.width, self.height)

    # --- per sample

    def render(self, scenes: SceneBatch, motion: SceneMotion | None = None) -> RenderOutput:
        """Draw every sample of the batch with its own light and material (an albedo map, else the
        procedural appearance); with ``motion`` (a ``flow`` renderer) also where each pixel's point goes."""
        return self.submit(scenes, motion).result()

    def submit(self, scenes: SceneBatch, motion: SceneMotion | None = None, backgrounds: list | None = None) -> "PendingRender":
        """``render`` in two halves: draw the batch and queue its read-back now, wait for the pixels in
        ``result()``; a second batch may be submitted before the first's result is taken (readback.py).
        ``backgrounds``: per sample a made background to paint on the device (``device_background.device_pattern``)
        or None (after ``use_device_backgrounds``)."""
        if motion is not None and not self.flow:
            raise ValueError("this Renderer was made without flow=True: it cannot render a SceneMotion")
        if scenes.shape is not None and self.device_geometry is None:
            raise ValueError("these scenes leave their mesh to the device: make the Renderer with geometry_on_device=True")
        names = (("depth", "normal16") if self.half_normals else ("geometry",)) + ("segmentation", "colour") + \
            (("fine",) if self.detail else ()) + \
            (("next", "prev") if motion is not None else ())
        if backgrounds is not None and (self.device_backgrounds is None or len(backgrounds) != len(scenes)):
            raise ValueError("backgrounds: one per scene, after use_device_backgrounds()")
        with self.ctx:  # current in this thread (see __init__)
            pending = self.readback.begin(len(scenes))
            if self._draws_layered(scenes, motion):
                for start in range(0, len(scenes), MAX_BATCH):
                    count = min(MAX_BATCH, len(scenes) - start)
                    self.device_geometry.run(scenes.shape[start:start + count])
                    painted = backgrounds[start:start + count] if backgrounds is not None else []
                    painted = painted if any(b is not None for b in painted) else None
                    self.layered.draw(self, scenes, start, count, self.half_normals is not None, painted)
                    self.layered.read(pending, start, count, names + (("background",) if painted else ()))
            else:
                for i in range(len(scenes)):
                    self._draw_one(scenes, i, motion, pending, names)
                for i, background in enumerate(backgrounds or ()):
                    if background is not None:
                        self.device_backgrounds.paint(*background)
                        pending.queue(i, ("background",))
        return PendingRender(pending, names + (("background",) if backgrounds is not None else ()))

    def _draws_layered(self, scenes: SceneBatch, motion: SceneMotion | None) -> bool:
        return (self.draws_layered and scenes.shape is not None and motion is None
                and not any(p is not None for p in scenes.props or ()) and all(a is None for a in scenes.albedo_maps))

    def _draw_one(self, scenes: SceneBatch, i: int, motion: SceneMotion | None, pending, names: tuple) -> None:
        if scenes.shape is not None and i % MAX_BATCH == 0:
            self.device_geometry.run(scenes.shape[i:i + MAX_BATCH])
        self._use_albedo_map(scenes.albedo_maps[i])
        if self.detail:
            self.detail_textures.use(scenes.details[i] if scenes.details else None)
        self._use_motion(motion, i)
        self._draw(scenes, i, motion)
        if self.half_normals:
            self.half_normals.run(self.gt_fbo.color_attachments[1])
        pending.queue(i, names)

    def _use_motion(self, motion: SceneMotion | None, i: int) -> None:
        """Frame i's vertices in its neighbour frames (face: the motion buffer; props: ``_upload_props``)."""
        if not self.flow:
            return
        self.program["u_flow"] = motion is not None
        if motion is None:
            return
        ids = self.topology.render_to_model
        self._motion_upload[:, :3] = motion.prev_vertices[i][ids]
        self._motion_upload[:, 3:] = motion.next_vertices[i][ids]
        self.motion.write(self._motion_upload)
        self.program["u_prev_intrinsics"].value = tuple(float(x) for x in motion.prev_intrinsics[i])
        self.program["u_next_intrinsics"].value = tuple(float(x) for x in motion.next_intrinsics[i])

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
        """Put sample i's camera-space vertices and normals in the vertex buffer (shared with texture.UVRasteriser);
        a scene whose mesh is the device's: copied there from the compute shaders' output (on the device)."""
        if scenes.vertices is None:
            geometry = self.device_geometry
            size = geometry.sample_bytes
            self.ctx.copy_buffer(self.dynamic, geometry.output, size, read_offset=(i % MAX_BATCH) * size)
            return
        ids = self.topology.render_to_model  # DYNAMIC_LAYOUT: position, then normal
        self._upload[:, :3] = scenes.vertices[i][ids]
        self._upload[:, 3:] = scenes.normals[i][ids]
        self.dynamic.write(self._upload)

    def _upload_props(self, props, prev=None, following=None) -> None:
        """Put a sample's PropMesh (or None: nothing besides the face) in the prop buffers, grown as needed;
        ``prev`` and ``following``: its vertices in the neighbour frames (a ``flow`` renderer's)."""
        self._prop_count = 0 if props is None else 3 * len(props.triangles)
        if not self._prop_count:
            return
        data = np.concatenate([np.asarray(getattr(props, key), np.float32).reshape(len(props), -1)
                               for _, key, _ in PROP_LAYOUT], 1)
        if len(props) > self._prop_vertices or self._prop_count > self._prop_indices:
            if self.prop_vao is not None:
                for thing in (self.prop_vao, self.prop_buffer, self.prop_index) + ((self.prop_motion,) if self.flow else ()):
                    thing.release()
            self._prop_vertices = max(int(1.5 * len(props)), self._prop_vertices)
            self._prop_indices = max(int(1.5 * self._prop_count), self._prop_indices)
            self.prop_buffer = self.ctx.buffer(reserve=self._prop_vertices * data.shape[1] * 4, dynamic=True)
            self.prop_index = self.ctx.buffer(reserve=self._prop_indices * 4, dynamic=True)
            names = [name for name, _, _ in PROP_LAYOUT]
            content = [(self.prop_buffer, " ".join(fmt for _, _, fmt in PROP_LAYOUT), *names)]
            if self.flow:
                self.prop_motion = self.ctx.buffer(reserve=self._prop_vertices * 6 * 4, dynamic=True)
                content.append((self.prop_motion, *MOTION_FORMAT))
            self.prop_vao = self.ctx.vertex_array(self.program, content, index_buffer=self.prop_index)
        self.prop_buffer.write(np.ascontiguousarray(data).tobytes())
        if self.flow:
            own = np.asarray(props.positions, np.float32)
            self.prop_motion.write(np.ascontiguousarray(np.concatenate(
                [own if prev is None else prev, own if following is None else following], 1), np.float32).tobytes())
        self.prop_index.write(np.ascontiguousarray(props.triangles, np.int32).tobytes())

    def _draw_scene(self) -> None:
        self.vao.render()
        if self._prop_count:
            self.prop_vao.render(vertices=self._prop_count)

    def projection(self, scenes: SceneBatch, i: int) -> np.ndarray:
        """Sample i's projection matrix (camera space to clip space), its depth range bracketing the mesh."""
        nearest, farthest = (float(d) for d in scenes.depth_range[i])
        near, far = max(nearest * 0.5, 1.0), farthest * 1.5 + 1.0
        return projection_matrix(scenes.intrinsics[i], self.width, self.height, near, far)

    def _draw(self, scenes: SceneBatch, i: int, motion: SceneMotion | None = None) -> None:
        ctx = self.ctx
        self.upload(scenes, i)
        props = scenes.props[i] if scenes.props else None
        self._upload_props(props, *((motion.prev_props[i], motion.next_props[i]) if motion is not None else ()))
        self.program["u_projection"].write(np.ascontiguousarray(self.projection(scenes, i).T, np.float32).tobytes())
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
        if self.msaa:
            self.program["u_shade"] = True
            self.msaa_fbo.use()
            self.msaa_fbo.clear(0.0, 0.0, 0.0, 0.0, depth=1.0)
            self._draw_scene()
            ctx.copy_framebuffer(self.resolve_fbo, self.msaa_fbo)
        elif self.supersample > 1:
            self.program["u_shade"] = True
            self.program["u_lod_bias"] = float(np.log2(self.supersample))
            self.super_fbo.use()
            self.super_fbo.clear(0.0, 0.0, 0.0, 0.0, depth=1.0)
            self._draw_scene()
            self.box_filter.run(self.super_fbo.color_attachments[0])  # each pixel: the s x s block centred on it

    def release(self) -> None:
        self.ctx.release()
