"""The field registry: one declaration per dataset, read by the writer, validator, inspect and readers."""

import numpy as np
import pytest

from datagen.data.fields import REGISTRY, Field, SampleBatch, markdown_table, register, required_names, shard_fields, unregister
from conftest import REPO, tiny_spec


def test_the_readme_table_is_the_registry():
    assert markdown_table() in (REPO / "README.md").read_text(), \
        "README's dataset table differs from datagen.data.fields: paste fields.markdown_table() into it"


def test_a_job_writes_the_required_fields_and_the_optional_ones_it_turns_on(tiny_model_dir, tiny_model):
    plain = shard_fields(tiny_spec(tiny_model_dir), tiny_model)
    assert set(required_names()) <= set(plain) and "vertices" not in plain
    with_vertices = shard_fields(tiny_spec(tiny_model_dir, output="store_vertices = true"), tiny_model)
    assert with_vertices["vertices"].shape == (tiny_model.num_vertices, 3)
    assert with_vertices["image"].shape == (64, 64, 3) and with_vertices["params/expression"].attrs["names"]
    optional = {name for name, f in REGISTRY.items() if f.setting}  # vertices, the fine detail's fields
    assert list(plain) == [name for name in REGISTRY if name not in optional]  # registry order


def test_a_batch_must_hold_exactly_the_declared_fields():
    fields = {"a": type("F", (), {"shape": (2,), "dtype": "float32"})()}
    assert SampleBatch.checked({"a": np.zeros((3, 2), np.float32)}, fields).size == 3
    with pytest.raises(ValueError, match=r"missing \['a'\], undeclared \['b'\]"):
        SampleBatch.checked({"b": np.zeros((3, 2), np.float32)}, fields)
    with pytest.raises(ValueError, match=r"a has shape \(3,\) float32, its field says \(2,\) float32"):
        SampleBatch.checked({"a": np.zeros((3, 3), np.float32)}, fields)


def test_a_field_registered_here_is_written_validated_inspected_and_read_back(tmp_path, tiny_model_dir, tiny_model, ctx):
    """No writer, validator or reader code names the toy field: the registry is all they read."""
    from datagen.data.dataset import ShardedDataset
    from datagen.run.generator import FaceGenerator
    from datagen.data.inspection import format_report, inspect_dataset
    from datagen.run.plan import plan
    from datagen.data.manifest import write_manifest
    from datagen.synth.render import Renderer
    from datagen.data.shards import ShardWriter, validate_shard

    spec = tiny_spec(tiny_model_dir, num_samples=5, samples_per_shard=5)
    arrays = FaceGenerator(spec, tiny_model, Renderer(tiny_model, 64, 64, ctx=ctx)).generate(range(5))
    toy = np.arange(10, dtype=np.float32).reshape(5, 2)
    register(Field("toy/score", lambda d: (2,), "float32", "points", "a field only this test knows"))
    try:
        fields = shard_fields(spec, tiny_model)
        with pytest.raises(ValueError, match="missing"):
            SampleBatch.checked(dict(arrays), fields)  # the registry now asks for it
        with ShardWriter(tmp_path / "shard-00000.h5", spec, tiny_model, 0, range(5)) as writer:
            writer.write(SampleBatch.checked({**arrays, "toy/score": toy}, fields))
        manifest = plan(spec, tiny_model)
        manifest["shards"][0].update(checksum=writer.checksum, bytes=1)
        write_manifest(tmp_path, manifest)
        assert validate_shard(tmp_path / "shard-00000.h5", writer.checksum).num_samples == 5
        report = inspect_dataset(tmp_path)
        assert report.ok and "toy/score" in format_report(report) and "a field only this test knows [points]" in format_report(report)
        np.testing.assert_array_equal(ShardedDataset(tmp_path)[3]["toy/score"], toy[3])
        (tmp_path / "copy").mkdir()
        with ShardWriter(tmp_path / "copy" / "shard-00000.h5", spec, tiny_model, 0, range(5)) as writer:
            writer.write({**arrays, "toy/score": toy})
        with pytest.raises(Exception, match="missing datasets toy/score"):
            import h5py

            with h5py.File(tmp_path / "copy" / "shard-00000.h5", "r+") as f:
                del f["toy/score"]
            validate_shard(tmp_path / "copy" / "shard-00000.h5", deep=False)
    finally:
        unregister("toy/score")


def test_the_readers_ask_for_registered_fields_only():
    from datagen.reconstruction.data import FIELDS

    assert set(FIELDS) <= set(REGISTRY)
