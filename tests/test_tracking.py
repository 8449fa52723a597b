"""The tracking network: trained on a video dataset's frame pairs, tracking a video file or a frame folder,
scored on held-out clips next to CoarseNet frame by frame (on the tiny model: fast, not accurate)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from datagen.cli import cli
from datagen.errors import DatagenError
from datagen.reconstruction.data import translation_of
from datagen.reconstruction.inference import load_checkpoint
from datagen.reconstruction.runner import train
from datagen.reconstruction.tracking import TrackerNet, TrackingPairs, previous_vector
from datagen.reconstruction.tracking_evaluation import evaluate_tracking, tracking_report
from datagen.reconstruction.tracking_inference import Tracker, read_frames
from datagen.reconstruction.training import TrainConfig
from datagen.run.job import run_job
from datagen.spec import parse_spec

SIZE = 48


def tiny_video_spec(model_dir, clips=16, frames=4):
    return parse_spec(f'''name = "tiny-video"
seed = 5
num_samples = {clips}
[model]
name = "{model_dir}"
[render]
width = {SIZE}
height = {SIZE}
[output]
samples_per_shard = {4 * frames}
[video]
frames = {frames}
head_speed_std_deg = [30.0, 15.0, 5.0]
''', "<tiny-video>")


@pytest.fixture(scope="module")
def video_data(tmp_path_factory, tiny_model_dir):
    out = tmp_path_factory.mktemp("tracking") / "video"
    run_job(tiny_video_spec(tiny_model_dir), out, workers=1, log=lambda m: None)
    return out


@pytest.fixture(scope="module")
def runs(video_data, tiny_model_dir, tmp_path_factory, tiny_model):
    """(coarse run, tracker run): a CoarseNet trained on the clips' first frames' job as stills, then the tracker."""
    root = tmp_path_factory.mktemp("runs")
    stills = root / "stills"
    spec = tiny_video_spec(tiny_model_dir, clips=64, frames=1)
    run_job(spec, stills, workers=1, log=lambda m: None)
    common = dict(batch_size=16, width=8, workers=0, held_out=0.2, learning_rate=3e-3, progress_seconds=0.0, points=0)
    train(TrainConfig(data=str(stills), out=str(root / "coarse"), epochs=3, size=SIZE, **common), log=lambda m: None)
    log = []
    final = train(TrainConfig(data=str(video_data), out=str(root / "track"), epochs=3, tracker=True,
                              coarse=str(root / "coarse" / "best.pt"), **common), log=log.append)
    return root / "coarse", root / "track", final, log


def test_an_untrained_tracker_averages_coarsenet_with_the_previous_frame(tiny_model):
    net = TrackerNet(tiny_model.num_identity, tiny_model.num_expression, width=8).eval()
    k, e = tiny_model.num_identity, tiny_model.num_expression
    previous, image = torch.randn(2, k + e + 6), torch.randn(2, 3, SIZE, SIZE)
    out = net(image, previous)
    coarse = net.head(net.encoder(image))
    torch.testing.assert_close(out["identity"], previous[:, :k], rtol=0, atol=0)  # the clip's, carried
    torch.testing.assert_close(out["rotation"], (coarse[:, k + e:k + e + 3] + previous[:, k + e:k + e + 3]) / 2)
    torch.testing.assert_close(out["expression"], (torch.sigmoid(coarse[:, k:k + e]) + previous[:, k:k + e]) / 2)


def test_the_previous_parameters_are_read_in_the_crops_camera():
    translation, intrinsics = np.array([12.0, -30.0, -900.0]), np.array([300.0, 300.0, 40.0, 20.0])
    vector = previous_vector(np.zeros(3), np.zeros(2), np.zeros(3), translation, intrinsics, SIZE)
    np.testing.assert_allclose(translation_of(vector[-3:-1], vector[-1], intrinsics, SIZE), translation, rtol=1e-5)


def test_training_pairs_crop_the_next_frame_around_the_previous_ones_landmarks(video_data):
    pairs = TrackingPairs(video_data, [0, 1], SIZE, augment=False)
    assert len(pairs) == 2 * 3
    item = pairs[1]  # clip 0, frames 1 -> 2
    assert item["image"].shape == (3, SIZE, SIZE) and item["previous"].shape == (3 + 3 + 6,)
    again = TrackingPairs(video_data, [0, 1], SIZE, augment=False)[1]
    np.testing.assert_array_equal(item["previous"], again["previous"])  # held-out pairs are fixed


def test_the_tracker_trains_and_its_checkpoint_carries_its_coarsenet(runs, video_data):
    coarse, track, final, log = runs
    state = load_checkpoint(track / "best.pt")
    assert state["kind"] == "tracker" and state["coarse"]["config"]["size"] == SIZE
    assert np.isfinite(final["vertex_error_mm"]) and np.isfinite(final["train_loss"])
    with pytest.raises(DatagenError, match="a coarse run's, not a tracker one's"):
        train(TrainConfig(data=str(video_data), out=str(coarse), tracker=True,
                          coarse=str(coarse / "best.pt"), batch_size=16, width=8, workers=0, points=0), log=lambda m: None)


def test_a_stills_dataset_is_refused_by_the_tracker(runs, tmp_path):
    coarse, track, _, _ = runs
    with pytest.raises(DatagenError, match="holds stills"):
        train(TrainConfig(data=str(track.parent / "stills"), out=str(tmp_path / "t"), tracker=True,
                          coarse=str(coarse / "best.pt"), batch_size=16, width=8, workers=0, points=0), log=lambda m: None)


def test_tracking_is_scored_next_to_coarsenet_frame_by_frame(runs, video_data):
    _, track, _, _ = runs
    result = evaluate_tracking(Tracker(track / "best.pt"), video_data, clips=3)
    assert result["clips"] == 1 and result["frames"] == 4  # 5% of 16 clips held out
    for name in ("tracker", "coarse"):
        assert all(np.isfinite(v) for v in result[name].values())
        assert result[name]["jitter_px"] >= 0
    lines = tracking_report(result)
    assert "jitter" in lines[1] and lines[2].lstrip().startswith("CoarseNet frame by frame")


def test_reconstruct_tracks_a_frame_folder_and_a_video_file(runs, video_data, tmp_path):
    import av

    from datagen.data.dataset import ShardedDataset

    _, track, _, _ = runs
    clip = ShardedDataset(video_data)[0]
    frames = tmp_path / "frames"
    frames.mkdir()
    for t, image in enumerate(clip["image"]):
        Image.fromarray(image).save(frames / f"{t:03d}.png")
    pts = tmp_path / "first.pts"
    pts.write_text("version: 1\nn_points: 68\n{\n" + "".join(f"{x + 0.5} {y + 0.5}\n" for x, y in clip["landmarks_2d"][0])
                   + "}\n")
    video = tmp_path / "clip.mp4"
    with av.open(str(video), "w") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width = stream.height = SIZE
        stream.pix_fmt = "yuv420p"
        for image in clip["image"]:
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    assert len(list(read_frames(video))) == 4
    for source, out in ((frames, tmp_path / "from-frames"), (video, tmp_path / "from-video")):
        result = CliRunner().invoke(cli, ["reconstruct", str(source), "--checkpoint", str(track / "best.pt"),
                                          "--landmarks", str(pts), "-o", str(out)])
        assert result.exit_code == 0, result.output
        assert "4 frames tracked" in result.output
        assert sorted(p.name for p in out.glob("frame-*.obj")) == [f"frame-{t:05d}.obj" for t in range(4)]
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")
    result = CliRunner().invoke(cli, ["reconstruct", str(broken), "--checkpoint", str(track / "best.pt"),
                                      "--landmarks", str(pts), "-o", str(tmp_path / "x")])
    assert result.exit_code != 0 and "unreadable video" in result.output
    assert not (tmp_path / "x").exists()  # nothing written for a video that cannot be read
