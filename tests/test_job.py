"""Whole jobs on a local dask cluster: determinism across worker counts, resume, refusal."""

import dataclasses
import json

import pytest

from datagen.errors import DatagenError
from datagen.data.manifest import read_manifest
from datagen.run.job import run_job
from datagen.data.shards import validate_shard
from conftest import tiny_spec


def _checksums(out):
    return [s["checksum"] for s in read_manifest(out)["shards"]]


def test_same_job_same_arrays_whatever_the_worker_count(tmp_path, tiny_model_dir):
    spec = tiny_spec(tiny_model_dir)
    one = run_job(spec, tmp_path / "one", workers=1, log=lambda m: None)
    two = run_job(spec, tmp_path / "two", workers=2, log=lambda m: None)
    assert one.shards == two.shards == 3 and one.generated == 3
    assert _checksums(tmp_path / "one") == _checksums(tmp_path / "two")
    assert all(_checksums(tmp_path / "one"))
    for s in read_manifest(tmp_path / "two")["shards"]:
        validate_shard(tmp_path / "two" / s["file"], s["checksum"])


def test_rerun_resumes_and_redoes_only_missing_or_corrupt_shards(tmp_path, tiny_model_dir):
    spec = tiny_spec(tiny_model_dir)
    out = tmp_path / "out"
    run_job(spec, out, workers=1, log=lambda m: None)
    before = _checksums(out)
    (out / "shard-00001.h5").unlink()
    data = (out / "shard-00002.h5").read_bytes()
    (out / "shard-00002.h5").write_bytes(data[:1000])
    (out / "shard-00000.h5.partial").write_bytes(b"left by a killed worker")
    messages = []
    summary = run_job(spec, out, workers=1, log=messages.append)
    assert summary.skipped == 1 and summary.generated == 2
    assert _checksums(out) == before
    assert not list(out.glob("*.partial"))
    assert any("resuming: 1 of 3" in m for m in messages)


def test_changed_job_is_refused_unless_forced(tmp_path, tiny_model_dir):
    out = tmp_path / "out"
    run_job(tiny_spec(tiny_model_dir), out, workers=1, log=lambda m: None)
    changed = tiny_spec(tiny_model_dir, top="[sampling.pose]\nyaw_std_deg = 10.0")
    with pytest.raises(DatagenError, match="holds a different job .* --force"):
        run_job(changed, out, workers=1, log=lambda m: None)
    summary = run_job(changed, out, workers=1, force=True, log=lambda m: None)
    assert summary.generated == 3
    assert json.loads((out / "manifest.json").read_text())["job_spec"] == changed.source_text


def test_worker_count_is_not_part_of_the_job(tmp_path, tiny_model_dir):
    out = tmp_path / "out"
    run_job(tiny_spec(tiny_model_dir), out, workers=1, log=lambda m: None)
    spec = tiny_spec(tiny_model_dir)  # the same job on other cluster settings: resumes, nothing to redo
    spec = dataclasses.replace(spec, cluster=dataclasses.replace(spec.cluster, workers=2, batch_size=2))
    assert run_job(spec, out, log=lambda m: None).generated == 0


def test_unwritable_output_is_one_clear_error(tmp_path, tiny_model_dir):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(DatagenError, match=r"file/out: cannot write the output folder"):
        run_job(tiny_spec(tiny_model_dir), blocker / "out", workers=1, log=lambda m: None)
