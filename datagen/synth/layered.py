"""Layered batches: one instanced draw call per pass for a whole batch, sample k into layer k of the
framebuffers (texture arrays), and one read per output for the whole batch.

Used on the device path (meshes made by device_geometry.py, whose output buffer the vertex shader reads
directly) when the context has GL 4.5 and ARB_shader_viewport_layer_array (NVIDIA since Maxwell, AMD,
llvmpipe), for jobs whose samples need no texture or mesh of their own (no fine detail, photo albedo
map, props or clip motion) and without MSAA (a multisampled layer is resolved one layer at a time, so
those draw a sample at a time as before: render.py).

A sample's pixels do not depend on its layer or its batch: every layer has the size, viewport and depth
format of the one-at-a-time framebuffers and is drawn from the same vertex values and uniforms, so a
layered batch gives the arrays one-at-a-time drawing gives, bit for bit (tests/test_layered.py).

moderngl makes neither depth texture arrays nor reads of some layers of an array into a buffer; those
few GL calls are made here directly (``_gl``).
"""

from __future__ import annotations

import ctypes
import functools
from types import SimpleNamespace

import numpy as np

from .device_background import DeviceBackgrounds
from .device_geometry import MAX_BATCH
from .readback import BoxFilter, HalfNormals

VERTICES_BINDING = 11  # the storage-buffer binding of the device geometry's output (face.vert); 0..10: the compute shaders'
EXTENSION = "GL_ARB_shader_viewport_layer_array"  # gl_Layer from the vertex shader
# The GL enumerants used below (glcorearb.h).
TEXTURE_2D_ARRAY, DEPTH_COMPONENT24, FRAMEBUFFER, DEPTH_ATTACHMENT = 0x8C1A, 0x81A6, 0x8D40, 0x8D00
PIXEL_PACK_BUFFER, PACK_ALIGNMENT, FRAMEBUFFER_COMPLETE = 0x88EB, 0x0D05, 0x8CD5
READ_FORMATS = {1: 0x1903, 3: 0x1907, 4: 0x1908}  # RED, RGB, RGBA
READ_INTEGER_FORMATS = {1: 0x8D94, 3: 0x8D98, 4: 0x8D99}  # RED_INTEGER, RGB_INTEGER, RGBA_INTEGER
READ_TYPES = {"f1": 0x1401, "u2": 0x1403, "f4": 0x1406}  # UNSIGNED_BYTE, UNSIGNED_SHORT, FLOAT


def supports_layers(ctx) -> bool:
    """GL 4.5 (glGetTextureSubImage), the extension, and EGL's entry points (else: a sample at a time)."""
    if ctx.version_code < 450 or EXTENSION not in ctx.extensions:
        return False
    try:
        _gl()
    except (OSError, RuntimeError):
        return False
    return True


@functools.lru_cache(maxsize=1)
def _gl() -> SimpleNamespace:
    """The GL entry points moderngl does not wrap, from EGL (the API datagen's contexts are made with)."""
    egl = ctypes.CDLL("libEGL.so.1")
    egl.eglGetProcAddress.restype = ctypes.c_void_p
    egl.eglGetProcAddress.argtypes = [ctypes.c_char_p]
    u, i, p = ctypes.c_uint, ctypes.c_int, ctypes.c_void_p
    signatures = {"glGenTextures": (i, ctypes.POINTER(u)), "glDeleteTextures": (i, ctypes.POINTER(u)),
                  "glBindTexture": (u, u), "glTexStorage3D": (u, i, u, i, i, i), "glBindFramebuffer": (u, u),
                  "glFramebufferTexture": (u, u, u, i), "glBindBuffer": (u, u), "glPixelStorei": (u, i),
                  "glGetTextureSubImage": (u, i, i, i, i, i, i, i, u, u, i, p)}
    signatures["glCheckFramebufferStatus"] = (u,)
    functions = {}
    for name, arguments in signatures.items():
        address = egl.eglGetProcAddress(name.encode())
        if not address:
            raise RuntimeError(f"EGL gives no {name}")
        result = u if name == "glCheckFramebufferStatus" else None
        functions[name[2:]] = ctypes.CFUNCTYPE(result, *arguments)(address)
    return SimpleNamespace(**functions)


class DepthArray:
    """A 24-bit depth texture array (moderngl's depth renderbuffers' format), attached to a layered framebuffer."""

    def __init__(self, fbo, size: tuple[int, int], layers: int):
        gl, name = _gl(), ctypes.c_uint()
        gl.GenTextures(1, ctypes.byref(name))
        self.glo = name.value
        gl.BindTexture(TEXTURE_2D_ARRAY, self.glo)
        gl.TexStorage3D(TEXTURE_2D_ARRAY, 1, DEPTH_COMPONENT24, size[0], size[1], layers)
        gl.BindTexture(TEXTURE_2D_ARRAY, 0)
        gl.BindFramebuffer(FRAMEBUFFER, fbo.glo)
        gl.FramebufferTexture(FRAMEBUFFER, DEPTH_ATTACHMENT, self.glo, 0)
        status = gl.CheckFramebufferStatus(FRAMEBUFFER)
        current = fbo.ctx.fbo  # the framebuffer moderngl has bound: bound again
        gl.BindFramebuffer(FRAMEBUFFER, current.glo if current is not None else 0)
        if status != FRAMEBUFFER_COMPLETE:
            self.release()
            raise RuntimeError(f"a layered framebuffer with a depth array is incomplete (status {status:#x})")
        fbo.depth_mask = True  # moderngl only knows of the colour attachments

    def release(self) -> None:
        _gl().DeleteTextures(1, ctypes.byref(ctypes.c_uint(self.glo)))


class LayeredFramebuffer:
    """Colour texture arrays of ``layers`` layers, one per (components, dtype), and a depth array."""

    def __init__(self, ctx, size: tuple[int, int], layers: int, colours: list[tuple[int, str]]):
        self.textures = [ctx.texture_array((*size, layers), components, dtype=dtype) for components, dtype in colours]
        self.fbo = ctx.framebuffer(color_attachments=self.textures)
        self.depth = DepthArray(self.fbo, size, layers)

    def release(self) -> None:
        self.depth.release()
        self.fbo.release()
        for texture in self.textures:
            texture.release()


def read_layers(texture, buffer, offset: int, count: int, output) -> None:
    """Queue layers 0..count-1 of ``texture`` into ``buffer`` from byte ``offset``, as ``output``
    (readback.Output: its components and type) is read (rows bottom to top, as glReadPixels gives them);
    the context must be current."""
    gl = _gl()
    width, height, _ = texture.size
    formats = READ_INTEGER_FORMATS if output.dtype == "u2" else READ_FORMATS
    size = width * height * count * output.components * np.dtype(output.numpy_dtype).itemsize
    gl.PixelStorei(PACK_ALIGNMENT, 1)
    gl.BindBuffer(PIXEL_PACK_BUFFER, buffer.glo)
    gl.GetTextureSubImage(texture.glo, 0, 0, 0, 0, width, height, count, formats[output.components],
                          READ_TYPES[output.dtype], size, ctypes.c_void_p(offset))
    gl.BindBuffer(PIXEL_PACK_BUFFER, 0)


class LayeredDraws:
    """A renderer's layered drawing: its face program compiled LAYERED (``program``, ``vao``: the static
    attributes only) and framebuffers of MAX_BATCH layers for the ground truth, the supersampled colour,
    its box filter, the float16 normals and the made backgrounds."""

    def __init__(self, ctx, program, vao, size: tuple[int, int], supersample: int):
        self.ctx, self.program, self.vao, self.size, self.supersample = ctx, program, vao, size, supersample
        # As the renderer's: colour (unshaded passes), (depth, normal) float32, label.
        self.truth = LayeredFramebuffer(ctx, size, MAX_BATCH, [(4, "f1"), (4, "f4"), (1, "f1")])
        self.colour = self.truth.textures[0]
        if supersample > 1:
            self.big = LayeredFramebuffer(ctx, (size[0] * supersample, size[1] * supersample), MAX_BATCH, [(4, "f1")])
            self.box_filter = BoxFilter(ctx, supersample, size, layers=MAX_BATCH)
            self.colour = self.box_filter.texture
        self.half_normals = self.backgrounds = None

    def draw(self, renderer, scenes, start: int, count: int, half_normals: bool, backgrounds: list | None = None) -> None:
        """Samples start..start+count-1 of ``scenes`` (at most MAX_BATCH), whose vertices are the device
        geometry's output, into layers 0..count-1; ``backgrounds``: theirs to paint (``DeviceBackgrounds.paint_layers``)."""
        ctx, program = self.ctx, self.program
        samples = range(start, start + count)
        program["u_projection"].write(_padded([renderer.projection(scenes, i).T for i in samples]))
        program["u_sh"].write(_padded([scenes.light_sh[i] for i in samples]))
        program["u_appearance"].write(_padded([scenes.appearance[i] for i in samples]))
        program["u_render_vertices"] = len(renderer.topology.render_to_model)
        renderer.device_geometry.output.bind_to_storage_buffer(VERTICES_BINDING)
        renderer.noise.use(0)
        ctx.enable(ctx.DEPTH_TEST | ctx.CULL_FACE)
        program["u_shade"] = self.supersample == 1
        program["u_lod_bias"] = 0.0
        self._pass(self.truth, count)
        if self.supersample > 1:
            program["u_shade"] = True
            program["u_lod_bias"] = float(np.log2(self.supersample))
            self._pass(self.big, count)
            self.box_filter.run(self.big.textures[0], count)
        if half_normals:
            if self.half_normals is None:
                self.half_normals = HalfNormals(ctx, self.size, layers=MAX_BATCH)
            self.half_normals.run(self.truth.textures[1], count)
        if backgrounds:
            if self.backgrounds is None:
                self.backgrounds = DeviceBackgrounds(ctx, *self.size, layers=MAX_BATCH)
            self.backgrounds.paint_layers(backgrounds)

    def _pass(self, target: LayeredFramebuffer, count: int) -> None:
        target.fbo.use()
        target.fbo.clear(0.0, 0.0, 0.0, 0.0, depth=1.0)
        self.vao.render(instances=count)

    def sources(self) -> dict:
        """{read-back output name: the texture array it is read from}."""
        sources = {"geometry": self.truth.textures[1], "depth": self.truth.textures[1],
                   "segmentation": self.truth.textures[2], "colour": self.colour}
        if self.half_normals is not None:
            sources["normal16"] = self.half_normals.texture
        if self.backgrounds is not None:
            sources["background"] = self.backgrounds.texture
        return sources

    def read(self, pending, start: int, count: int, names: tuple) -> None:
        """Queue outputs ``names`` of the last ``draw`` (``count`` samples) into ``pending``'s slots from sample ``start``."""
        sources = self.sources()
        for name in names:
            buffer, output, offset = pending.slot(name, start)
            read_layers(sources[name], buffer, offset, count, output)


def _padded(arrays: list) -> bytes:
    """Per-sample uniform values for MAX_BATCH samples, float32: the given ones, then zeros."""
    values = np.zeros((MAX_BATCH, *np.shape(arrays[0])), np.float32)
    values[:len(arrays)] = arrays
    return values.tobytes()
