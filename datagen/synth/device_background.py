"""Made backgrounds painted on the GL device: the device path's share of the picture stage.

A made (procedural) background is a few dozen numbers (``background.ProceduralPattern``) and a
per-pixel grain. numpy paints it in float64 with PIL's bicubic upsampling and a fresh standard
normal draw per pixel, 3 to 5 ms a sample on a CPU core: most of what the host spends on a sample
once the mesh is on the device. Here a fragment shader paints the same pattern, drawn from the
sample's own stream as before, and its read-back joins the batch's (readback.py):

- the ramp and the two blob layers as numpy computes them, in float32; the bicubic upsampling is
  PIL's (Keys' cubic, a = -0.5, taps renormalised at the borders, 8-bit rounding after the
  horizontal and after the vertical pass), so a layer is within one level of PIL's;
- the grain from a fixed texture of standard normal draws (made once per renderer from a fixed
  seed), read from an offset the sample's stream draws where numpy draws the grain itself.

So a sample's background is the numpy path's pattern with another grain of the same strength (the
grain is under 4% of the range, 10 levels at most): the device and the numpy path give different
pixels in the background, not different backgrounds. The same (seed, index) gives the same bytes
on every device of one kind, in any batch.
"""

from __future__ import annotations

import numpy as np

from .background import ProceduralPattern, procedural_pattern
from .readback import Output, full_screen_program
from .sampling import sample_rng

GRAIN_SIZE = 512  # texels a side of the grain texture, repeated
GRAIN_SEED = 7001  # fixed: the texture is part of the renderer, not of a sample
MAX_CELLS = 24  # blob grids are 2..23 cells a side (procedural_pattern)

PAINT = """
#version 330
uniform IMAGE u_coarse;  // the blob grids, bytes, from texel (0, 0)
uniform IMAGE u_fine;
uniform sampler2D u_grain;
uniform ivec2 u_size;
// Per sample (SAMPLES of them when painting a batch into layers, else 1), indexed by SAMPLE:
uniform ivec2 u_cells[SAMPLES];
uniform ivec2 u_grain_offset[SAMPLES];
uniform vec3 u_base[SAMPLES];
uniform vec3 u_gradient[SAMPLES];
uniform vec2 u_direction[SAMPLES];
uniform vec2 u_weights[SAMPLES];
uniform float u_grain_std[SAMPLES];
out vec4 f_colour;

float cubic(float x) {  // PIL's bicubic filter, a = -0.5
    const float a = -0.5;
    x = abs(x);
    if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0;
    if (x < 2.0) return (((x - 5.0) * x + 8.0) * x - 4.0) * a;
    return 0.0;
}

// The taps of output pixel o of out_size from in_size texels, as PIL's precompute_coeffs (upsampling).
void taps(int o, int in_size, int out_size, out int first, out int count, out float w[5]) {
    float center = (float(o) + 0.5) * float(in_size) / float(out_size);
    first = max(int(center - 2.0 + 0.5), 0);
    count = min(int(center + 2.0 + 0.5), in_size) - first;
    float total = 0.0;
    for (int i = 0; i < 5; ++i) {
        w[i] = i < count ? cubic(float(i + first) - center + 0.5) : 0.0;
        total += w[i];
    }
    for (int i = 0; i < 5; ++i) w[i] /= total;
}

vec3 layer(IMAGE blobs, int cells, ivec2 pixel) {  // bytes 0..255, as PIL's resize gives them
    int fx, nx, fy, ny;
    float wx[5], wy[5];
    taps(pixel.x, cells, u_size.x, fx, nx, wx);
    taps(pixel.y, cells, u_size.y, fy, ny, wy);
    vec3 sum = vec3(0.0);
    for (int j = 0; j < ny; ++j) {
        vec3 row = vec3(0.0);
        for (int i = 0; i < nx; ++i)
            row += wx[i] * round(FETCH(blobs, ivec2(fx + i, fy + j)).rgb * 255.0);
        sum += wy[j] * clamp(floor(row + 0.5), 0.0, 255.0);
    }
    return clamp(floor(sum + 0.5), 0.0, 255.0);
}

void main() {
    // x right, y down from the top row (the read-back turns GL's bottom-up rows over)
    ivec2 pixel = ivec2(int(gl_FragCoord.x), u_size.y - 1 - int(gl_FragCoord.y));
    vec2 unit = vec2(pixel) / vec2(u_size);
    vec3 value = u_base[SAMPLE] + u_gradient[SAMPLE] * dot(u_direction[SAMPLE], unit);
    value += u_weights[SAMPLE].x * (layer(u_coarse, u_cells[SAMPLE].x, pixel) / 127.5 - 1.0);
    value += u_weights[SAMPLE].y * (layer(u_fine, u_cells[SAMPLE].y, pixel) / 127.5 - 1.0);
    value += u_grain_std[SAMPLE] * texelFetch(u_grain, (pixel + u_grain_offset[SAMPLE]) % GRAIN_SIZE, 0).r;
    f_colour = vec4(floor(clamp(value, 0.0, 1.0) * 255.0) / 255.0, 1.0);  // truncated, as numpy's cast
}
""".replace("GRAIN_SIZE", str(GRAIN_SIZE))


def paints(width: int, height: int) -> bool:
    """Whether the device paints made backgrounds of this size: PIL enlarges every blob grid (up to 23
    cells) in images of at least MAX_CELLS pixels a side; the shader does only enlarging."""
    return min(width, height) >= MAX_CELLS


def device_pattern(seed: int, index: int) -> tuple[ProceduralPattern, tuple[int, int]]:
    """Sample ``index``'s made background as the device paints it: its pattern (the numpy path's), and
    where its grain starts in the grain texture (drawn where the numpy path draws its grain)."""
    rng = sample_rng(seed, index, "background_pattern")
    pattern = procedural_pattern(rng)
    return pattern, tuple(int(v) for v in rng.integers(0, GRAIN_SIZE, size=2))


def grain_texels() -> np.ndarray:
    return np.random.default_rng(GRAIN_SEED).standard_normal((GRAIN_SIZE, GRAIN_SIZE)).astype(np.float32)


class DeviceBackgrounds:
    """Paints made backgrounds into a framebuffer of the output size; ``output`` is its read-back.
    ``layers`` > 0: into the layers of a texture array instead, a batch with one instanced draw
    (``paint_layers``; synth/layered.py), read back from ``texture``."""

    def __init__(self, ctx, width: int, height: int, layers: int = 0):
        self.ctx, self.layers = ctx, layers
        self.program = full_screen_program(ctx, PAINT.replace("SAMPLES", str(max(layers, 1))), layered=bool(layers))
        self.vao = ctx.vertex_array(self.program, [])
        self.texture = ctx.texture_array((width, height, layers), 4) if layers else ctx.texture((width, height), 4)
        self.fbo = ctx.framebuffer(color_attachments=[self.texture])
        self.grain = ctx.texture((GRAIN_SIZE, GRAIN_SIZE), 1, grain_texels().tobytes(), dtype="f4")
        grids = (MAX_CELLS, MAX_CELLS, layers) if layers else (MAX_CELLS, MAX_CELLS)
        self.blobs = [(ctx.texture_array if layers else ctx.texture)(grids, 3) for _ in range(2)]
        for texture in [self.grain] + self.blobs:
            texture.filter = (ctx.NEAREST, ctx.NEAREST)
        for unit, name in enumerate(("u_coarse", "u_fine", "u_grain")):
            self.program[name] = unit
        self.program["u_size"] = (width, height)
        self.output = Output("background", self.fbo, 0, 3, "f1")

    def paint(self, pattern: ProceduralPattern, grain_offset: tuple[int, int]) -> None:
        """One sample's background (a renderer drawing a sample at a time)."""
        self.paint_layers([(pattern, grain_offset)])

    def paint_layers(self, painted: list) -> None:
        """Per layer (at most ``layers``; 1 without) a pattern and grain offset as ``device_pattern`` gives,
        or None (a layer left to the photo composited on the host: painted with zeros, never read)."""
        samples = max(self.layers, 1)
        grids = np.zeros((2, samples, MAX_CELLS, MAX_CELLS, 3), np.uint8)  # each grid from texel (0, 0)
        values = {name: np.zeros((samples, size), dtype) for name, size, dtype in PER_SAMPLE}
        for k, entry in enumerate(painted):
            if entry is None:
                continue
            pattern, offset = entry
            for grid, blobs in zip(grids, pattern.blobs):
                grid[k, :len(blobs), :len(blobs)] = blobs
            values["u_cells"][k] = [len(b) for b in pattern.blobs]
            values["u_grain_offset"][k] = offset
            values["u_base"][k], values["u_gradient"][k] = pattern.base, pattern.gradient
            values["u_direction"][k] = (np.cos(pattern.angle), np.sin(pattern.angle))
            values["u_weights"][k], values["u_grain_std"][k] = pattern.weights, pattern.grain
        for texture, grid in zip(self.blobs, grids):
            texture.write(grid.tobytes())
        for name, array in values.items():
            self.program[name].write(array.tobytes())
        self.fbo.use()
        self.ctx.disable(self.ctx.DEPTH_TEST | self.ctx.CULL_FACE)
        for unit, texture in enumerate(self.blobs + [self.grain]):
            texture.use(unit)
        self.vao.render(mode=self.ctx.TRIANGLES, vertices=3, instances=len(painted))


# The shader's per-sample uniforms: (name, components, numpy type of their values).
PER_SAMPLE = (("u_cells", 2, np.int32), ("u_grain_offset", 2, np.int32), ("u_base", 3, np.float32),
              ("u_gradient", 3, np.float32), ("u_direction", 2, np.float32), ("u_weights", 2, np.float32),
              ("u_grain_std", 1, np.float32))
