"""Made backgrounds and compositing: the fast numpy paths equal their plain per-pixel formulas bit for
bit, and the device paints a made background's pattern as numpy does (synth/device_background.py)."""

import dataclasses

import numpy as np
import pytest
from PIL import Image

from datagen.synth.background import _procedural, composite, paint_pattern, procedural_pattern
from datagen.synth.device_background import GRAIN_SIZE, DeviceBackgrounds, device_pattern, grain_texels
from datagen.synth.sampling import sample_rng


def plain_procedural(rng, width, height):
    """The made background as first written: per pixel, float64 (the bits every release keeps)."""
    base = rng.uniform(0, 1, size=3)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    xx, yy = xx / width, yy / height
    angle = rng.uniform(0, 2 * np.pi)
    ramp = (np.cos(angle) * xx + np.sin(angle) * yy)[..., None]
    image = base + rng.normal(0, 0.25, size=3) * ramp
    for cells in (int(rng.integers(2, 6)), int(rng.integers(6, 24))):
        blobs = rng.uniform(-1, 1, size=(cells, cells, 3)).astype(np.float32)
        up = np.asarray(Image.fromarray(((blobs + 1) * 127.5).astype(np.uint8)).resize((width, height), Image.BICUBIC))
        image += rng.uniform(0.05, 0.35) * (up / 127.5 - 1.0)
    noise = rng.uniform(0, 0.04)
    image += noise * rng.standard_normal((height, width, 1))
    return (np.clip(image, 0, 1) * 255).astype(np.uint8)


def plain_composite(colour, background):
    alpha = colour[..., 3:4].astype(np.float32) / 255.0
    return (colour[..., :3] * alpha + background * (1.0 - alpha) + 0.5).astype(np.uint8)


@pytest.mark.parametrize("size", [(224, 224), (96, 160), (33, 17)])
def test_a_made_background_is_the_per_pixel_formulas_bits(size):
    width, height = size
    for index in range(12):
        fast = _procedural(sample_rng(7, index, "background_pattern"), width, height)
        plain = plain_procedural(sample_rng(7, index, "background_pattern"), width, height)
        assert fast.shape == (height, width, 3) and fast.flags.c_contiguous and np.array_equal(fast, plain)


def test_compositing_is_the_per_pixel_formulas_bits():
    rng = np.random.default_rng(3)
    for trial in range(6):
        colour = rng.integers(0, 256, (40, 56, 4), dtype=np.uint8)
        if trial % 2:  # mostly uncovered or covered, as faces are
            colour[..., 3] = rng.choice([0, 255, 1, 128, 254], size=(40, 56), p=[0.5, 0.4, 0.03, 0.04, 0.03])
        background = rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)
        flipped = colour[::-1]  # the renderer hands over rows read bottom-up, as a view
        assert np.array_equal(composite(flipped, background), plain_composite(flipped, background))


def test_a_pattern_painted_without_grain_has_no_grain():
    pattern = procedural_pattern(sample_rng(1, 2, "background_pattern"))
    flat = paint_pattern(pattern, np.zeros((64, 64)))
    grainy = paint_pattern(pattern, np.random.default_rng(0).standard_normal((64, 64)))
    assert 0 < np.abs(flat.astype(int) - grainy).mean() < 255 * 4 * pattern.grain


WIDTH, HEIGHT = 96, 64


@pytest.fixture(scope="module")
def painter(ctx):
    with ctx:
        return DeviceBackgrounds(ctx, WIDTH, HEIGHT)


def painted(painter, pattern, offset=(0, 0)) -> np.ndarray:
    with painter.ctx:
        painter.paint(pattern, offset)
        rows = np.frombuffer(painter.fbo.read(components=3), np.uint8).reshape(HEIGHT, WIDTH, 3)
    return rows[::-1]  # GL's rows run bottom to top


def test_the_device_paints_a_patterns_ramp_and_blobs_within_a_level_of_numpy(painter):
    for index in range(10):
        pattern, offset = device_pattern(3, index)
        smooth = dataclasses.replace(pattern, grain=0.0)
        difference = np.abs(painted(painter, smooth, offset).astype(int) - paint_pattern(smooth, np.zeros((HEIGHT, WIDTH))))
        assert difference.max() <= 1 and np.mean(difference > 0) < 1e-3


def test_the_device_grain_is_the_grain_texture_from_the_samples_offset(painter):
    pattern, _ = device_pattern(3, 0)
    grey = dataclasses.replace(pattern, base=np.full(3, 0.5), gradient=np.zeros(3), weights=(0.0, 0.0), grain=0.03)
    offset = (GRAIN_SIZE - 40, 17)  # wraps around the texture's edge
    rows = (np.arange(HEIGHT)[:, None] + offset[1]) % GRAIN_SIZE
    cols = (np.arange(WIDTH)[None, :] + offset[0]) % GRAIN_SIZE
    expected = np.floor(np.clip(0.5 + 0.03 * grain_texels()[rows, cols].astype(np.float64), 0, 1) * 255)
    difference = np.abs(painted(painter, grey, offset)[..., 0] - expected)
    assert difference.max() <= 1 and np.mean(difference > 0) < 1e-2
    offsets = {device_pattern(3, i)[1] for i in range(20)}
    assert len(offsets) == 20  # each sample its own grain
    assert device_pattern(3, 5)[1] == device_pattern(3, 5)[1]


def test_the_device_path_composites_its_painted_backgrounds(ict_model, ctx):
    from datagen.run.generator import FaceGenerator
    from datagen.spec import parse_spec
    from datagen.synth.render import Renderer

    spec = parse_spec('name = "bg"\nseed = 2\n[render]\nwidth = 96\nheight = 64\ngeometry = "device"\n')
    generator = FaceGenerator(spec, ict_model, Renderer(ict_model, WIDTH, HEIGHT, ctx=ctx))
    params = [generator.sample_params(i) for i in range(3)]
    rendered = generator._submit(params)[2].result()
    images = generator.generate(range(3))["image"]
    for k in range(3):
        uncovered = rendered.colour[k][..., 3] == 0
        assert uncovered.mean() > 0.3
        np.testing.assert_array_equal(images[k][uncovered], rendered.background[k][uncovered])
        pattern, offset = device_pattern(spec.seed, k)
        np.testing.assert_array_equal(rendered.background[k], painted(generator.renderer.device_backgrounds, pattern, offset))


def test_images_too_small_for_the_shaders_upsampling_get_numpys_backgrounds(ict_model, ctx):
    from datagen.run.generator import FaceGenerator
    from datagen.spec import parse_spec
    from datagen.synth.render import Renderer

    spec = parse_spec('name = "bg"\nseed = 2\n[render]\nwidth = 20\nheight = 32\ngeometry = "device"\n')
    generator = FaceGenerator(spec, ict_model, Renderer(ict_model, 20, 32, ctx=ctx))
    params = [generator.sample_params(i) for i in range(2)]
    assert generator._painted(params) is None  # PIL shrinks a 23-cell grid into 20 pixels: numpy paints it
    assert generator.generate(range(2))["image"].shape == (2, 32, 20, 3)
