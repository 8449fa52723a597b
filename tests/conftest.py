"""Shared fixtures. The only place tests create a GL context (one per session)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from datagen.models.morphable_model import MorphableModel, save_model
from datagen.spec import parse_spec

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("DATAGEN_SHARED", REPO.parent / "shared"))


@pytest.fixture(scope="session")
def ctx():
    from datagen.synth.gpus import create_context

    return create_context()


def make_tiny_model(rings: int = 48, segments: int = 64) -> MorphableModel:
    """An ellipsoid 'head' (mm) with a nose bump, 68 landmarks laid out on its front, 3 identity
    modes (scale along x, y, z) and 3 blendshapes (jawOpen, mouthSmile_L/_R)."""
    theta = np.linspace(0, np.pi, rings)[:, None]  # from the top (+y) down
    phi = np.linspace(-np.pi, np.pi, segments, endpoint=False)[None, :]  # phi = 0 faces +z
    unit = np.stack(np.broadcast_arrays(np.sin(theta) * np.sin(phi), np.cos(theta), np.sin(theta) * np.cos(phi)), -1)
    unit = unit.reshape(-1, 3)
    radii = np.array([75.0, 100.0, 90.0])
    mean = unit * radii
    nose = np.exp(-((unit[:, 0] / 0.12) ** 2 + ((unit[:, 1] + 0.05) / 0.2) ** 2)) * (unit[:, 2] > 0)
    mean[:, 2] += 25.0 * nose
    tris = []
    for r in range(rings - 1):
        for s in range(segments):
            a, b = r * segments + s, r * segments + (s + 1) % segments
            c, d = a + segments, b + segments
            tris += [(a, c, b), (b, c, d)]  # counter-clockwise seen from outside
    triangles = np.array(tris, np.int32)
    triangles = triangles[(triangles[:, 0] != triangles[:, 1]) & (triangles[:, 1] != triangles[:, 2])]

    layout = _landmark_layout()
    front = mean[:, 2] > 0
    ids = np.array([np.flatnonzero(front)[np.argmin(((mean[front, :2] - p) ** 2).sum(1))] for p in layout], np.int32)
    identity = np.stack([unit * (radii * np.eye(3)[k] * 0.08) for k in range(3)]).astype(np.float32)
    lower = np.clip(-(mean[:, 1] + 20.0) / 60.0, 0, 1) * front
    jaw = np.zeros_like(mean)
    jaw[:, 1] = -12.0 * lower
    smile_l, smile_r = np.zeros_like(mean), np.zeros_like(mean)
    mouth = np.exp(-((mean[:, 1] + 45) / 12) ** 2) * front
    smile_l[:, 1] = 6 * mouth * (mean[:, 0] > 0)
    smile_r[:, 1] = 6 * mouth * (mean[:, 0] < 0)
    uv = np.stack([(phi + np.pi).repeat(rings, 0).reshape(-1) / (2 * np.pi), 1 - np.repeat(theta, segments, 1).reshape(-1) / np.pi], 1)
    return MorphableModel(
        name="tiny", mean=mean.astype(np.float32), identity_basis=identity,
        expression_basis=np.stack([jaw, smile_l, smile_r]).astype(np.float32),
        triangles=triangles, triangle_region=np.zeros(len(triangles), np.uint8),
        vertex_region=np.zeros(len(mean), np.uint8), uv=uv.astype(np.float32), triangle_uv=triangles.copy(),
        landmark_ids=ids, pivot=np.zeros(3, np.float32), expression_names=("jawOpen", "mouthSmile_L", "mouthSmile_R"),
        region_names=("face",), licence="test", source="tests/conftest.py")


def _landmark_layout() -> np.ndarray:
    """68 iBUG-style (x, y) positions in mm on a 150 x 200 mm face."""
    t = np.linspace(-1, 1, 17)
    jaw = np.stack([60 * np.sin(t * 1.3), -80 * np.cos(t * 1.3) + 25], 1)
    brow_r = np.stack([np.linspace(-55, -12, 5), [28, 34, 36, 35, 32]], 1)
    brow_l = brow_r[::-1] * [-1, 1]
    nose = np.array([[0, 15], [0, 5], [0, -5], [0, -15], [-12, -22], [-6, -24], [0, -25], [6, -24], [12, -22]])
    eye = np.array([[-45, 15], [-38, 20], [-28, 20], [-20, 15], [-28, 11], [-38, 11]], float)
    mouth_outer = np.array([[-25, -45], [-15, -40], [-5, -38], [0, -39], [5, -38], [15, -40], [25, -45],
                            [15, -52], [5, -55], [0, -55], [-5, -55], [-15, -52]], float)
    mouth_inner = np.array([[-20, -45], [-5, -43], [0, -43], [5, -43], [20, -45], [5, -47], [0, -47], [-5, -47]], float)
    return np.concatenate([jaw, brow_r, brow_l, nose, eye, eye[[3, 2, 1, 0, 5, 4]] * [-1, 1], mouth_outer, mouth_inner])


@pytest.fixture(scope="session")
def tiny_model() -> MorphableModel:
    return make_tiny_model()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tiny_model) -> Path:
    return save_model(tiny_model, tmp_path_factory.mktemp("models") / "tiny")


def tiny_spec(model_dir: Path, num_samples=12, samples_per_shard=5, size=64, **tables) -> "JobSpec":  # noqa: F821
    """A small job on the tiny model; other keyword arguments are extra TOML lines of a table, e.g. output='...'."""
    text = f'''name = "tiny"
seed = 7
num_samples = {num_samples}
{tables.get("top", "")}
[model]
name = "{model_dir}"
[render]
width = {size}
height = {size}
{tables.get("render", "")}
[output]
samples_per_shard = {samples_per_shard}
{tables.get("output", "")}
[cluster]
batch_size = 4
'''
    return parse_spec(text, "<tiny>")


@pytest.fixture(scope="session")
def real_model_dir(tmp_path_factory) -> Path:
    """A model directory with ICT-FaceKit and the SFM, converted from ../shared/models (once per session)."""
    from datagen.models.registry import install_model

    env = os.environ.get("DATAGEN_MODEL_DIR")
    if env and (Path(env) / "ict-facekit" / "model.json").exists() and (Path(env) / "sfm").exists():
        return Path(env)
    archive = SHARED / "models" / "ict-facekit" / "FaceXModel.tar.xz"
    assert archive.exists(), f"tests need the shared models beside the repo: {archive} is missing"
    root = tmp_path_factory.mktemp("real-models")
    install_model("ict-facekit", archive, root)
    install_model("sfm", SHARED / "models" / "sfm", root)
    return root


@pytest.fixture(scope="session")
def ict_model(real_model_dir):
    from datagen.models.registry import resolve_model

    return resolve_model("ict-facekit", real_model_dir, download=False)
