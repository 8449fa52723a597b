"""The reference reconstructor: training on shards, mesh export, and metrics with known answers."""

import dataclasses
import re

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from datagen.cli import cli
from datagen.run.job import run_job
from datagen.errors import DatagenError
from datagen.reconstruction.data import (FaceTrainingSet, camera_targets, face_crop_box, split_indices,
                                         translation_of)
from datagen.reconstruction.evaluation import landmark_nme, rigid_align, vertex_error
from datagen.reconstruction.network import FaceDecoder
from datagen.reconstruction.inference import assumed_crop_intrinsics
from datagen.reconstruction.training import (MAX_BAD_STEPS, TrainConfig, Trainer, dense_vertex_ids,
                                             evaluate_network, true_projection)
from datagen.synth.sampling import rotation_matrix
from conftest import tiny_spec


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory, tiny_model_dir):
    out = tmp_path_factory.mktemp("recon") / "data"
    run_job(tiny_spec(tiny_model_dir, num_samples=96, samples_per_shard=32, size=64), out, workers=1,
            log=lambda m: None)
    return out


@pytest.fixture(scope="module")
def trained(tiny_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    config = TrainConfig(data=str(tiny_data), out=str(out), epochs=4, batch_size=16, size=64, width=8, workers=0,
                         held_out=0.2, learning_rate=3e-3, progress_seconds=0.0)
    trainer = Trainer(config, log=trainer_log.append)
    trainer.run()
    return trainer, out


trainer_log = []  # what the trained fixture's Trainer logged


def test_a_tiny_model_trains_and_its_loss_falls(trained):
    trainer, out = trained
    losses = [row["train_loss"] for row in trainer.history]
    assert len(losses) == 4 and losses[-1] < 0.7 * losses[0], losses
    for name in ("best.pt", "last.pt", "metrics.csv", "curve.png", "evaluation.json"):
        assert (out / name).stat().st_size > 0, name
    assert (out / "metrics.csv").read_text().count("\n") == 5
    assert Image.open(out / "curve.png").size == (640, 360)
    assert (out / "best.pt").stat().st_size < 0.5 * (out / "last.pt").stat().st_size  # no optimiser state


def test_training_reports_progress_within_each_epoch(trained):
    trainer, _ = trained
    first_epoch_end = next(i for i, line in enumerate(trainer_log) if line.startswith("epoch 1 step"))
    within = trainer_log[:first_epoch_end]
    assert within and re.match(r"epoch 1: batch 1/\d+, loss [\d.]+ \(last 1 batches\), [\d.]+ samples/s, "
                               r"epoch ends in 0:\d\d$", within[0]), within[:1]


def test_training_resumes_from_its_last_checkpoint(trained):
    trainer, out = trained
    again = Trainer(trainer.config.__class__(**{**trainer.config.__dict__, "epochs": 5}), log=lambda m: None)
    assert again.resume() and again.epoch == 4
    again.run()
    assert again.epoch == 5 and len(again.history) == 5


def test_reconstruct_writes_a_mesh_with_the_models_vertices(trained, tiny_data, tiny_model, tmp_path):
    from datagen.data.dataset import ShardedDataset

    trainer, out = trained
    sample = ShardedDataset(tiny_data)[3]
    photo = tmp_path / "face.png"
    Image.fromarray(sample["image"]).save(photo)
    pts = tmp_path / "face.pts"
    pts.write_text("version: 1\nn_points: 68\n{\n" + "".join(f"{x + 0.5} {y + 0.5}\n" for x, y in sample["landmarks_2d"]) + "}\n")
    for suffix in (".obj", ".ply"):
        mesh = tmp_path / f"out{suffix}"
        result = CliRunner().invoke(cli, ["reconstruct", str(photo), "--checkpoint", str(out / "best.pt"), "-o", str(mesh),
                                          "--landmarks", str(pts)])
        assert result.exit_code == 0, result.output
        assert f"[landmarks: {pts}]" in result.output
        text = mesh.read_text()
        if suffix == ".obj":
            assert sum(line.startswith("v ") for line in text.splitlines()) == tiny_model.num_vertices
            assert sum(line.startswith("vt ") for line in text.splitlines()) == len(tiny_model.uv)
            assert sum(line.startswith("f ") for line in text.splitlines()) == len(tiny_model.triangles)
        else:
            assert f"element vertex {tiny_model.num_vertices}" in text
        assert (tmp_path / "out.json").exists() and Image.open(tmp_path / "out-overlay.png").size[0] > 0


def test_reconstruct_takes_the_largest_face_or_every_face(trained, tmp_path):
    from conftest import SHARED

    trainer, out = trained
    photo = tmp_path / "group.jpg"  # two faces found in it (without its .pts: detected)
    photo.write_bytes((SHARED / "faces" / "breakingbad.jpg").read_bytes())
    args = ["reconstruct", str(photo), "--checkpoint", str(out / "best.pt"), "-o"]
    result = CliRunner().invoke(cli, args + [str(tmp_path / "largest" / "face.obj")])
    assert result.exit_code == 0, result.output
    assert "2 faces found, the largest reconstructed" in result.output
    assert "[landmarks: detected (MediaPipe face detector + face mesh)]" in result.output
    assert sorted(p.name for p in (tmp_path / "largest").iterdir()) == ["face-overlay.png", "face.json", "face.obj"]
    result = CliRunner().invoke(cli, args + [str(tmp_path / "all" / "face.obj"), "--all-faces"])
    assert result.exit_code == 0, result.output
    assert {"face.obj", "face-1.obj", "face-1.json", "face-1-overlay.png"} <= {p.name for p in (tmp_path / "all").iterdir()}


def test_a_checkpoint_whose_weights_do_not_fit_its_config_is_one_clear_error(trained, tmp_path):
    from datagen.reconstruction.inference import Reconstructor

    trainer, out = trained
    state = torch.load(out / "best.pt", weights_only=False)
    state["config"]["points"] = 0  # the head's size no longer matches
    torch.save(state, tmp_path / "odd.pt")
    with pytest.raises(DatagenError, match="does not match its config"):
        Reconstructor(tmp_path / "odd.pt")


def test_ground_truth_parameters_score_zero(tiny_data, tiny_model):
    rng = np.random.default_rng(0)
    shape = tiny_model.vertices(rng.standard_normal(3), rng.uniform(0, 1, 3))[None]
    moved = shape @ rotation_matrix([0.3, -0.2, 0.1]).T.astype(np.float32) + [10.0, -5.0, 30.0]
    assert vertex_error(moved, shape)[0] < 1e-3  # a rigid motion is not an error
    np.testing.assert_allclose(rigid_align(moved.astype(np.float64), shape.astype(np.float64)), shape, atol=1e-3)
    assert vertex_error(np.broadcast_to(tiny_model.mean, shape.shape), shape)[0] > 0.5  # a different face is

    # the true parameters, through the network's camera form and decoder, reproject onto the true landmarks
    data = FaceTrainingSet(tiny_data, split_indices(96)[1], size=64, augment=False)
    decoder = FaceDecoder(tiny_model, tiny_model.landmark_ids)
    for i in range(3):
        s = data[i]
        position, scale = camera_targets(data.shards[int(data.positions[i])]["params/translation"].astype(np.float64),
                                         s["intrinsics"].astype(np.float64), 64)
        t = translation_of(torch.tensor(position[None]), torch.tensor([scale]), torch.tensor(s["intrinsics"][None]), 64)
        points = decoder.project(decoder(torch.tensor(s["identity"][None]), torch.tensor(s["expression"][None])),
                                 torch.tensor(s["rotation"][None]), t.float(), torch.tensor(s["intrinsics"][None]))
        assert landmark_nme(points.numpy(), s["landmarks"][None])[0] < 1e-3


def true_points(tiny_model, sample, point_ids, size=64):
    """(1, D, 2) crop pixels of ``point_ids`` for a FaceTrainingSet sample, from its true parameters."""
    batch = {k: torch.as_tensor(np.asarray(v, np.float32))[None] for k, v in sample.items() if k != "image"}
    return true_projection(FaceDecoder(tiny_model, point_ids), batch, size)


class Oracle(torch.nn.Module):
    """A network that outputs one sample's truth, with dense points (exact, sigma 0.14 px) for ``point_ids``."""

    def __init__(self, truth, points=None, point_ids=(), wrong_regression=False):
        super().__init__()
        self.truth, self.points, self.point_ids, self.num_points = truth, points, torch.as_tensor(point_ids), len(point_ids)
        self.wrong_regression = wrong_regression

    def forward(self, image):
        out = {k: torch.as_tensor(np.asarray(self.truth[k], np.float32))[None].expand(len(image), *np.shape(self.truth[k]))
               for k in ("identity", "expression", "rotation", "position", "scale", "light")}
        if self.wrong_regression:  # only the dense points are right: the fit must find the face
            out.update(identity=0 * out["identity"], expression=0.5 + 0 * out["expression"],
                       rotation=out["rotation"] + 0.1, position=out["position"] + 0.03, scale=out["scale"] + 0.1)
        if self.num_points:
            out["points"] = (self.points / 64 - 0.5).expand(len(image), -1, -1)
            out["point_log_sigma"] = torch.full((len(image), self.num_points), -2.0)
        return out


def test_a_network_that_predicts_the_truth_scores_zero(tiny_data, tiny_model):
    held_out = FaceTrainingSet(tiny_data, [90], size=64, augment=False)
    truth = held_out[0]
    point_ids = dense_vertex_ids(tiny_model, 100)
    for oracle in (Oracle(truth), Oracle(truth, true_points(tiny_model, truth, point_ids), point_ids)):
        r = evaluate_network(oracle.eval(), tiny_model, held_out, 64, torch.device("cpu"))
        assert not oracle.training  # a Reconstructor's network stays in eval mode for the photos after it
        assert r["samples"] == 1 and r["mean_face_error_mm"] > 0.1
        for key in ("vertex_error_mm", "error_ratio", "similarity_error_mm", "identity_error_ratio",
                    "expression_error_ratio", "landmark_nme"):
            assert r[key] < 1e-3, (key, r[key])


def test_the_fit_finds_a_face_from_its_dense_points_alone(tiny_data, tiny_model):
    held_out = FaceTrainingSet(tiny_data, [90, 91, 92], size=64, augment=False)
    point_ids = dense_vertex_ids(tiny_model, 100)
    for truth in held_out:
        oracle = Oracle(truth, true_points(tiny_model, truth, point_ids), point_ids, wrong_regression=True)
        one = FaceTrainingSet(tiny_data, [truth["index"]], size=64, augment=False)
        r = evaluate_network(oracle, tiny_model, one, 64, torch.device("cpu"))
        assert r["regressed_error_ratio"] > 0.5, r  # the regressed face is the mean face, in a wrong pose
        # found up to its size, which one perspective view cannot tell from the distance (the tiny model's
        # three identity modes stretch the three axes: together they scale the head)
        assert r["similarity_error_ratio"] < 0.05 and r["landmark_nme"] < 0.005, r


def test_similarity_alignment_leaves_out_the_size_alone(tiny_model):
    rng = np.random.default_rng(1)
    shape = tiny_model.vertices(rng.standard_normal(3), rng.uniform(0, 1, 3))[None].astype(np.float64)
    bigger = 1.1 * shape @ rotation_matrix([0.2, 0.1, -0.3]).T + [3.0, 4.0, -20.0]
    assert vertex_error(bigger, shape, scale=True)[0] < 1e-6
    assert vertex_error(bigger, shape)[0] > 0.02 * np.abs(shape).mean()  # rigid alignment counts the size


def test_training_crops_frame_the_face_as_the_reconstructor_does(tiny_data):
    data = FaceTrainingSet(tiny_data, np.arange(8), size=64, augment=False)
    for i in range(8):
        s = data[i]
        x0, y0, side = face_crop_box(s["landmarks"].astype(np.float64))
        assert abs(side - 64) < 0.01 and abs(x0) < 0.01 and abs(y0) < 0.01  # the crop is the landmarks' box
        # the intrinsics moved with the crop: the true parameters still project onto the landmarks
        sample = data.shards[int(data.positions[i])]
        position, _ = camera_targets(sample["params/translation"].astype(np.float64),
                                     s["intrinsics"].astype(np.float64), 64)
        assert np.all(np.abs(position) < 0.5)  # the head's pivot lies inside the crop


def test_a_photos_assumed_camera_is_the_middle_of_the_training_prior(tiny_model_dir, tmp_path):
    """Rendered with the camera the reconstructor assumes (26 degrees, landmarks half the height),
    a face's crop gets back its true intrinsics."""
    import dataclasses

    from datagen.data.dataset import ShardedDataset

    spec = tiny_spec(tiny_model_dir, num_samples=4, samples_per_shard=4, size=64)
    camera = dataclasses.replace(spec.sampling.camera, fov_deg=(26.0, 26.0), face_fraction=(0.5, 0.5),
                                 principal_point_jitter=0.0, center_jitter=0.0)
    pose = dataclasses.replace(spec.sampling.pose, yaw_range_deg=(0.0, 0.0), pitch_range_deg=(0.0, 0.0),
                               roll_range_deg=(0.0, 0.0))
    identity = dataclasses.replace(spec.sampling.identity, std=0.0)
    expression = dataclasses.replace(spec.sampling.expression, neutral_fraction=1.0)
    sampling = dataclasses.replace(spec.sampling, camera=camera, pose=pose, identity=identity, expression=expression)
    run_job(dataclasses.replace(spec, sampling=sampling), tmp_path / "d", workers=1, log=lambda m: None)
    sample = ShardedDataset(tmp_path / "d")[0]
    box = face_crop_box(sample["landmarks_2d"].astype(np.float64))
    true_focal = sample["params/intrinsics"][0] * 64 / box[2]
    assumed = assumed_crop_intrinsics(sample["landmarks_2d"], box, 64)
    assert abs(assumed[0] / true_focal - 1) < 0.02, (assumed, true_focal)


def test_a_diverging_run_stops_with_one_clear_error(tiny_data, tmp_path, monkeypatch):
    config = TrainConfig(data=str(tiny_data), out=str(tmp_path), epochs=40, batch_size=16, size=64, width=8,
                         workers=0, held_out=0.2)
    trainer = Trainer(config, log=lambda m: None)
    monkeypatch.setattr(trainer, "losses", lambda batch, predicted: {"vertices": torch.tensor(float("nan"))})
    with pytest.raises(DatagenError, match="diverged"):
        trainer.run()
    assert trainer.bad_steps == MAX_BAD_STEPS + 1


def test_loader_workers_draw_new_augmentations_every_epoch(trained):
    trainer, _ = trained
    loader = trainer.loader(workers=1)
    images = []
    for epoch in (0, 1):
        trainer.train_set.epoch = epoch
        images.append({int(i): image for batch in loader for i, image in zip(batch["index"], batch["image"])})
    both = images[0].keys() & images[1].keys()  # drop_last leaves out other samples each epoch
    assert len(both) > 30 and all(not torch.equal(images[0][i], images[1][i]) for i in both)


def test_evaluate_scores_the_aflw2000_benchmark_under_its_protocol(trained, tmp_path):
    from conftest import SHARED

    _, out = trained
    args = ["evaluate", "--checkpoint", str(out / "best.pt"), "--benchmark", "aflw2000", str(SHARED / "aflw2000"),
            "--csv", str(tmp_path / "rows.csv"), "--overlays", str(tmp_path / "ov")]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "AFLW2000-3D (8 images, crop from truth)" in result.output
    assert re.search(r"reconstruction: [\d.]+% \(mean of the yaw bins; plain mean [\d.]+%\); \|yaw\| 0-30: [\d.]+% \(n=8\)",
                     result.output)
    assert "mean face at the network's pose: " in result.output and "SynergyNet 3.41%" in result.output
    rows = (tmp_path / "rows.csv").read_text().splitlines()
    assert rows[0] == "image,yaw_deg,yaw_bin,nme,mean_face_nme,crop_from" and len(rows) == 9
    assert (tmp_path / "ov" / "sheet.png").exists() and (tmp_path / "ov" / "image00202-overlay.png").exists()


def test_evaluate_scores_held_out_renders_from_the_command_line(trained, tiny_data):
    _, out = trained
    result = CliRunner().invoke(cli, ["evaluate", "--checkpoint", str(out / "best.pt"), "--data", str(tiny_data),
                                      "--samples", "16"])
    assert result.exit_code == 0, result.output
    assert re.search(r"synthetic \(\d+ held-out samples\): vertex error [\d.]+ mm after rigid alignment", result.output)
    assert "ratio of the regressed parameters before the fit to the dense points" in result.output


def test_datasets_train_together_each_keeping_its_held_out_split(tiny_data, tiny_model_dir, tmp_path):
    from datagen.reconstruction.data import DatasetMix

    other = tmp_path / "other"
    spec = tiny_spec(tiny_model_dir, num_samples=40, samples_per_shard=20, size=64)
    run_job(dataclasses.replace(spec, seed=8), other, workers=1, log=lambda m: None)
    mix = DatasetMix([tiny_data, other])
    assert len(mix) == 136
    np.testing.assert_array_equal(mix[100]["image"], DatasetMix(other)[4]["image"])
    train, held = mix.split(0.25)
    np.testing.assert_array_equal(held, np.r_[72:96, 126:136])  # each part's last quarter
    assert len(train) + len(held) == 136 and not set(train) & set(held)
    assert mix.taking_turns(held)[:4].tolist() == [72, 126, 73, 127]
    out = tmp_path / "run"
    result = CliRunner().invoke(cli, ["train", "--data", str(tiny_data), "--data", str(other), "--out", str(out),
                                      "--steps", "3", "--epochs", "50", "--batch-size", "16", "--size", "64",
                                      "--width", "8", "--workers", "0"])
    assert result.exit_code == 0, result.output
    state = torch.load(out / "last.pt", weights_only=False)
    assert state["step"] == 3 and state["config"]["data"] == [str(tiny_data), str(other)]


def test_datasets_of_different_models_are_not_mixed(tiny_data, real_model_dir, tmp_path):
    from datagen.reconstruction.data import DatasetMix

    other = tmp_path / "ict"
    spec = tiny_spec(real_model_dir / "ict-facekit", num_samples=4, samples_per_shard=4, size=32)
    run_job(spec, other, workers=1, log=lambda m: None)
    with pytest.raises(DatagenError, match="share one model"):
        DatasetMix([tiny_data, other])
