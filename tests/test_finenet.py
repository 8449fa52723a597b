"""FineNet (reconstruction/finenet.py, fine_data.py, fine_training.py, fine_inference.py): known answers of
its geometry, its training on shards with fine ground truth, the detailed mesh, and the commands."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from datagen.cli import cli
from datagen.errors import DatagenError
from datagen.reconstruction.fine_data import CoarseMaps, FineTrainingSet, crop_map
from datagen.reconstruction.fine_evaluation import surface_errors
from datagen.reconstruction.fine_inference import subdivide
from datagen.reconstruction.finenet import (NORMAL_WEIGHT, FineNet, depth_normals, fine_input, fine_losses,
                                            fine_normals)
from datagen.reconstruction.runner import train
from datagen.reconstruction.training import TrainConfig
from datagen.run.job import run_job
from datagen.spec import parse_spec

SIZE = 64  # FineNet's crops in these tests


def _plane_depth(normal, c, intrinsics, size):
    """Depth map of the plane n . p = c seen through a pinhole (the camera conventions of camera.py)."""
    fx, fy, cx, cy = intrinsics
    v, u = np.mgrid[0:size, 0:size] + 0.5
    rays = np.stack([(u - cx) / fx, -(v - cy) / fy, -np.ones_like(u)], -1)
    return c / (rays @ normal)


def test_the_normals_of_a_planes_depth_map_are_the_planes_normal():
    intrinsics = np.array([120.0, 120.0, 30.0, 34.0])
    normal = np.array([0.3, -0.2, 0.9])
    normal /= np.linalg.norm(normal)
    depth = _plane_depth(normal, -400.0 * normal[2], intrinsics, SIZE)
    assert depth.min() > 300
    n = depth_normals(torch.tensor(depth[None], dtype=torch.float64), torch.tensor(intrinsics[None]))[0].numpy()
    inside = n[1:-1, 1:-1].reshape(-1, 3)
    assert np.abs(inside - normal).max() < 1e-9
    assert np.all(n[0] == 0) and np.all(n[:, -1] == 0)  # no neighbours, no normal


def test_crop_maps_average_the_surface_only():
    depth = np.zeros((40, 40), np.float32)
    depth[:, :20] = 500.0  # a surface on the left half, background (0) on the right
    values, share = crop_map(depth, depth > 0, (0.0, 0.0, 40.0), 20)
    assert np.all(values[:, :10] == 500.0) and np.all(values[:, 10:] == 0) and np.all(share[:, :10] == 1)
    values, share = crop_map(depth, depth > 0, (5.5, 0.0, 30.0), 20)  # pixel 9 straddles the edge
    edge = values[:, 9]
    assert np.allclose(edge, 500.0) and 0 < share[0, 9] < 1  # not pulled towards the background's 0


def test_subdivision_splits_each_selected_triangle_into_four_that_share_midpoints():
    vertices = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0]], float)
    triangles = np.array([[0, 1, 2], [1, 3, 2]])
    uv = vertices[:, :2].copy()
    v, t, u, tu, selected, pinned = subdivide(vertices, triangles, uv, triangles.copy(), np.array([True, True]))
    assert len(v) == 4 + 5 and len(t) == 8 and selected.all() and not pinned.any()  # 5 edges, one of them shared
    assert np.allclose(v[4:].sum(0), [2.5, 2.5, 0]) and np.allclose(u, v[:, :2])
    area = lambda p, f: 0.5 * np.abs(np.cross(p[f[:, 1]] - p[f[:, 0]], p[f[:, 2]] - p[f[:, 0]])[:, 2]).sum()  # noqa: E731
    assert np.isclose(area(v, t), 1.0)
    v, t, _, _, selected, pinned = subdivide(vertices, triangles, uv, triangles.copy(), np.array([True, False]))
    assert len(t) == 5 and selected.sum() == 4 and len(v) == 7
    # the unsplit triangle's vertices, and the midpoint on the edge it shares (a T-junction), stay put
    shared = np.flatnonzero(np.all(np.isclose(v, [0.5, 0.5, 0]), 1))
    assert pinned[[1, 2, 3]].all() and not pinned[0] and pinned[shared].all() and pinned.sum() == 4


@pytest.fixture(scope="module")
def fine_data(tmp_path_factory, real_model_dir):
    out = tmp_path_factory.mktemp("fine") / "data"
    spec = parse_spec(f'''name = "fine"
seed = 5
num_samples = 40
[model]
name = "{real_model_dir / "ict-facekit"}"
[render]
width = 128
height = 128
[output]
samples_per_shard = 20
[sampling.pose]
yaw_range_deg = [-30.0, 30.0]
[sampling.camera]
face_fraction = [0.55, 0.65]
[sampling.detail]
probability = 1.0
resolution = 256
age = [0.6, 1.0]
[cluster]
batch_size = 4
''', "<fine>")
    run_job(spec, out, workers=1, log=lambda m: None)
    return out


def _oracle_maps(data, positions):
    """The true coarse surface in FineNet's crops, as if CoarseNet had been perfect."""
    from datagen.data.dataset import ShardedDataset
    from datagen.reconstruction.data import face_crop_box

    ds = ShardedDataset(data)
    depth, normal = [], []
    for p in positions:
        s = ds[int(p)]
        box = face_crop_box(s["landmarks_2d"].astype(np.float64))
        d, share = crop_map(s["depth"], s["depth"] > 0, box, SIZE)
        n, _ = crop_map(s["normal"].astype(np.float32), s["depth"] > 0, box, SIZE)
        depth.append(np.where(share > 0.999, d, 0))
        normal.append(np.where(share[..., None] > 0.999, n, 0).astype(np.float16))
    return CoarseMaps(np.asarray(positions), np.stack(depth), np.stack(normal), "oracle")


def _batch(dataset, n):
    items = [dataset[i] for i in range(n)]
    return {k: torch.from_numpy(np.stack([np.asarray(item[k]) for item in items])) for k in items[0]}


def test_the_true_fine_surface_scores_zero_and_the_coarse_one_misses_the_detail(fine_data):
    positions = np.arange(8)
    dataset = FineTrainingSet(str(fine_data), positions, _oracle_maps(fine_data, positions), SIZE, augment=False)
    batch = _batch(dataset, 8)
    assert batch["mask"].float().mean() > 0.2
    perfect = fine_normals(batch["coarse_depth"], batch["coarse_normal"], batch["depth_fine"] - batch["coarse_depth"],
                           batch["intrinsics"])
    truth = surface_errors(batch["depth_fine"], perfect, batch)
    coarse = surface_errors(batch["coarse_depth"], batch["coarse_normal"], batch)
    own = surface_errors(batch["depth_fine"], depth_normals(batch["depth_fine"], batch["intrinsics"]), batch)
    assert truth["depth"].max() < 1e-4 and truth["detail"].max() < 1e-4
    assert (coarse["detail"] > 0.002).all() and (coarse["depth"] > truth["depth"]).all()  # 0.003-0.016 mm here
    residual = batch["depth_fine"] - batch["coarse_depth"]
    assert fine_losses(residual + 7.0, batch)["depth"] < 1e-4  # an offset one view cannot tell costs no depth error
    assert fine_losses(residual, batch)["normal"] < fine_losses(torch.zeros_like(residual), batch)["normal"]
    # The true detail turns the coarse normals towards normal_fine; the fine depth's own back-projected
    # normals are further off than the coarse ones (measured 4.2 against 3.5 degrees at 64 px): its facets.
    assert truth["normal"].mean() < coarse["normal"].mean() < own["normal"].mean()


def test_finenet_learns_to_take_out_a_coarse_error(fine_data):
    """A coarse surface with a 3 mm bump that the image does not show: fitted to 4 crops, FineNet
    learns to take it out (the depth error falls to a fifth in 20 steps)."""
    positions = np.arange(4)
    maps = _oracle_maps(fine_data, positions)
    v, u = np.mgrid[0:SIZE, 0:SIZE] + 0.5
    bump = 3.0 * np.exp(-((u - 32) ** 2 + (v - 36) ** 2) / (2 * 8.0 ** 2))
    maps = dataclasses.replace(maps, depth=np.where(maps.depth > 0, maps.depth + bump, 0).astype(np.float32))
    batch = _batch(FineTrainingSet(str(fine_data), positions, maps, SIZE, augment=False), 4)
    torch.manual_seed(0)
    net = FineNet(16)
    optimiser = torch.optim.AdamW(net.parameters(), 5e-3)
    x = fine_input(batch["image"], batch["coarse_depth"], batch["coarse_normal"])
    depth = []
    for _ in range(20):
        losses = fine_losses(net(x), batch)
        depth.append(losses["depth"].item())
        optimiser.zero_grad()
        (losses["depth"] + NORMAL_WEIGHT * losses["normal"]).backward()
        optimiser.step()
    assert depth[0] > 0.4 and depth[-1] < 0.4 * depth[0], depth


@pytest.fixture(scope="module")
def fine_run(fine_data, tmp_path_factory):
    coarse = tmp_path_factory.mktemp("coarse")
    train(TrainConfig(data=str(fine_data), out=str(coarse), steps=20, batch_size=16, size=64, width=16, points=50,
                      held_out=0.2, evaluate_samples=8, learning_rate=3e-3), log=lambda m: None)
    out = tmp_path_factory.mktemp("finerun")
    log = []
    final = train(TrainConfig(data=str(fine_data), out=str(out), epochs=2, batch_size=8, size=SIZE, width=16,
                              held_out=0.2, learning_rate=1e-3, fine=True, coarse=str(coarse / "best.pt")), log=log.append)
    return coarse / "best.pt", out, final, log


def test_finenet_trains_on_shards_and_its_checkpoint_carries_its_coarsenet(fine_run):
    coarse, out, final, log = fine_run
    assert any(line.startswith("reconstructing 40 samples with") for line in log)
    assert (out / "coarse-inputs" / "depth.npy").exists() and (out / "curve.png").exists()
    for key in ("fine_depth_error_mm", "coarse_depth_error_mm", "fine_normal_error_deg", "coarse_normal_error_deg",
                "fine_detail_error_mm", "normal_floor_deg"):
        assert np.isfinite(final[key]), key
    state = torch.load(out / "best.pt", weights_only=False)
    assert state["kind"] == "fine" and "optimiser" not in state["coarse"]
    assert state["coarse"]["net"].keys() == torch.load(coarse, weights_only=False)["net"].keys()


def test_a_resumed_fine_run_reuses_its_coarse_reconstructions(fine_run, fine_data):
    coarse, out, _, _ = fine_run
    log = []
    train(TrainConfig(data=str(fine_data), out=str(out), epochs=3, batch_size=8, size=SIZE, width=16, held_out=0.2,
                      fine=True, coarse=str(coarse)), log=log.append)
    assert not any(line.startswith("reconstructing") for line in log)
    assert any(line.startswith("resuming") for line in log) and any(line.startswith("epoch 3 step") for line in log)


def test_reconstruct_fine_writes_a_detailed_mesh_and_its_normals(fine_run, fine_data, ict_model, tmp_path):
    from datagen.data.dataset import ShardedDataset

    _, out, _, _ = fine_run
    sample = ShardedDataset(fine_data)[36]
    photo = tmp_path / "face.png"
    Image.fromarray(sample["image"]).save(photo)
    pts = tmp_path / "face.pts"
    pts.write_text("version: 1\nn_points: 68\n{\n" + "".join(f"{x + 0.5} {y + 0.5}\n" for x, y in sample["landmarks_2d"]) + "}\n")
    mesh = tmp_path / "out.obj"
    result = CliRunner().invoke(cli, ["reconstruct", str(photo), "--checkpoint", str(out / "best.pt"), "-o", str(mesh),
                                      "--landmarks", str(pts), "--fine"])
    assert result.exit_code == 0, result.output
    assert "out-detail.png" in result.output
    lines = mesh.read_text().splitlines()
    vertices = sum(line.startswith("v ") for line in lines)
    faces = sum(line.startswith("f ") for line in lines)
    # 64 px crops: a pixel covers ~3 mm of the face, as much as its triangles' edges, so no subdivision
    assert vertices == ict_model.num_vertices and faces == len(ict_model.triangles)
    assert Image.open(tmp_path / "out-detail.png").size == (8 * SIZE, 2 * SIZE)
    coarse_only = CliRunner().invoke(cli, ["reconstruct", str(photo), "--checkpoint", str(out / "best.pt"), "-o",
                                           str(tmp_path / "coarse.obj"), "--landmarks", str(pts)])
    assert coarse_only.exit_code == 0, coarse_only.output
    assert sum(line.startswith("v ") for line in (tmp_path / "coarse.obj").read_text().splitlines()) == ict_model.num_vertices


def test_the_detailed_mesh_moves_seen_face_vertices_along_their_rays_and_subdivides_for_finer_pixels(
        fine_run, fine_data, ict_model):
    from datagen.data.dataset import ShardedDataset
    from datagen.reconstruction.fine_inference import FineReconstructor, detailed_mesh

    _, out, _, _ = fine_run
    sample = ShardedDataset(fine_data)[36]
    result = FineReconstructor(out / "best.pt").reconstruct(sample["image"], sample["landmarks_2d"].astype(np.float64))
    before = result.coarse.vertices.astype(np.float64)
    after = result.vertices[:len(before)].astype(np.float64)
    unit = lambda a: a / np.linalg.norm(a, axis=1, keepdims=True)  # noqa: E731
    assert np.all((unit(before) * unit(after)).sum(1) > 1 - 1e-9)  # along the camera ray
    shift = np.linalg.norm(after, axis=1) - np.linalg.norm(before, axis=1)
    face = ict_model.region_vertices("face")
    assert np.all(np.abs(shift[~face]) < 1e-3) and np.abs(shift[face]).max() > 1e-4
    assert np.abs(result.residual[~result.face]).max() == 0
    finer = result.intrinsics * np.array([4, 4, 1, 1], np.float32)  # pixels a quarter the size
    _, triangles, uv, triangle_uv = detailed_mesh(ict_model, result.coarse.vertices, result.coarse_depth, result.residual,
                                                  finer)
    assert len(triangles) > len(ict_model.triangles) + 3 * face[ict_model.triangles].all(1).sum()
    assert len(triangle_uv) == len(triangles) and triangle_uv.max() < len(uv)


def test_evaluate_reports_fine_errors_next_to_the_coarse_ones(fine_run, fine_data):
    _, out, _, _ = fine_run
    result = CliRunner().invoke(cli, ["evaluate", "--checkpoint", str(out / "best.pt"), "--data", str(fine_data),
                                      "--samples", "4"])
    assert result.exit_code == 0, result.output
    assert re.search(r"fine detail \(\d held-out samples, face pixels\): depth error [\d.]+ mm \(coarse reconstruction "
                     r"[\d.]+ mm\), detail error [\d.]+ mm", result.output), result.output


def test_fine_commands_given_the_wrong_inputs_say_so_once(fine_run, tiny_data_without_detail, tmp_path):
    coarse, _, _, _ = fine_run
    photo = tmp_path / "x.png"
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(photo)
    result = CliRunner().invoke(cli, ["reconstruct", str(photo), "--checkpoint", str(coarse), "--fine"])
    assert result.exit_code == 1 and "a CoarseNet checkpoint; the detail needs a FineNet one" in result.output
    result = CliRunner().invoke(cli, ["train", "--data", str(tiny_data_without_detail), "--out", str(tmp_path / "r"),
                                      "--coarse", str(coarse)])
    assert result.exit_code == 2 and "--coarse is FineNet's and the tracker's: give --fine or --tracker too" in result.output
    with pytest.raises(DatagenError, match="builds on a CoarseNet"):
        train(TrainConfig(data=str(tiny_data_without_detail), out=str(tmp_path / "r"), fine=True, batch_size=4))
    with pytest.raises(DatagenError, match="has no fine ground truth"):  # said before any reconstruction
        train(TrainConfig(data=str(tiny_data_without_detail), out=str(tmp_path / "r"), fine=True, coarse=str(coarse),
                          batch_size=4))
    maps = CoarseMaps(np.arange(2), np.zeros((2, SIZE, SIZE), np.float32), np.zeros((2, SIZE, SIZE, 3), np.float16), "")
    with pytest.raises(DatagenError, match="has no fine ground truth .* jobs/details.toml"):
        FineTrainingSet(str(tiny_data_without_detail), np.arange(2), maps, SIZE)


@pytest.fixture(scope="module")
def tiny_data_without_detail(tmp_path_factory, tiny_model_dir):
    from conftest import tiny_spec

    out = tmp_path_factory.mktemp("plain") / "data"
    run_job(tiny_spec(tiny_model_dir, num_samples=12, samples_per_shard=12, size=64), out, workers=1, log=lambda m: None)
    return out
