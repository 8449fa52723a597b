import os
import pickle

import numpy as np
import pytest

from datagen.data.dataset import ShardShuffleSampler, ShardedDataset
from datagen.errors import ShardError
from datagen.data.manifest import read_manifest, write_manifest
from datagen.run.job import run_job
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


# --- readers at scale: thousands of shards, DataLoader workers


@pytest.fixture(scope="module")
def many_shards(tmp_path_factory, tiny_model, tiny_model_dir, ctx):
    """1,000 shards of 4 samples, written directly (the same 4 rendered samples, re-indexed)."""
    from datagen.run.generator import FaceGenerator
    from datagen.run.plan import plan
    from datagen.synth.render import Renderer
    from datagen.data.shards import ShardWriter

    spec = tiny_spec(tiny_model_dir, num_samples=4000, samples_per_shard=4, output='compression = "none"')
    arrays = FaceGenerator(spec, tiny_model, Renderer(tiny_model, 64, 64, ctx=ctx)).generate(range(4))
    out = tmp_path_factory.mktemp("many") / "out"
    manifest = plan(spec, tiny_model)
    for i, record in enumerate(manifest["shards"]):
        arrays["sample_index"] = np.arange(record["start"], record["stop"])
        with ShardWriter(out / record["file"], spec, tiny_model, i, range(record["start"], record["stop"])) as w:
            w.write(arrays)
        record["checksum"] = w.checksum
    out.mkdir(exist_ok=True)
    write_manifest(out, manifest)
    return out


def test_thousands_of_shards_open_lazily_and_boundedly(many_shards):
    ds = ShardedDataset(many_shards, max_open_files=16)
    assert len(ds) == 4000 and len(ds.shards) == 1000 and ds.files_opened == 0  # nothing opened up front
    rng = np.random.default_rng(0)
    for i in rng.integers(0, len(ds), 300):
        assert int(ds[int(i)]["sample_index"]) == i
        assert len(ds._open) <= 16
    assert ds.files_opened <= 300


class _CountingDataset(ShardedDataset):
    def __getitem__(self, i):
        sample = super().__getitem__(i)
        sample["files_opened"] = np.int64(self.files_opened)
        sample["pid"] = np.int64(os.getpid())
        return sample


def test_dataloader_workers_read_shuffled_batches_without_reopening_files_per_sample(many_shards):
    import torch  # installed by the [dev] extra
    ds = _CountingDataset(many_shards, fields=["image", "sample_index"], max_open_files=8)
    sampler = ShardShuffleSampler(ds, shards_at_once=8, seed=1)
    loader = torch.utils.data.DataLoader(ds, batch_size=32, sampler=sampler, num_workers=2)
    seen, opened = [], {}
    for batch in loader:
        seen.extend(batch["sample_index"].tolist())
        for pid, count in zip(batch["pid"].tolist(), batch["files_opened"].tolist()):
            opened[pid] = max(opened.get(pid, 0), count)
        assert batch["image"].shape == (32, 64, 64, 3)
    assert sorted(seen) == list(range(4000))  # every sample once
    assert seen[:64] != sorted(seen[:64])  # shuffled
    assert len(opened) == 2
    # each worker read ~2,000 samples and opened each of the 1,000 shards at most once
    assert all(count <= 1000 for count in opened.values()), opened
    sampler.set_epoch(1)
    assert list(sampler)[:50] != seen[:50]


def test_shard_shuffle_sampler_mixes_a_window_of_shards():
    class Fake:
        def shard_bounds(self):
            return [(i * 10, i * 10 + 10) for i in range(20)]

    order = list(ShardShuffleSampler(Fake(), shards_at_once=4, seed=3))
    assert sorted(order) == list(range(200))
    for w in range(0, 200, 40):  # each run of 40 samples comes from exactly 4 shards
        assert len({i // 10 for i in order[w:w + 40]}) == 4


# --- corruption: the reader never serves a damaged sample


def _read_all(ds):
    """Every array of every sample, and every attribute of every shard and dataset."""
    import h5py

    samples = [{k: np.array(v) for k, v in ds[i].items()} for i in range(len(ds))]
    attributes = {}
    for s in range(len(ds.shards)):
        f = ds._file(s)
        attributes[(s, "/")] = {k: str(v) for k, v in f.attrs.items()}
        f.visititems(lambda n, o: attributes.__setitem__((s, n), {k: str(v) for k, v in o.attrs.items()})
                     if isinstance(o, h5py.Dataset) else None)
    return samples, attributes


def _attribute_bytes(data: bytes) -> list[int]:
    """Positions inside the string attributes (the job spec's text, the label names)."""
    positions = [data.find(b'name = "tiny"') + 8, data.find(b"upper_lip") + 2]
    assert min(positions) > 100
    return positions


def test_a_flipped_byte_anywhere_in_a_shard_raises_or_changes_nothing(dataset_dir, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(dataset_dir, copy)
    original = _read_all(ShardedDataset(copy))
    shard = copy / "shard-00001.h5"
    good = shard.read_bytes()
    rng = np.random.default_rng(1)
    raised = 0
    flips = [(p, 0xFF) for p in [len(good) // 2] + rng.integers(0, len(good), 24).tolist()]
    flips += [(p, 0x01) for p in _attribute_bytes(good)]  # still valid text: only a checksum can tell
    for position, mask in flips:
        bad = bytearray(good)
        bad[position] ^= mask
        shard.write_bytes(bytes(bad))
        ds = ShardedDataset(copy)
        try:
            read = _read_all(ds)
        except ShardError as e:
            assert "shard-00001.h5: corrupt" in str(e) and "datagen inspect" in str(e)
            raised += 1
            continue
        finally:
            ds.close()
        for got, want in zip(read[0], original[0]):  # nothing raised: then every value is the written one
            for name in want:
                np.testing.assert_array_equal(got[name], want[name], err_msg=f"byte {position}: {name}")
        assert read[1] == original[1], f"byte {position}: an attribute changed"
    assert raised >= 20  # nearly every byte of a shard is chunk data or checksummed metadata


def test_shards_without_chunk_checksums_are_verified_whole_when_first_opened(dataset_dir, tmp_path):
    import h5py

    legacy = tmp_path / "legacy"
    legacy.mkdir()
    manifest = read_manifest(dataset_dir)
    for record in manifest["shards"]:  # rewrite each shard as datagen wrote them before: no checksums
        with h5py.File(dataset_dir / record["file"]) as src, h5py.File(legacy / record["file"], "w") as dst:
            dst.attrs.update({k: v for k, v in src.attrs.items() if k != "attributes_sha256"})  # not yet then
            names = []
            src.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None)
            for name in names:
                dst.create_dataset(name, data=src[name][()], chunks=src[name].chunks)
    write_manifest(legacy, manifest)
    ds = ShardedDataset(legacy)
    assert int(ds[7]["sample_index"]) == 7 and ds._verified == {0, 1}  # 0: the field names
    with h5py.File(legacy / "shard-00002.h5", "r+") as f:  # a wrong value that no HDF5 check can see
        f["depth"][0, 10, 10] = np.nan
    with pytest.raises(ShardError, match="shard-00002.h5: corrupt .*NaN"):
        ds[11]
    assert int(ShardedDataset(legacy, verify=False)[11]["sample_index"]) == 11


def test_a_truncated_shard_is_one_clear_error(dataset_dir, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(dataset_dir, copy)
    shard = copy / "shard-00000.h5"
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    with pytest.raises(ShardError, match="shard-00000.h5: unreadable"):
        ShardedDataset(copy)[0]


def test_shard_files_the_manifest_does_not_list_are_reported(dataset_dir, tmp_path):
    import shutil

    from datagen.data.inspection import format_report, inspect_dataset

    copy = tmp_path / "copy"
    shutil.copytree(dataset_dir, copy)
    shutil.copy(copy / "shard-00000.h5", copy / "shard-00007.h5")
    with pytest.warns(UserWarning, match="1 shard files its manifest does not list"):
        assert len(ShardedDataset(copy)) == 12
    report = inspect_dataset(copy, deep=False)
    assert not report.ok
    assert "shard-00007.h5: not listed in the manifest" in format_report(report)


def test_asking_for_a_field_a_shard_does_not_hold_is_one_clear_error(dataset_dir):
    with pytest.raises(ShardError, match="no field 'imag' \\(it holds depth, image, "):
        ShardedDataset(dataset_dir, fields=["imag"])[0]
