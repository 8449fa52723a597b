"""Layered batches (synth/layered.py): one instanced draw per pass for a batch, sample k into layer k,
against drawing the same samples one at a time."""

import numpy as np
import pytest

from datagen.run.generator import FaceGenerator
from datagen.spec import parse_spec
from datagen.synth.device_geometry import MAX_BATCH
from datagen.synth.geometry import build_scenes
from datagen.synth.render import Renderer

JOB = 'name = "layers"\nseed = 11\nnum_samples = 40\n[render]\nwidth = 96\nheight = 96\ngeometry = "device"\n'


@pytest.mark.parametrize("supersample", [1, 2])
def test_layered_batches_give_the_arrays_of_one_sample_at_a_time(ict_model, ctx, supersample):
    """Every array of every sample, bit for bit: the ground truth, the anti-aliased image, the float16
    normals made on the device, the backgrounds painted there; batches of MAX_BATCH and a short one."""
    spec = parse_spec(JOB + f"supersample = {supersample}\n[sampling.pose]\nyaw_range_deg = [-90, 90]\n")
    generator = FaceGenerator(spec, ict_model, Renderer(ict_model, 96, 96, ctx=ctx, supersample=supersample))
    assert generator.renderer.draws_layered
    indices = range(7, 7 + MAX_BATCH + 3)
    layered = generator.generate(indices)
    generator.renderer.use_layered_draws(False)
    assert not generator.renderer.draws_layered
    alone = generator.generate(indices)
    assert (layered["segmentation"] > 0).mean() > 0.2  # faces were drawn
    for key in alone:
        np.testing.assert_array_equal(layered[key], alone[key], err_msg=key)


def test_a_samples_pixels_do_not_depend_on_its_layer(ict_model, ctx):
    renderer = Renderer(ict_model, 96, 96, ctx=ctx, geometry_on_device=True)
    spec = parse_spec(JOB)
    params = [FaceGenerator(spec, ict_model, renderer).sample_params(i) for i in range(5)]
    scenes = build_scenes(ict_model, params, topology=renderer.topology, on_device=True)
    together = renderer.render(scenes)
    reversed_ = renderer.render(build_scenes(ict_model, params[::-1], topology=renderer.topology, on_device=True))
    for field in ("colour", "depth", "normal", "segmentation"):
        np.testing.assert_array_equal(getattr(together, field), getattr(reversed_, field)[::-1], err_msg=field)


def test_layered_draws_where_a_batch_can_share_one_draw(ict_model, ctx):
    """The device path draws layered; MSAA, fine detail and flow renderers, and meshes made on the host,
    draw a sample at a time."""
    assert Renderer(ict_model, 32, 32, ctx=ctx, geometry_on_device=True).draws_layered
    for options in ({"msaa": 4}, {"detail_size": 64}, {"flow": True}):
        assert not Renderer(ict_model, 32, 32, ctx=ctx, geometry_on_device=True, **options).draws_layered, options
    renderer = Renderer(ict_model, 32, 32, ctx=ctx, geometry_on_device=True)
    params = [FaceGenerator(parse_spec(JOB), ict_model, renderer).sample_params(0)]
    assert renderer._draws_layered(build_scenes(ict_model, params, topology=renderer.topology, on_device=True), None)
    assert not renderer._draws_layered(build_scenes(ict_model, params, topology=renderer.topology), None)


def test_layered_batches_with_photo_and_made_backgrounds_mixed(ict_model, ctx, tmp_path):
    """Layers whose sample has a background photo are painted but never read: composited on the host."""
    from PIL import Image

    from datagen.synth.sampling import IMAGE_BACKGROUND, MADE_BACKGROUND

    (tmp_path / "photos").mkdir()
    Image.fromarray(np.full((80, 80, 3), (255, 0, 0), np.uint8)).save(tmp_path / "photos" / "red.png")
    spec = parse_spec(JOB + f'[sampling.background]\nkind = "mixed"\nimages_dir = "{tmp_path / "photos"}"\n')
    generator = FaceGenerator(spec, ict_model, Renderer(ict_model, 96, 96, ctx=ctx))
    indices = range(MAX_BATCH + 3)
    layered = generator.generate(indices)
    kinds = set(layered["params/background"][:, 0])
    assert kinds == {IMAGE_BACKGROUND, MADE_BACKGROUND}
    generator.renderer.use_layered_draws(False)
    alone = generator.generate(indices)
    for key in alone:
        np.testing.assert_array_equal(layered[key], alone[key], err_msg=key)
