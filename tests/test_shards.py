import h5py
import numpy as np
import pytest

from datagen.errors import ShardError
from datagen.run.generator import FaceGenerator
from datagen.synth.render import Renderer
from datagen.data.shards import ShardWriter, validate_shard
from conftest import tiny_spec


@pytest.fixture(scope="module")
def setup(tiny_model, tiny_model_dir, ctx):
    spec = tiny_spec(tiny_model_dir)
    return spec, FaceGenerator(spec, tiny_model, Renderer(tiny_model, 64, 64, ctx=ctx))


def _write(path, setup, samples=range(0, 5)):
    spec, g = setup
    with ShardWriter(path, spec, g.model, 0, samples) as w:
        w.write(g.generate(samples))
    return w


def test_round_trip(tmp_path, setup):
    spec, g = setup
    w = _write(tmp_path / "shard-00000.h5", setup)
    info = validate_shard(tmp_path / "shard-00000.h5", w.checksum)
    assert info.num_samples == 5 and info.checksum == w.checksum
    expected = g.generate(range(5))
    with h5py.File(tmp_path / "shard-00000.h5") as f:
        for name, array in expected.items():
            np.testing.assert_array_equal(f[name][()], array, err_msg=name)
        assert f["image"].chunks == (1, 64, 64, 3) and set(f["image"]._filters) == {"fletcher32", FILTER_IDS["lz4"]}  # the default
        assert f.attrs["model_name"] == "tiny" and "num_samples = 12" in f.attrs["job_spec"]
        assert "upper_lip" in f["segmentation"].attrs["labels"]


def test_no_file_appears_until_complete_and_errors_leave_nothing(tmp_path, setup):
    spec, g = setup
    path = tmp_path / "shard-00000.h5"
    with pytest.raises(RuntimeError):
        with ShardWriter(path, spec, g.model, 0, range(5)) as w:
            w.write(g.generate(range(3)))
            assert not path.exists() and [p.name for p in tmp_path.glob("*.partial")] == [w.partial.name]
            raise RuntimeError("worker died")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ShardError, match="3 of 5 samples written"):
        with ShardWriter(path, spec, g.model, 0, range(5)) as w:
            w.write(g.generate(range(3)))
    assert list(tmp_path.iterdir()) == []


def test_a_disk_that_returns_other_bytes_leaves_no_shard(tmp_path, setup, monkeypatch):
    """The writer reads the file back past the page cache; a flipped byte on the way (a failing disk,
    a bad controller) is refused, naming the shard, and nothing is left under its name."""
    import os

    from datagen.data import shards
    from datagen.errors import DatagenError

    def flip_a_byte(fd):  # after fsync, before the read-back: what the disk would now return
        with open(os.readlink(f"/proc/self/fd/{fd}"), "r+b") as f:
            f.seek(os.fstat(fd).st_size // 2)
            byte = f.read(1)[0]
            f.seek(-1, os.SEEK_CUR)
            f.write(bytes([byte ^ 0x10]))
    monkeypatch.setattr(shards, "drop_cached_pages", flip_a_byte)
    with pytest.raises(DatagenError, match="shard-00000.h5: the shard read back differs from what was written"):
        _write(tmp_path / "shard-00000.h5", setup)
    assert list(tmp_path.iterdir()) == []


def test_non_finite_values_are_refused_when_written(tmp_path, setup):
    spec, g = setup
    arrays = g.generate(range(2))
    arrays["depth"][1, 3, 4] = np.nan
    with pytest.raises(ShardError, match="depth holds NaN or infinite values; the shard is not written"):
        with ShardWriter(tmp_path / "s.h5", spec, g.model, 0, range(2)) as w:
            w.write(arrays)
    assert list(tmp_path.iterdir()) == []


def test_bad_batch_names_the_field(tmp_path, setup):
    spec, g = setup
    arrays = g.generate(range(2))
    arrays["depth"] = arrays["depth"][:, :, :-1]
    with pytest.raises(ValueError, match=r"depth has shape \(64, 63\) float32, schema says \(64, 64\) float32"):
        with ShardWriter(tmp_path / "s.h5", spec, g.model, 0, range(2)) as w:
            w.write(arrays)


def test_truncated_and_tampered_shards_are_detected(tmp_path, setup):
    path = tmp_path / "shard-00000.h5"
    w = _write(path, setup)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ShardError, match="unreadable or truncated"):
        validate_shard(path)
    _write(path, setup)
    with h5py.File(path, "r+") as f:
        f["depth"][2, 10, 10] = np.nan
    with pytest.raises(ShardError, match="depth holds NaN"):
        validate_shard(path)
    _write(path, setup)
    with h5py.File(path, "r+") as f:
        f["landmarks_2d"][0, 0, 0] += 1
    with pytest.raises(ShardError, match="content checksum mismatch"):
        validate_shard(path, w.checksum)


FILTER_IDS = {"gzip": "gzip", "lz4": "32004", "zstd": "32015", "blosc2": "32026"}  # HDF5's registered filter ids


@pytest.mark.parametrize("compression", ["none", "gzip", "lz4", "zstd", "blosc2"])
def test_every_compression_round_trips_and_inspect_validates_it(tmp_path, tiny_model, tiny_model_dir, ctx, compression):
    from datagen.data.dataset import ShardedDataset
    from datagen.data.inspection import inspect_dataset
    from datagen.run.job import run_job

    spec = tiny_spec(tiny_model_dir, num_samples=6, samples_per_shard=3, size=32,
                     output=f'compression = "{compression}"\ncompression_level = 3')
    run_job(spec, tmp_path / "out", workers=1, log=lambda m: None)
    report = inspect_dataset(tmp_path / "out")
    assert report.ok, report.problems
    expected = FaceGenerator(spec, tiny_model, Renderer(tiny_model, 32, 32, ctx=ctx)).generate([4])
    sample = ShardedDataset(tmp_path / "out")[4]
    for name, array in expected.items():
        np.testing.assert_array_equal(sample[name], array[0], err_msg=name)
    with h5py.File(tmp_path / "out" / "shard-00001.h5") as f:
        filters = set(f["image"]._filters)
    assert filters == {"fletcher32"} | ({FILTER_IDS[compression]} if compression != "none" else set()), filters


def test_an_output_resumes_under_another_compression_and_reads_as_one(tmp_path, tiny_model_dir):
    """Compression is how samples are stored, not which: an output begun with lzf (by a datagen that
    put the compression in the job's fingerprint) resumes under lz4, and its shards read alike."""
    from datagen.data.dataset import ShardedDataset
    from datagen.data.inspection import inspect_dataset
    from datagen.data.manifest import _fingerprint, read_manifest, write_manifest
    from datagen.run.job import run_job

    out = tmp_path / "out"
    old = tiny_spec(tiny_model_dir, num_samples=6, samples_per_shard=3, size=32, output='compression = "lzf"')
    run_job(old, out, workers=1, log=lambda m: None)
    manifest = read_manifest(out)
    manifest["spec_fingerprint"] = _fingerprint(old, storage=True)  # as datagen 0.18 wrote it
    first = manifest["shards"][0]
    (out / first["file"]).unlink()
    first.update(checksum=None, bytes=None)
    write_manifest(out, manifest)
    new = tiny_spec(tiny_model_dir, num_samples=6, samples_per_shard=3, size=32, output='compression = "lz4"')
    summary = run_job(new, out, workers=1, log=lambda m: None)
    assert (summary.skipped, summary.generated) == (1, 1)
    with h5py.File(out / "shard-00000.h5") as a, h5py.File(out / "shard-00001.h5") as b:
        assert set(a["image"]._filters) == {"fletcher32", FILTER_IDS["lz4"]} and b["image"].compression == "lzf"
    assert inspect_dataset(out).ok and len(ShardedDataset(out)) == 6
