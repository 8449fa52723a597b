"""Ground truth must be exactly consistent with the image: these check it on the real ICT model."""

import dataclasses

import numpy as np
import pytest

from datagen.synth.face_parts import LABEL
from datagen.run.generator import FaceGenerator
from datagen.camera import project, projection_matrix
from datagen.synth.geometry import build_scenes
from datagen.synth.render import Renderer
from datagen.spec import parse_spec

SPEC = parse_spec('''name = "gt"
seed = 11
[render]
width = 160
height = 160
''')


@pytest.fixture(scope="module", params=["host", "device"])
def generator(ict_model, ctx, request):
    """Every ground-truth test below runs on both geometry paths (numpy's and the compute shaders')."""
    spec = dataclasses.replace(SPEC, render=dataclasses.replace(SPEC.render, geometry=request.param))
    r = spec.render
    return FaceGenerator(spec, ict_model, Renderer(ict_model, r.width, r.height, r.msaa, r.supersample, ctx=ctx))


@pytest.fixture(scope="module")
def batch(generator):
    return generator.generate(range(24))


def test_depth_is_positive_exactly_where_the_mask_is(batch):
    mask = batch["segmentation"] > 0
    assert mask.mean() > 0.1
    np.testing.assert_array_equal(batch["depth"] > 0, mask)
    assert np.isfinite(batch["depth"]).all()


def test_normals_are_unit_and_face_the_camera_on_skin(batch, generator):
    mask = batch["segmentation"] > 0
    n = batch["normal"].astype(np.float32)
    length = np.linalg.norm(n[mask], axis=-1)
    np.testing.assert_allclose(length, 1.0, atol=2e-3)
    assert (n[~mask] == 0).all()
    # view direction from each pixel's 3D point back to the camera (pinhole, from depth and intrinsics)
    h, w = mask.shape[1:]
    fx, fy, cx, cy = np.moveaxis(batch["params/intrinsics"], 1, 0)[:, :, None, None]
    u, v = np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5)
    d = batch["depth"]
    points = np.stack([(u - cx) / fx * d, -(v - cy) / fy * d, -d], -1)
    facing = (n * -points).sum(-1) > 0
    skin = np.isin(batch["segmentation"], [LABEL["skin"], LABEL["nose"], LABEL["head_neck"]])
    assert facing[skin].mean() > 0.995


def test_visible_landmarks_fall_inside_the_face(batch):
    seg, lm, vis = batch["segmentation"], batch["landmarks_2d"], batch["landmark_visible"]
    assert vis.mean() > 0.6
    for k in range(len(seg)):
        for (x, y) in lm[k][vis[k]]:
            c, r = int(x), int(y)
            window = seg[k, max(r - 1, 0):r + 2, max(c - 1, 0):c + 2]
            assert (window > 0).any(), f"sample {k}: visible landmark at {(x, y)} outside the face"


def test_rendered_depth_matches_projected_landmarks(batch):
    """The GL rasteriser and datagen.synth.geometry.project agree: at a visible landmark's pixel the
    rendered surface lies at the landmark's own depth."""
    errors = []
    for k in range(len(batch["image"])):
        for (x, y), z, visible in zip(batch["landmarks_2d"][k], batch["landmarks_3d"][k], batch["landmark_visible"][k]):
            depth = batch["depth"][k, int(y), int(x)]
            if visible and depth > 0:
                errors.append(abs(depth + z[2]) / -z[2])
    assert len(errors) > 500 and np.median(errors) < 0.005


def test_profile_views_hide_far_side_landmarks(ict_model, ctx):
    spec = parse_spec('name = "p"\n[render]\nwidth = 128\nheight = 128\n'
                      '[sampling.pose]\nyaw_range_deg = [80, 85]\npitch_range_deg = [0, 0]\nroll_range_deg = [0, 0]\n')
    g = FaceGenerator(spec, ict_model, Renderer(ict_model, 128, 128, 0, 1, ctx=ctx))
    vis = g.generate(range(6))["landmark_visible"]
    # positive yaw turns the face to the image's right: the subject's right side (iBUG 0-7, right eye 36-41) faces the camera
    assert vis[:, 0:4].mean() > 0.7 and vis[:, 13:17].mean() < 0.2 and vis[:, 42:48].mean() < 0.5


def test_projection_matrix_agrees_with_project():
    intrinsics = np.array([300.0, 310.0, 70.0, 60.0], np.float32)
    points = np.array([[10.0, -5.0, -400.0], [-30.0, 20.0, -900.0]])
    pixels = project(points[None], intrinsics[None])[0]
    clip = projection_matrix(intrinsics, 128, 128, 1.0, 2000.0) @ np.c_[points, np.ones(2)].T
    ndc = clip[:2] / clip[3]
    np.testing.assert_allclose(np.c_[(ndc[0] + 1) * 64, (1 - ndc[1]) * 64], pixels, atol=1e-3)


def test_tiny_model_renders_and_batches_match_single_samples(tiny_model, ctx):
    spec = parse_spec('name = "t"\n[render]\nwidth = 96\nheight = 96\n')
    g = FaceGenerator(spec, tiny_model, Renderer(tiny_model, 96, 96, 0, 2, ctx=ctx))
    together = g.generate(range(6), batch_size=6)
    apart = g.generate(range(6), batch_size=1)
    for key in together:
        np.testing.assert_array_equal(together[key], apart[key], err_msg=key)
    assert (together["segmentation"] > 0).mean() > 0.1
    scenes = build_scenes(tiny_model, [g.sample_params(0)])
    assert scenes.vertices.shape == (1, tiny_model.num_vertices, 3)


def test_msaa_path(ict_model, ctx):
    r = Renderer(ict_model, 96, 96, msaa=4, ctx=ctx)
    g = FaceGenerator(parse_spec('name = "m"\n[render]\nwidth = 96\nheight = 96\nmsaa = 4\n'), ict_model, r)
    out = g.generate(range(2))
    assert out["image"].std() > 10 and (out["segmentation"] > 0).any()


def test_image_backgrounds_and_unreadable_ones(tiny_model, ctx, tmp_path):
    from PIL import Image

    folder = tmp_path / "backgrounds"
    folder.mkdir()
    Image.fromarray(np.full((50, 80, 3), (255, 0, 0), np.uint8)).save(folder / "red.png")
    (folder / "broken.jpg").write_bytes(b"not a jpeg")
    spec = parse_spec(f'name = "b"\n[render]\nwidth = 64\nheight = 64\n'
                      f'[sampling.background]\nkind = "images"\nimages_dir = "{folder}"\n')
    g = FaceGenerator(spec, tiny_model, Renderer(tiny_model, 64, 64, ctx=ctx))
    out = g.generate(range(12))
    background = out["segmentation"] == 0
    red = [k for k in range(12) if out["params/background"][k, 1] == 1]  # sorted: broken.jpg = 0, red.png = 1
    broken = [k for k in range(12) if out["params/background"][k, 1] == 0]
    assert red and broken
    for k in red:  # all but the anti-aliased rim of the face
        assert (out["image"][k][background[k]] == (255, 0, 0)).all(-1).mean() > 0.95
    for k in broken:  # falls back to a procedural background, deterministically
        assert out["image"][k][background[k]].std() > 1
    np.testing.assert_array_equal(g.generate(broken[:1])["image"], out["image"][broken[:1]])


def test_packages_with_their_own_llvm_are_loaded_before_the_gl_context(tmp_path):
    """triton (beside CUDA builds of PyTorch) segfaults when first imported after Mesa's llvmpipe has
    loaded its LLVM, and loads fine before it: create_context imports it first. A stand-in records
    whether a context existed when it was imported."""
    import subprocess
    import sys

    fake = tmp_path / "triton"
    fake.mkdir()
    (fake / "__init__.py").write_text("import sys\nIMPORTED_AFTER_A_CONTEXT = 'datagen.synth.render' in sys.modules and "
                                      "getattr(sys.modules['datagen.synth.render'], '_made', False)\n")
    code = ("import sys, datagen.synth.render as r\n"
            "ctx = r.create_context(); r._made = True\n"
            "import triton\n"
            "print(triton.IMPORTED_AFTER_A_CONTEXT, 'triton' in sys.modules)")
    env = {**__import__("os").environ, "PYTHONPATH": f"{tmp_path}"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "True"]


def test_scenes_and_their_topology_are_built_without_a_gl_context(tiny_model_dir):
    """A scene (geometry, camera, light, material) needs no renderer: build one in a process that
    never imports moderngl, and check the topology's split along UV seams."""
    import subprocess
    import sys

    code = (f"import sys\nfrom datagen.models import resolve_model\nfrom datagen.synth.geometry import build_scenes, mesh_topology\n"
            f"from datagen.spec import parse_spec\nfrom datagen.synth.sampling import sample_face\n"
            f"model = resolve_model({str(tiny_model_dir)!r})\n"
            f"spec = parse_spec('name = \"t\"')\n"
            f"scenes = build_scenes(model, [sample_face(spec, model, i) for i in range(3)])\n"
            f"t = mesh_topology(model)\n"
            f"print(len(scenes), scenes.light_sh.shape, scenes.albedo_maps, t.render_triangles.max() + 1 == len(t.render_to_model),"
            f" 'moderngl' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["3", "(3,", "9,", "3)", "(None,", "None,", "None)", "True", "False"]


def test_a_pass_reading_some_attributes_skips_the_others_in_the_shared_buffers():
    from datagen.synth.render import DYNAMIC_LAYOUT, STATIC_LAYOUT, _format

    assert _format(STATIC_LAYOUT, ["in_uv"]) == "2f 4x 4x 16x"  # uv, then label, material, weights skipped
    assert _format(STATIC_LAYOUT, [name for name, _, _ in STATIC_LAYOUT]) == "2f 1f 1f 4f"
    assert _format(DYNAMIC_LAYOUT, ["in_position", "in_normal"]) == "3f 3f"
