"""Getting a batch's pixels off the device: the supersampled image box-filtered there, and every output
read into pixel buffer objects, mapped once per batch.

Drawn a sample at a time, each sample goes into the same framebuffers (so a sample's pixels do not
depend on its batch); after it, each of its outputs is queued with ``glReadPixels`` into its slot of a
pixel buffer object. Drawn in layered batches (layered.py), each output of up to 16 samples is queued
with one read of their layers into consecutive slots. On a GPU that copy runs on the device while the host goes on (the next sample's draw waits only for
the framebuffer, not for the host), and the host waits once, when it maps the batch's buffers
(``Pending.result``). Each batch in flight holds its own set of buffers until its pixels are taken,
so the device can draw batch b + 1 while the host annotates batch b (run/generator.py). On llvmpipe
every read is a copy on the host anyway.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Box filter of a supersampled image (s x s texels per pixel), exactly as integer arithmetic on the
# 8-bit values: (sum + s*s/2) / (s*s), rounded down; the same pixel centres as the ground truth.
BOX_FILTER = """
#version 330
uniform IMAGE u_image;
uniform int u_factor;
out vec4 f_colour;
void main() {
    ivec2 corner = ivec2(gl_FragCoord.xy) * u_factor;
    vec4 sum = vec4(0.0);
    for (int dy = 0; dy < u_factor; ++dy)
        for (int dx = 0; dx < u_factor; ++dx)
            sum += round(FETCH(u_image, corner + ivec2(dx, dy)) * 255.0);
    float area = float(u_factor * u_factor);
    f_colour = floor((sum + floor(area / 2.0)) / area) / 255.0;
}
"""
FULL_SCREEN = """
#version 330
LAYERED
void main() {
    vec2 corner = vec2(float((gl_VertexID & 1) << 2), float((gl_VertexID & 2) << 1)) - 1.0;
    gl_Position = vec4(corner, 0.0, 1.0);
    LAYER
}
"""
# A full-screen pass reads and writes either one image or, instanced, every layer of texture arrays:
# instance k draws layer k (layered.py).
FULL_SCREEN_VARIANTS = {
    False: {"LAYERED": "", "LAYER": ""},
    True: {"#version 330": "#version 430\n#extension GL_ARB_shader_viewport_layer_array : require",
           "LAYERED": "flat out int v_layer;", "LAYER": "gl_Layer = gl_InstanceID; v_layer = gl_InstanceID;"}}
FETCH_VARIANTS = {
    False: "#define IMAGE sampler2D\n#define FETCH(image, p) texelFetch(image, p, 0)\n#define SAMPLE 0\n",
    True: "#define IMAGE sampler2DArray\nflat in int v_layer;\n#define FETCH(image, p) texelFetch(image, ivec3(p, v_layer), 0)\n"
          "#define SAMPLE v_layer\n"}


def full_screen_program(ctx, fragment_shader: str, layered: bool):
    vertex_shader = FULL_SCREEN
    for key, value in FULL_SCREEN_VARIANTS[layered].items():
        vertex_shader = vertex_shader.replace(key, value)
    fragment_shader = fragment_shader.replace("#version 330\n", "#version 330\n" + FETCH_VARIANTS[layered], 1)
    return ctx.program(vertex_shader=vertex_shader, fragment_shader=fragment_shader)


class FullScreenPass:
    """Draws a fragment shader over every pixel of a target of ``size`` (``layers`` > 0: of a texture array
    of that many layers, ``run`` drawing the first ``count``), reading one input at texture unit 0."""

    def __init__(self, ctx, fragment_shader: str, size: tuple[int, int], components: int, dtype: str, layers: int = 0):
        self.ctx = ctx
        self.program = full_screen_program(ctx, fragment_shader, bool(layers))
        self.vao = ctx.vertex_array(self.program, [])
        self.texture = (ctx.texture_array((*size, layers), components, dtype=dtype) if layers
                        else ctx.texture(size, components, dtype=dtype))
        self.fbo = ctx.framebuffer(color_attachments=[self.texture])

    def run(self, image, count: int = 1) -> None:
        self.fbo.use()
        self.ctx.disable(self.ctx.DEPTH_TEST | self.ctx.CULL_FACE)
        image.use(0)
        self.vao.render(mode=self.ctx.TRIANGLES, vertices=3, instances=count)


class BoxFilter(FullScreenPass):
    """Draws a supersampled colour texture, box-filtered, into a framebuffer of the output size."""

    def __init__(self, ctx, factor: int, size: tuple[int, int], layers: int = 0):
        super().__init__(ctx, BOX_FILTER, size, 4, "f1", layers)
        self.factor = factor
        self.program["u_image"] = 0
        self.program["u_factor"] = factor


# float32 -> float16 bits, rounded to the nearest, ties to even (IEEE 754, as numpy's astype), on
# integers: GL leaves the rounding of its own conversions to the implementation. Normals lie in
# [-1, 1]; the other branches (subnormals, overflow, NaN) follow numpy's npy_floatbits_to_halfbits.
HALF_BITS = """
uint half_bits(float value) {
    uint f = floatBitsToUint(value);
    uint sign = (f >> 16) & 0x8000u;
    uint exponent = f & 0x7f800000u;
    uint significand = f & 0x007fffffu;
    if (exponent >= 0x47800000u) {  // too large for a half: infinity; NaN stays NaN
        uint nan = (exponent == 0x7f800000u && significand != 0u) ? max(significand >> 13, 1u) : 0u;
        return sign + 0x7c00u + nan;
    }
    if (exponent <= 0x38000000u) {  // a subnormal half or zero
        if (exponent < 0x33000000u) return sign;
        uint shifted = (0x00800000u + significand) >> (113u - (exponent >> 23));
        if ((shifted & 0x3fffu) != 0x1000u || (f & 0x7ffu) != 0u) shifted += 0x1000u;
        return sign + (shifted >> 13);
    }
    if ((significand & 0x3fffu) != 0x1000u) significand += 0x1000u;
    return sign + ((exponent - 0x38000000u) >> 13) + (significand >> 13);  // a carry moves into the exponent
}
"""
HALF_NORMALS = """
#version 330
uniform IMAGE u_geometry;  // (depth, normal x, y, z), float32
out uvec4 f_half;
HALF_BITS
void main() {
    vec3 n = FETCH(u_geometry, ivec2(gl_FragCoord.xy)).yzw;
    f_half = uvec4(half_bits(n.x), half_bits(n.y), half_bits(n.z), 0u);
}
""".replace("HALF_BITS", HALF_BITS)


class HalfNormals(FullScreenPass):
    """Makes the ground-truth normals float16, the shards' type, on the device: half the bytes to read
    back, and no conversion on the host (numpy's takes about 1 ms a sample at 224x224)."""

    def __init__(self, ctx, size: tuple[int, int], layers: int = 0):
        super().__init__(ctx, HALF_NORMALS, size, 4, "u2", layers)
        self.program["u_geometry"] = 0


@dataclass(frozen=True)
class Output:
    """One per-pixel output: where it is drawn and how it is read (``components`` of ``dtype``)."""

    name: str
    fbo: object
    attachment: int
    components: int
    dtype: str  # "f1" (uint8), "u2" (uint16: float16 bits) or "f4" (float32)

    @property
    def numpy_dtype(self):
        return {"f1": np.uint8, "u2": np.uint16, "f4": np.float32}[self.dtype]


class Readback:
    """Pixel buffer objects for batches of ``outputs``: a set per batch in flight, reused once read.

    Usually two sets alternate (``FaceGenerator.batches`` keeps one batch waiting while the next is
    drawn); a render made meanwhile (a photo-realistic composite draws with the same renderer) takes a
    third rather than one a waiting batch still holds."""

    def __init__(self, ctx, outputs: list[Output], width: int, height: int):
        self.ctx, self.outputs, self.width, self.height = ctx, outputs, width, height
        self._free: list[tuple[int, dict]] = []  # (capacity in samples, {output name: buffer}), none waiting on them

    def sample_bytes(self, output: Output) -> int:
        return self.width * self.height * output.components * np.dtype(output.numpy_dtype).itemsize

    def begin(self, batch: int) -> "Pending":
        """Buffers for the next batch (of ``batch`` samples): a free set large enough, else a new one."""
        fitting = [k for k, (capacity, _) in enumerate(self._free) if capacity >= batch]
        if fitting:
            capacity, buffers = self._free.pop(fitting[0])
        else:
            if len(self._free) >= 2:  # too small for this batch and not needed: make room
                for buffer in self._free.pop(0)[1].values():
                    buffer.release()
            capacity = batch
            buffers = {o.name: self.ctx.buffer(reserve=self.sample_bytes(o) * batch) for o in self.outputs}
        return Pending(self, (capacity, buffers), batch)

    def release(self) -> None:
        """Free the buffers no batch is waiting on (a batch still waiting keeps its own until taken)."""
        for _, buffers in self._free:
            for buffer in buffers.values():
                buffer.release()
        self._free.clear()

    def _give_back(self, entry: tuple[int, dict]) -> None:
        self._free.append(entry)


class Pending:
    """A batch being read back: ``queue(i)`` after drawing sample i, ``result()`` once all are queued."""

    def __init__(self, readback: Readback, entry: tuple[int, dict], batch: int):
        self.readback, self.entry, self.batch = readback, entry, batch
        self.buffers = entry[1]

    def queue(self, i: int, only: tuple = ()) -> None:
        """Queue sample i's outputs (``only`` these names, if given) into their slots."""
        r = self.readback
        for o in r.outputs:
            if not only or o.name in only:
                o.fbo.read_into(self.buffers[o.name], components=o.components, attachment=o.attachment, dtype=o.dtype,
                                write_offset=i * r.sample_bytes(o))

    def slot(self, name: str, i: int) -> tuple:
        """(buffer, Output, byte offset) where sample i's output ``name`` goes (layered reads: layered.py)."""
        output = next(o for o in self.readback.outputs if o.name == name)
        return self.buffers[name], output, i * self.readback.sample_bytes(output)

    def result(self, names: tuple = ()) -> dict[str, np.ndarray]:
        """{output name: (B, H, W, C) array, row 0 = the image's top} (GL's rows run bottom to top); the
        buffers are free for another batch afterwards (call it once)."""
        if self.buffers is None:
            raise RuntimeError("a batch's pixels are taken once")
        r, arrays = self.readback, {}
        with r.ctx:
            for o in r.outputs:
                if names and o.name not in names:
                    continue
                data = self.buffers[o.name].read(size=self.batch * r.sample_bytes(o))
                array = np.frombuffer(data, o.numpy_dtype)
                arrays[o.name] = array.reshape(self.batch, r.height, r.width, o.components)[:, ::-1]
        r._give_back(self.entry)
        self.buffers = None
        return arrays
