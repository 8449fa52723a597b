import pickle

import numpy as np
import pytest

from datagen.dataset import ShardedDataset
from datagen.errors import ShardError
from datagen.job import read_manifest, run_job, write_manifest
from conftest import tiny_spec


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory, tiny_model_dir):
    out = tmp_path_factory.mktemp("ds") / "out"
    run_job(tiny_spec(tiny_model_dir, output="store_vertices = true"), out, workers=1, log=lambda m: None)
    return out


def test_random_access_and_iteration(dataset_dir):
    ds = ShardedDataset(dataset_dir, max_open_files=2)
    assert len(ds) == 12
    assert [int(s["sample_index"]) for s in ds] == list(range(12))
    sample = ds[7]
    assert sample["image"].shape == (64, 64, 3) and sample["landmarks_2d"].shape == (68, 2)
    assert ds[-1]["sample_index"] == 11
    assert len(ds._open) <= 2
    with pytest.raises(IndexError):
        ds[12]


def test_vertices_rebuilt_from_params_match_the_stored_ones(dataset_dir, tiny_model_dir):
    ds = ShardedDataset(dataset_dir)
    for i in (0, 6, 11):
        stored = ds.vertices(i)
        rebuilt = ds.vertices(i, from_params=True)
        assert stored.shape == (ds.model().num_vertices, 3)
        np.testing.assert_allclose(rebuilt, stored, atol=1e-2)
        np.testing.assert_allclose(stored[ds.model().landmark_ids], ds[i]["landmarks_3d"], atol=1e-3)


def test_dataset_survives_pickling_for_dataloader_workers(dataset_dir):
    ds = ShardedDataset(dataset_dir, fields=["image", "sample_index"])
    ds[0]
    clone = pickle.loads(pickle.dumps(ds))
    assert clone._open == {} and int(clone[5]["sample_index"]) == 5 and set(clone[5]) == {"image", "sample_index"}


def test_incomplete_dataset_is_refused(dataset_dir, tmp_path):
    manifest = read_manifest(dataset_dir)
    manifest["shards"][1]["checksum"] = None
    (tmp_path / "manifest.json").write_text("{}")
    write_manifest(tmp_path, manifest)
    with pytest.raises(ShardError, match="1 of 3 shards are not complete"):
        ShardedDataset(tmp_path)
