"""The reference reconstructor: training on shards, mesh export, and metrics with known answers."""

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from datagen.cli import cli
from datagen.job import run_job
from datagen.reconstruction.data import FaceTrainingSet, camera_targets, split_indices, translation_of
from datagen.reconstruction.evaluation import landmark_nme, rigid_align, vertex_error
from datagen.reconstruction.network import FaceDecoder
from datagen.reconstruction.training import TrainConfig, Trainer
from datagen.sampling import rotation_matrix
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
                         held_out=0.2, learning_rate=3e-3)
    trainer = Trainer(config, log=lambda m: None)
    trainer.run()
    return trainer, out


def test_a_tiny_model_trains_and_its_loss_falls(trained):
    trainer, out = trained
    losses = [row["train_loss"] for row in trainer.history]
    assert len(losses) == 4 and losses[-1] < 0.7 * losses[0], losses
    for name in ("best.pt", "last.pt", "metrics.csv", "curve.png", "evaluation.json"):
        assert (out / name).stat().st_size > 0, name
    assert (out / "metrics.csv").read_text().count("\n") == 5
    assert Image.open(out / "curve.png").size == (640, 360)


def test_training_resumes_from_its_last_checkpoint(trained):
    trainer, out = trained
    again = Trainer(trainer.config.__class__(**{**trainer.config.__dict__, "epochs": 5}), log=lambda m: None)
    assert again.resume() and again.epoch == 4
    again.run()
    assert again.epoch == 5 and len(again.history) == 5


def test_reconstruct_writes_a_mesh_with_the_models_vertices(trained, tiny_data, tiny_model, tmp_path):
    from datagen.dataset import ShardedDataset

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
        text = mesh.read_text()
        if suffix == ".obj":
            assert sum(line.startswith("v ") for line in text.splitlines()) == tiny_model.num_vertices
            assert sum(line.startswith("vt ") for line in text.splitlines()) == len(tiny_model.uv)
            assert sum(line.startswith("f ") for line in text.splitlines()) == len(tiny_model.triangles)
        else:
            assert f"element vertex {tiny_model.num_vertices}" in text
        assert (tmp_path / "out.json").exists() and Image.open(tmp_path / "out-overlay.png").size[0] > 0


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
