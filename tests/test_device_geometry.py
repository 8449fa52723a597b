"""Geometry on the GL device (compute shaders) against numpy's, and batched, pipelined read-back
against drawing one sample at a time."""

import dataclasses

import numpy as np
import pytest

from datagen.data.manifest import spec_fingerprint
from datagen.errors import DatagenError, RenderError
from datagen.run.generator import FaceGenerator
from datagen.spec import parse_spec
from datagen.synth.device_geometry import MAX_BATCH
from datagen.synth.geometry import build_scenes
from datagen.synth.render import Renderer

SPEC = parse_spec('name = "dg"\nseed = 5\n[render]\nwidth = 128\nheight = 128\n'
                  '[sampling.pose]\nyaw_range_deg = [-90, 90]\nyaw_std_deg = 60\n')


@pytest.fixture(scope="module")
def params(ict_model, ctx):
    generator = FaceGenerator(SPEC, ict_model, Renderer(ict_model, 128, 128, ctx=ctx))
    return [generator.sample_params(i) for i in range(MAX_BATCH + 3)]


@pytest.fixture(scope="module")
def renderer(ict_model, ctx):
    return Renderer(ict_model, 128, 128, ctx=ctx, geometry_on_device=True)


def test_device_geometry_equals_numpy_within_a_micron(ict_model, renderer, params):
    host = build_scenes(ict_model, params, topology=renderer.topology)
    device = build_scenes(ict_model, params, topology=renderer.topology, on_device=True)
    positions, normals = renderer.device_geometry.read(device.shape)
    ids = renderer.topology.render_to_model
    assert np.abs(positions - host.vertices[:, ids]).max() < 1e-3  # mm
    assert np.abs(normals - host.normals[:, ids]).max() < 1e-3
    assert np.abs(device.landmarks_3d - host.landmarks_3d).max() < 1e-3
    assert np.abs(device.landmarks_2d - host.landmarks_2d).max() < 1e-3
    # the depth bounds the device path draws with contain the mesh
    assert (device.depth_range[:, 0] <= host.depth_range[:, 0]).all()
    assert (device.depth_range[:, 1] >= host.depth_range[:, 1]).all()


def test_a_samples_device_geometry_is_the_same_bits_in_any_batch(ict_model, renderer, params):
    shapes = build_scenes(ict_model, params, topology=renderer.topology, on_device=True).shape
    together = renderer.device_geometry.read(shapes)  # MAX_BATCH, then 3
    for i in (0, MAX_BATCH - 1, MAX_BATCH + 2):
        alone = renderer.device_geometry.read(shapes[i:i + 1])
        np.testing.assert_array_equal(alone[0][0], together[0][i])
        np.testing.assert_array_equal(alone[1][0], together[1][i])


def test_device_and_numpy_geometry_render_the_same_pictures(ict_model, renderer, params):
    host = renderer.render(build_scenes(ict_model, params[:6], topology=renderer.topology))
    device = renderer.render(build_scenes(ict_model, params[:6], topology=renderer.topology, on_device=True))
    assert np.mean(host.segmentation == device.segmentation) > 0.9999
    both = (host.depth > 0) & (device.depth > 0)
    assert np.abs(host.depth - device.depth)[both].max() < 0.02  # mm
    assert np.abs(host.normal - device.normal)[both].max() < 5e-3
    assert np.abs(host.colour.astype(int) - device.colour).max() <= 8
    assert np.mean(host.colour != device.colour) < 1e-3


def test_pipelined_batches_equal_one_sample_at_a_time(ict_model, renderer, params):
    """Batches submitted before the earlier ones' pixels are taken (a small one, then a larger one, then
    a render meanwhile, as a photo-realistic composite draws while a batch waits) give what drawing each
    sample alone gives, on both geometry paths: a waiting batch's read-back buffers are its own."""
    for on_device in (False, True):
        def scenes(start, count):
            return build_scenes(ict_model, params[start:start + count], topology=renderer.topology, on_device=on_device)
        first, second = renderer.submit(scenes(0, 2)), renderer.submit(scenes(2, 4))
        renderer.render(scenes(6, 5))  # drawn and read while both wait
        third = renderer.submit(scenes(11, 1))
        batched = {0: first, 2: second, 11: third}
        for start in (11, 0, 2):  # taken out of order
            out = batched[start].result()
            for i in range(len(out.depth)):
                alone = renderer.render(scenes(start + i, 1))
                for field in ("colour", "depth", "normal", "segmentation"):
                    np.testing.assert_array_equal(getattr(out, field)[i], getattr(alone, field)[0], err_msg=field)
        with pytest.raises(RuntimeError, match="taken once"):
            first.result()


def test_the_device_box_filter_is_the_integer_box_filter(ict_model, renderer, params):
    out = renderer.render(build_scenes(ict_model, params[:1], topology=renderer.topology))
    with renderer.ctx:
        big = np.frombuffer(renderer.super_fbo.read(components=4), np.uint8).reshape(128, 2, 128, 2, 4)
    expected = ((big.astype(np.int32).sum((1, 3)) + 2) // 4).astype(np.uint8)[::-1]
    np.testing.assert_array_equal(out.colour[0], expected)


def test_the_geometry_setting(ict_model, ctx):
    renderer = Renderer(ict_model, 64, 64, ctx=ctx)
    small = 'name = "g"\nnum_samples = 4\n[render]\nwidth = 64\nheight = 64\n'
    auto = FaceGenerator(parse_spec(small), ict_model, renderer)
    assert not auto.on_device  # llvmpipe: numpy is faster (bench/throughput.py)
    device = FaceGenerator(parse_spec(small + 'geometry = "device"\n'), ict_model, renderer)
    assert device.on_device and "geometry on the device" in device.device
    a, b = auto.generate(range(4)), device.generate(range(4))
    assert set(a) == set(b)
    in_threes = device.generate(range(4), batch_size=3)  # pipelined batches of 3 and 1
    for key in b:
        np.testing.assert_array_equal(in_threes[key], b[key], err_msg=key)
    np.testing.assert_allclose(a["landmarks_3d"], b["landmarks_3d"], atol=1e-3)
    assert np.mean(a["segmentation"] == b["segmentation"]) > 0.999
    hair = small + 'geometry = "device"\n[sampling.hair]\nprobability = 0.5\n'
    with pytest.raises(DatagenError, match='render.geometry: "device" cannot serve this job: props'):
        parse_spec(hair)  # refused with the job file, before any work
    hair_spec = parse_spec(hair.replace('geometry = "device"', 'geometry = "auto"'))
    with pytest.raises(RenderError, match='render.geometry = "device": props'):  # a spec made in Python
        FaceGenerator(dataclasses.replace(hair_spec, render=dataclasses.replace(hair_spec.render, geometry="device")),
                      ict_model, renderer)
    with pytest.raises(DatagenError, match="render.geometry"):
        parse_spec(small + 'geometry = "gpu"\n')
    spec = parse_spec(small)
    moved = dataclasses.replace(spec, render=dataclasses.replace(spec.render, geometry="device"))
    assert spec_fingerprint(moved) == spec_fingerprint(spec)  # where the mesh is made: the same job


def test_the_devices_float16_is_numpys_for_every_kind_of_float(ctx):
    """readback.HALF_BITS on random bit patterns (every exponent, NaN and infinities), float16 ties, and
    the subnormal range: the bits numpy's astype gives."""
    from datagen.synth.readback import HalfNormals

    rng = np.random.default_rng(0)
    size = 128
    patterns = rng.integers(0, 2**32, (size, size, 3), dtype=np.uint64).astype(np.uint32)
    ties = rng.uniform(-1, 1, (size, size, 3)).astype(np.float16).astype(np.float32).view(np.uint32) | np.uint32(0x1000)
    subnormal = rng.integers(0x33000000, 0x38800000, (size, size, 3), dtype=np.uint64).astype(np.uint32)
    subnormal[..., 1] = (subnormal[..., 1] & ~np.uint32(0x1fff)) | np.uint32(0x1000)  # ties there too
    with ctx:
        half = HalfNormals(ctx, (size, size))
        for bits in (patterns, ties, subnormal, subnormal | np.uint32(0x80000000)):
            values = bits.view(np.float32)
            texture = ctx.texture((size, size), 4, np.concatenate([np.zeros((size, size, 1), np.float32), values], -1).tobytes(),
                                  dtype="f4")
            half.run(texture)
            got = np.frombuffer(half.fbo.read(components=3, dtype="u2"), np.uint16).reshape(size, size, 3)
            texture.release()
            with np.errstate(all="ignore"):
                expected = values.astype(np.float16)
            finite = ~np.isnan(values)
            np.testing.assert_array_equal(got[finite], expected.view(np.uint16)[finite])
            assert np.isnan(got.view(np.float16)[~finite]).all()


def test_half_normals_made_on_the_device_are_numpys_rounding_of_the_same_render(ict_model, ctx, params):
    plain = Renderer(ict_model, 128, 128, ctx=ctx)
    half = Renderer(ict_model, 128, 128, ctx=ctx)
    half.use_half_normals()
    scenes = build_scenes(ict_model, params[:3], topology=plain.topology)
    a, b = plain.render(scenes), half.render(scenes)
    assert b.normal.dtype == np.float16 and a.normal.dtype == np.float32
    np.testing.assert_array_equal(b.normal.view(np.uint16), a.normal.astype(np.float16).view(np.uint16))
    for field in ("depth", "segmentation", "colour"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field), err_msg=field)
    for out in (a, b):  # plain arrays, as torch.from_numpy and every reader takes them
        assert all(getattr(out, f).flags.c_contiguous for f in ("colour", "depth", "normal", "segmentation"))


def test_float16_normals_come_from_the_device_on_the_device_path_without_fine_detail(ict_model, ctx):
    small = 'name = "h"\nnum_samples = 3\n[render]\nwidth = 64\nheight = 64\n'
    made = {setting: FaceGenerator(parse_spec(small + f'geometry = "{setting}"\n'), ict_model,
                                   Renderer(ict_model, 64, 64, ctx=ctx)) for setting in ("host", "device")}
    assert made["host"].renderer.half_normals is None  # numpy's conversion: the renderer's outputs stay float32
    assert made["device"].renderer.half_normals is not None
    assert made["device"].generate(range(2))["normal"].dtype == np.float16
    detail = small + 'geometry = "device"\n[sampling.detail]\nprobability = 1.0\nresolution = 256\n'
    with_detail = FaceGenerator(parse_spec(detail), ict_model, Renderer(ict_model, 64, 64, ctx=ctx, detail_size=256))
    assert with_detail.renderer.half_normals is None  # its fine normals are float32: one type per render
