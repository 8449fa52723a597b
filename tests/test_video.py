"""Video clips (synth/motion.py, synth/flow.py, the [video] table): the flow is exact against the
images and the geometry, occlusion is flagged where points turn away, the motion follows the configured
processes, and frames = 1 is the still pipeline."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from PIL import Image
from scipy.ndimage import binary_erosion, map_coordinates

from datagen.data.fields import LABELS, shard_fields
from datagen.data.video_stats import blink_rate, delta_stats
from datagen.errors import SpecError
from datagen.run.generator import FaceGenerator
from datagen.spec import parse_spec
from datagen.synth.flow import invert_warp_flow, pixel_centres
from datagen.synth.geometry import build_scenes
from datagen.synth.motion import clip_params, sh_rotation_y
from datagen.synth.render import Renderer
from datagen.synth.sampling import sample_face

SIZE = 128
FACE_LABELS = tuple(i for i, name in enumerate(LABELS) if name not in ("background", "hair", "clothing", "glasses",
                                                                        "hand", "photo_occluder"))


def video_spec(extra: str = "", frames: int = 4):
    return parse_spec(f'''name = "video"
seed = 11
[render]
width = {SIZE}
height = {SIZE}
[sampling.pose]
yaw_range_deg = [-40.0, 40.0]
[video]
frames = {frames}
head_speed_std_deg = [40.0, 20.0, 10.0]
light_turn_std_deg = 0.0
light_gain_std = 0.0
{extra}
''', "<video>")


@pytest.fixture(scope="module")
def renderer(ict_model, ctx):
    return Renderer(ict_model, SIZE, SIZE, ctx=ctx, flow=True)


@pytest.fixture(scope="module")
def generator(ict_model, renderer):
    return FaceGenerator(video_spec(), ict_model, renderer)


@pytest.fixture(scope="module")
def clips(generator):
    return generator.generate(range(3))


def warp_back(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """``image`` (of the other frame) sampled where ``flow`` says each pixel's point went (bilinear)."""
    there = pixel_centres(*flow.shape[:2]) + flow.astype(np.float32) - 0.5
    return np.stack([map_coordinates(image[..., c].astype(np.float32), [there[..., 1], there[..., 0]], order=1)
                     for c in range(3)], -1)


@pytest.mark.parametrize("direction", ["forward", "backward"])
def test_warping_by_the_flow_reproduces_the_other_frame_on_the_co_visible_face(clips, direction):
    """Light held fixed (it still turns with the head in camera space, so shading changes a little):
    inside the face seen in both frames, frame t+1 warped back by flow_forward[t] matches frame t to
    within 1.5 levels on average in every pair, and over all pairs leaves at most half the difference
    there is without the flow."""
    warped_errors, still_errors = [], []
    for c in range(len(clips["image"])):
        for t in range(clips["image"].shape[1] - 1):
            here, there = (t, t + 1) if direction == "forward" else (t + 1, t)
            flow = clips[f"flow_{direction}"][c, t]
            face = np.isin(clips["segmentation"][c, here], FACE_LABELS) & ~clips[f"occluded_{direction}"][c, t]
            face = binary_erosion(face, iterations=1)  # not the silhouette's mixed pixels
            image, other = clips["image"][c, here].astype(np.float32), clips["image"][c, there]
            warped = np.abs(warp_back(other, flow) - image).mean(-1)[face].mean()
            still = np.abs(other.astype(np.float32) - image).mean(-1)[face].mean()
            warped_errors.append(warped)
            still_errors.append(still)
    print(f"{direction}: warped {np.mean(warped_errors):.2f} levels (max {np.max(warped_errors):.2f}), "
          f"not warped {np.mean(still_errors):.2f}")
    assert max(warped_errors) < 1.5 and np.mean(warped_errors) < 0.5 * np.mean(still_errors)


def _flow_on_surface(flow: np.ndarray, depth: np.ndarray, points: np.ndarray, point_depth: np.ndarray) -> np.ndarray:
    """``flow`` bilinearly interpolated at sub-pixel ``points`` (x, y) from the neighbouring pixels that show
    the points' own surface (depth within 3 mm of theirs: not the mouth's inside beside a lip landmark)."""
    x, y = points[:, 0] - 0.5, points[:, 1] - 0.5
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    total, weights = np.zeros((len(points), 2)), np.zeros(len(points))
    for dy in (0, 1):
        for dx in (0, 1):
            r, c = np.clip(y0 + dy, 0, flow.shape[0] - 1), np.clip(x0 + dx, 0, flow.shape[1] - 1)
            same = np.abs(depth[r, c] - point_depth) < 3.0
            w = (1 - np.abs(x - x0 - dx)) * (1 - np.abs(y - y0 - dy)) * same
            total += w[:, None] * flow[r, c]
            weights += w
    return np.where(weights[:, None] > 0, total / np.maximum(weights, 1e-9)[:, None], np.nan)


def test_the_flow_at_each_visible_landmark_is_that_landmarks_own_motion(clips):
    errors = []
    for c in range(len(clips["image"])):
        for t in range(clips["image"].shape[1] - 1):
            start, end = clips["landmarks_2d"][c, t], clips["landmarks_2d"][c, t + 1]
            seen = clips["landmark_visible"][c, t] & clips["landmark_visible"][c, t + 1]
            flow = _flow_on_surface(clips["flow_forward"][c, t].astype(np.float64), clips["depth"][c, t], start,
                                    -clips["landmarks_3d"][c, t, :, 2])
            errors.append(np.linalg.norm(flow - (end - start), axis=1)[seen])
    errors = np.concatenate(errors)
    found = np.isfinite(errors)  # on a grazing surface a landmark may have no neighbour pixel at its depth
    assert found.mean() > 0.95
    errors = errors[found]
    motion = np.linalg.norm(np.diff(clips["landmarks_2d"], axis=1), axis=-1).mean()
    print(f"landmark flow error: mean {errors.mean():.3f} px, max {errors.max():.3f} px over {len(errors)} "
          f"(landmarks move {motion:.2f} px/frame)")
    assert errors.max() < 0.5 and errors.mean() < 0.05


def test_occlusion_is_flagged_where_the_surface_turns_away_in_a_yaw_sweep(ict_model, generator):
    first = dataclasses.replace(generator.sample_params(0), rotation=np.zeros(3, np.float32))
    frames = [first, dataclasses.replace(first, frame=1, rotation=np.radians([35.0, 0.0, 0.0]).astype(np.float32))]
    clip = generator.render_clip(frames)
    scenes = build_scenes(ict_model, frames)
    facing = [(n * -v / np.linalg.norm(v, axis=-1, keepdims=True)).sum(-1) for v, n in zip(scenes.vertices, scenes.normals)]
    pixel = np.floor(_project(scenes.vertices[0], scenes.intrinsics[0])).astype(int)
    inside = np.all((pixel >= 0) & (pixel < SIZE), axis=1)
    r, c = np.clip(pixel[:, 1], 0, SIZE - 1), np.clip(pixel[:, 0], 0, SIZE - 1)
    shown = inside & (np.abs(clip["depth"][0, 0][r, c] + scenes.vertices[0][:, 2]) < 1.0)  # the surface seen there
    turned = shown & (facing[0] > 0.3) & (facing[1] < -0.2)
    stays = shown & (facing[0] > 0.5) & (facing[1] > 0.5)
    occluded = clip["occluded_forward"][0, 0][r, c]
    print(f"{turned.sum()} seen points turn away: {occluded[turned].mean():.1%} flagged; "
          f"{stays.sum()} keep facing: {occluded[stays].mean():.1%} flagged")
    assert turned.sum() > 50 and occluded[turned].mean() > 0.95
    assert occluded[stays].mean() < 0.1


def _project(points, intrinsics):
    fx, fy, cx, cy = intrinsics
    return np.stack([fx * points[:, 0] / -points[:, 2] + cx, cy - fy * points[:, 1] / -points[:, 2]], 1)


def test_background_flow_follows_the_camera_shake(ict_model, renderer):
    generator = FaceGenerator(video_spec("shake_std = 0.01", frames=3), ict_model, renderer)
    clip = generator.generate([1])
    shift = np.diff(clip["params/intrinsics"][0, :, 2:], axis=0)
    background = clip["depth"][0, :-1] == 0
    assert np.abs(shift).max() > 0.1
    for t in range(2):
        flow = clip["flow_forward"][0, t][background[t]].astype(np.float32)
        np.testing.assert_allclose(flow, np.broadcast_to(shift[t], flow.shape), atol=2e-3)


def test_the_delta_statistics_of_1000_pairs_match_the_configured_process(ict_model):
    spec = video_spec("shake_std = 0.0\nblink_rate_per_min = 60.0\n[sampling.expression]\neye_blink_probability = 0.0",
                      frames=9)  # no eyes held half closed by an expression: the blinks alone
    v = spec.video
    clips = [clip_params(spec, ict_model, sample_face(spec, ict_model, i)) for i in range(125)]  # 1,000 pairs
    rotation = np.array([[f.rotation for f in clip] for clip in clips], np.float64)
    translation = np.array([[f.translation for f in clip] for clip in clips], np.float64)
    expression = np.array([[f.expression for f in clip] for clip in clips], np.float64)
    rows = {row[0]: row for row in delta_stats(rotation, translation, expression, ict_model.expression_names, v.fps)}
    for axis, std in zip(("yaw", "pitch", "roll"), v.head_speed_std_deg):
        _, mean, spread, *_ = rows[f"{axis} change"]
        print(f"{axis}: {mean:+.3f} +- {spread:.3f} deg/frame (configured 0 +- {std / v.fps:.3f})")
        assert abs(spread / (std / v.fps) - 1) < 0.15 and abs(mean) < 0.2 * std / v.fps
    a = np.exp(-v.dt / v.distance_time_constant_s)  # log-distance steps of the OU process
    _, mean, spread, *_ = rows["distance change"]
    assert abs(spread / (100 * v.distance_std * np.sqrt(1 - a * a)) - 1) < 0.15 and abs(mean) < 0.1
    longer = [clip_params(dataclasses.replace(spec, video=dataclasses.replace(v, frames=121)), ict_model,
                          sample_face(spec, ict_model, i)) for i in range(40)]  # 4,800 pairs: 160 s, ~160 blinks
    rate = blink_rate(np.array([[f.expression for f in clip] for clip in longer]), ict_model.expression_names, v.fps)
    print(f"blink rate {rate:.1f} per minute (configured {v.blink_rate_per_min})")
    assert abs(rate / v.blink_rate_per_min - 1) < 0.25


def test_frames_1_is_the_still_job_and_a_clip_starts_at_the_still_sample(ict_model, ctx, generator, clips):
    still_spec = video_spec(frames=1)
    plain = parse_spec(f'name = "video"\nseed = 11\n[render]\nwidth = {SIZE}\nheight = {SIZE}\n'
                       '[sampling.pose]\nyaw_range_deg = [-40.0, 40.0]\n')
    still_renderer = Renderer(ict_model, SIZE, SIZE, ctx=ctx)
    with_table = FaceGenerator(still_spec, ict_model, still_renderer).generate(range(3))
    without = FaceGenerator(plain, ict_model, still_renderer).generate(range(3))
    assert set(with_table) == set(without) and not any("flow" in name for name in with_table)
    for name in without:
        np.testing.assert_array_equal(with_table[name], without[name], err_msg=name)
        first_frames = clips[name][:, 0] if clips[name].ndim == without[name].ndim + 1 else clips[name]
        np.testing.assert_array_equal(first_frames, without[name], err_msg=name)


def test_any_frame_regenerates_alone_and_the_clip_is_deterministic(ict_model, generator, clips):
    frames = generator.clip_params(2)
    alone = clip_params(generator.spec, ict_model, sample_face(generator.spec, ict_model, 2))
    for a, b in zip(frames, alone):
        for field in ("rotation", "translation", "intrinsics", "expression", "light_sh"):
            np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    again = generator.generate([2])
    for name in clips:
        np.testing.assert_array_equal(again[name][0], clips[name][2], err_msg=name)


def test_the_light_turns_as_spherical_harmonics_do():
    d = np.array([[0.3, 0.5, 0.81]])
    d /= np.linalg.norm(d)
    from datagen.camera import sh_basis

    coefficients = sh_basis(d)[0]  # a light concentrated around d (its band-limited projection)
    turned = sh_rotation_y(np.radians(30)) @ coefficients
    c, s = np.cos(np.radians(30)), np.sin(np.radians(30))
    moved = d @ np.array([[c, 0, -s], [0, 1, 0], [s, 0, c]])  # R d as a row: d R^T
    np.testing.assert_allclose(sh_basis(moved)[0] @ turned, sh_basis(d)[0] @ coefficients, rtol=1e-9)


def test_a_photo_warps_flow_is_the_inverse_of_the_next_warp():
    h = w = 48
    ys, xs = np.mgrid[0:h, 0:w] / 48.0
    field_a = np.stack([2 * np.sin(3 * xs) * ys, 1.5 * np.cos(2 * ys)], -1).astype(np.float32)
    field_b = field_a + np.stack([0.8 * xs, -0.6 * ys * xs], -1).astype(np.float32)
    flow = invert_warp_flow(field_a, field_b)
    x = pixel_centres(h, w)
    y = x + flow
    sampled = np.stack([map_coordinates(field_b[..., k], [y[..., 1] - 0.5, y[..., 0] - 0.5], order=1, mode="nearest")
                        for k in range(2)], -1)
    inner = (slice(4, -4), slice(4, -4))
    np.testing.assert_allclose((y - sampled)[inner], (x - field_a)[inner], atol=0.02)


def test_a_video_job_writes_clips_that_inspect_validates_and_pairs_read(tmp_path, real_model_dir):
    from click.testing import CliRunner

    from datagen.cli import cli
    from datagen.data.dataset import ShardedDataset
    from datagen.data.inspection import format_report, inspect_dataset
    from datagen.run.job import run_job

    job = tmp_path / "video.toml"
    job.write_text('name = "v"\nnum_samples = 3\n[render]\nwidth = 48\nheight = 48\n[output]\n'
                   'samples_per_shard = 6\n[video]\nframes = 3\n[cluster]\nworkers = 1\n')
    from datagen.spec import load_spec

    spec = load_spec(job)
    assert spec.samples_per_shard == 2 and spec.num_shards == 2
    run_job(spec, tmp_path / "out", model_dir=str(real_model_dir), workers=1, log=lambda *_: None)
    report = inspect_dataset(tmp_path / "out")
    text = format_report(report)
    assert report.ok and "per-frame change (3-frame clips)" in text and "blink rate" in text, text
    ds = ShardedDataset(tmp_path / "out")
    assert len(ds) == 3 and ds.frames == 3 and ds[0]["image"].shape == (3, 48, 48, 3)
    assert ds.vertices(1).shape == (3, len(ds.model().mean), 3)
    pairs = ds.pairs()
    assert len(pairs) == 6
    pair = pairs[3]  # clip 1, frames 1 and 2
    np.testing.assert_array_equal(pair["image"], ds[1]["image"][1:3])
    np.testing.assert_array_equal(pair["flow_forward"], ds[1]["flow_forward"][1])
    np.testing.assert_allclose(pair["delta/params/rotation"], ds[1]["params/rotation"][2] - ds[1]["params/rotation"][1])
    assert pair["frame"] == 1 and pair["params/identity"].shape == ds[0]["params/identity"].shape
    result = CliRunner().invoke(cli, ["preview", str(job), "-n", "2", "-o", str(tmp_path / "clips.webp"),
                                      "--model-dir", str(real_model_dir)])
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(cli, ["mesh", str(tmp_path / "out"), "1", "-o", str(tmp_path / "clip.obj"),
                                      "--model-dir", str(real_model_dir)])
    assert result.exit_code == 0 and [(tmp_path / f"clip-frame{t:02d}.obj").exists() for t in range(3)] == [True] * 3
    animation = Image.open(tmp_path / "clips.webp")
    assert animation.n_frames == 3 and (tmp_path / "clips-flow.png").exists() and (tmp_path / "clips-strip.png").exists()


@pytest.mark.parametrize("setting, message", [
    ("frames = 0", "video.frames: must be >= 1"),
    ("fps = 0.0", "video.fps: must be > 0"),
    ("frames = 100", "video.frames: a clip of 100 frames is longer than a shard holds"),
    ("head_speed_std_deg = [1.0, 2.0]", "video.head_speed_std_deg: must be three numbers"),
])
def test_bad_video_settings_are_one_clear_error(setting, message):
    with pytest.raises(SpecError, match=message):
        parse_spec(f'name = "v"\n[output]\nsamples_per_shard = 64\n[video]\n{setting}\n', "<v>")


def test_clip_fields_have_a_frame_axis_and_pairs_one_less(ict_model):
    fields = shard_fields(video_spec(frames=5), ict_model)
    assert fields["image"].shape == (5, SIZE, SIZE, 3) and fields["flow_forward"].shape == (4, SIZE, SIZE, 2)
    assert fields["params/identity"].shape == (ict_model.num_identity,) and fields["sample_index"].shape == ()
