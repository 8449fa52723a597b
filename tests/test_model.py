import numpy as np
import pytest

from datagen.errors import ModelError
from datagen.models.model_import import import_ict_facekit
from datagen.models.registry import fetch_model, registry, resolve_model
from datagen.models.morphable_model import load_model, save_model
from conftest import SHARED


def test_zero_coefficients_give_the_mean_and_short_vectors_are_padded(tiny_model):
    m = tiny_model
    np.testing.assert_array_equal(m.vertices(np.zeros(3), np.zeros(3)), m.mean)
    full = m.vertices(np.array([1.0, 0, 0]), np.array([0.5, 0, 0]))
    np.testing.assert_allclose(m.vertices(np.array([1.0]), np.array([0.5])), full)
    batch = m.vertices(np.eye(3), np.zeros((3, 3)))
    np.testing.assert_allclose(batch[1], m.mean + m.identity_basis[1], atol=1e-4)


def test_save_load_round_trip_and_corruption(tmp_path, tiny_model):
    path = save_model(tiny_model, tmp_path / "tiny")
    loaded = load_model(path)
    np.testing.assert_array_equal(loaded.mean, tiny_model.mean)
    assert loaded.expression_names == tiny_model.expression_names and loaded.checksum
    data = (path / "identity_basis.npy").read_bytes()
    (path / "identity_basis.npy").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError, match=r"identity_basis.npy: missing or corrupt \(checksum mismatch\)"):
        load_model(path)


def test_ict_facekit_conversion(ict_model):
    m = ict_model
    assert m.num_vertices == 26719 and m.num_identity == 100 and m.num_expression == 53
    assert m.landmark_ids[0] == 1225 and m.landmark_ids[30] == 4857
    assert "jawOpen" in m.expression_names and m.region_names[0] == "face"
    # millimetres: a head is ~150 mm wide; the face looks down +z; iBUG 36 (subject's right eye) is at -x
    width = np.ptp(m.mean[m.region_vertices("face"), 0])
    assert 120 < width < 200
    lm = m.mean[m.landmark_ids]
    assert lm[30, 2] > lm[0, 2] and lm[36, 0] < 0 < lm[45, 0]
    assert np.isfinite(m.identity_basis).all() and np.abs(m.identity_basis).max() > 1


def test_sfm_loads_through_eos(real_model_dir):
    m = resolve_model("sfm", real_model_dir, download=False)
    assert m.num_vertices == 3448 and m.num_identity == 63 and m.num_expression == 6
    assert (m.landmark_ids >= 0).all() and len(m.landmark_ids) == 68
    lm = m.mean[m.landmark_ids]
    assert lm[8, 1] < lm[30, 1] < lm[19, 1]  # chin below nose tip below brows


def test_corrupt_archive_is_one_clear_error(tmp_path):
    bad = tmp_path / "FaceXModel.tar.xz"
    bad.write_bytes((SHARED / "models" / "ict-facekit" / "FaceXModel.tar.xz").read_bytes()[:100_000])
    with pytest.raises(ModelError, match="corrupt or truncated archive"):
        import_ict_facekit(bad)


def test_missing_model_offline_says_what_to_get(tmp_path, monkeypatch):
    entry = dict(registry()["ict-facekit"], base_url=(tmp_path / "nowhere").as_uri() + "/")
    monkeypatch.setitem(registry(), "ict-facekit", entry)
    with pytest.raises(ModelError) as e:
        resolve_model("ict-facekit", tmp_path / "models")
    message = str(e.value)
    assert "cannot download" in message and "github.com/ICT-VGL/ICT-FaceKit" in message
    assert f"datagen models import ict-facekit PATH/TO/FaceXModel --model-dir {tmp_path / 'models'}" in message
    assert not (tmp_path / "models" / "ict-facekit").exists()


def test_download_checks_pinned_checksums(tmp_path, monkeypatch):
    """The download path, served from a local folder: the SFM files match their pinned SHA-256."""
    source = SHARED / "models" / "sfm"
    entry = dict(registry()["sfm"], base_url=source.as_uri() + "/")
    monkeypatch.setitem(registry(), "sfm", entry)
    progress = []
    fetch_model("sfm", tmp_path / "models", progress=lambda done, total: progress.append((done, total)))
    assert progress[-1][0] == progress[-1][1]
    assert resolve_model("sfm", tmp_path / "models", download=False).num_vertices == 3448
    # a tampered upstream file is refused
    tampered = tmp_path / "tampered"
    tampered.mkdir()
    for name in entry["files"]:
        (tampered / name).write_bytes((source / name).read_bytes())
    (tampered / "ibug_to_sfm.txt").write_text("# changed\n")
    monkeypatch.setitem(registry(), "sfm", dict(entry, base_url=tampered.as_uri() + "/"))
    with pytest.raises(ModelError, match="checksum mismatch"):
        fetch_model("sfm", tmp_path / "other")
