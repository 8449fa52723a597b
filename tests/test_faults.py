"""A run survives what happens on clusters: killed workers, Ctrl-C, a full disk."""

import os
import resource
import signal
import subprocess
import sys
import time

import psutil
import pytest

from datagen.errors import DatagenError
from datagen.job import generate_shard, read_manifest, run_job
from datagen.shards import validate_shard
from conftest import tiny_spec


def _job(model_dir, shards=12, samples_per_shard=6, size=128):
    return tiny_spec(model_dir, num_samples=shards * samples_per_shard, samples_per_shard=samples_per_shard, size=size)


def _checksums(out):
    return [s["checksum"] for s in read_manifest(out)["shards"]]


def _all_valid(out):
    manifest = read_manifest(out)
    for s in manifest["shards"]:
        validate_shard(out / s["file"], s["checksum"])
    assert not list(out.glob("*.partial"))
    assert sorted(p.name for p in out.glob("shard-*.h5")) == [s["file"] for s in manifest["shards"]]


@pytest.fixture(scope="module")
def undisturbed(tmp_path_factory, tiny_model_dir):
    out = tmp_path_factory.mktemp("undisturbed") / "out"
    run_job(_job(tiny_model_dir), out, workers=1, log=lambda m: None)
    return _checksums(out)


def _worker_processes():
    """The LocalCluster's worker processes: children of this process spawned by multiprocessing."""
    return [p for p in psutil.Process().children(recursive=True)
            if any("spawn_main" in part for part in p.cmdline())]


def test_a_worker_killed_mid_run_loses_nothing(tmp_path, tiny_model_dir, undisturbed):
    out = tmp_path / "out"
    killed = []

    def kill_a_worker_once(_samples):
        if not killed:
            victim = _worker_processes()[0]
            victim.send_signal(signal.SIGKILL)  # kill -9, mid-shard: both workers are busy
            killed.append(victim.pid)

    summary = run_job(_job(tiny_model_dir), out, workers=2, progress=kill_a_worker_once, log=lambda m: None)
    assert killed
    assert summary.generated == 12 and summary.retries >= 1  # the dead worker's shard ran again elsewhere
    _all_valid(out)
    assert _checksums(out) == undisturbed


def test_ctrl_c_leaves_only_complete_shards_and_the_rerun_resumes(tmp_path, tiny_model_dir, undisturbed):
    spec = _job(tiny_model_dir)
    job = tmp_path / "job.toml"
    job.write_text(spec.source_text)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "datagen.cli", "generate", str(job), "--out", str(out), "--workers", "1"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not _some_shard_done(out):
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole process group
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 130, output
    assert "Interrupted: only complete shards were kept" in output
    done = [s for s in read_manifest(out)["shards"] if s["checksum"]]
    assert 1 <= len(done) < 12  # interrupted mid-run: some shards done, not all
    assert not list(out.glob("*.partial"))
    for s in read_manifest(out)["shards"]:  # every shard file is complete and in the manifest, or absent
        path = out / s["file"]
        assert (path.exists() and validate_shard(path, s["checksum"])) or not path.exists()

    messages = []
    summary = run_job(spec, out, workers=1, log=messages.append)
    assert summary.skipped >= len(done) and summary.generated == 12 - summary.skipped
    assert any(f"resuming: {summary.skipped} of 12" in m for m in messages)
    _all_valid(out)
    assert _checksums(out) == undisturbed


def _some_shard_done(out):
    try:
        return any(s["checksum"] for s in read_manifest(out)["shards"])
    except DatagenError:
        return False


def _small_file_limit():
    """In the child: files may not grow past 64 KiB (EFBIG, as ENOSPC on a full disk), without SIGXFSZ."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))


def test_a_full_disk_fails_the_shard_with_one_clear_error_and_leaves_no_file(tmp_path, tiny_model_dir):
    spec = _job(tiny_model_dir, shards=2)
    code = (f"from datagen.job import generate_shard; from datagen.spec import parse_spec\n"
            f"generate_shard(parse_spec({spec.source_text!r}), 1, {str(tmp_path)!r}, None)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            preexec_fn=_small_file_limit)
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("datagen.errors.DatagenError: ") and "shard-00001.h5: cannot write the shard" in last
    assert list(tmp_path.iterdir()) == []  # no shard, no .partial


def test_failed_shards_are_reported_together_and_the_rest_is_kept(tmp_path, tiny_model_dir):
    spec = _job(tiny_model_dir, shards=3, size=64)
    job = tmp_path / "job.toml"
    job.write_text(spec.source_text)
    out = tmp_path / "out"
    out.mkdir()
    command = [sys.executable, "-m", "datagen.cli", "generate", str(job), "--out", str(out), "--workers", "1"]
    # Files past 64 KiB fail (as on a full disk): every shard of this job is bigger than that.
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, preexec_fn=_small_file_limit)
    assert result.returncode == 1
    error = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(error) == 1, result.stderr
    assert error[0].startswith("Error: 3 of 3 shards failed (shard-00000.h5, shard-00001.h5, shard-00002.h5: ")
    assert "cannot write the shard" in error[0] and error[0].endswith("run the same command again to retry the failed ones")
    assert not list(out.glob("*.h5")) and not list(out.glob("*.partial"))
    summary = run_job(spec, out, workers=1, log=lambda m: None)  # the disk has room again
    assert summary.generated == 3
    _all_valid(out)


def test_generate_shard_in_process_matches_the_manifest_record(tmp_path, tiny_model_dir):
    spec = _job(tiny_model_dir, shards=1)
    record = generate_shard(spec, 0, str(tmp_path), None)
    assert validate_shard(tmp_path / record["file"], record["checksum"]).num_samples == 6
    assert "llvmpipe" in record["device"] and record["software"]
