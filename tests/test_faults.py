"""A run survives what happens on clusters: killed workers, Ctrl-C, a full disk."""

import dataclasses
import os
import resource
import signal
import subprocess
import sys
import time

import psutil
import pytest

from datagen.errors import DatagenError
from datagen.data.manifest import read_manifest
from datagen.run.job import generate_shard, run_job
from datagen.data.shards import validate_shard
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
    code = (f"from datagen.run.job import generate_shard; from datagen.spec import parse_spec\n"
            f"generate_shard(parse_spec({spec.source_text!r}), 1, {str(tmp_path)!r}, None)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            preexec_fn=_small_file_limit)
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("datagen.errors.DiskFullError: ") and "shard-00001.h5: cannot write the shard" in last
    assert list(tmp_path.iterdir()) == []  # no shard, no .partial


def test_a_full_disk_stops_the_run_with_one_short_error_and_the_rerun_finishes(tmp_path, tiny_model_dir):
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
    assert len(error) == 1 and len(result.stderr.splitlines()) <= 3, result.stderr
    assert error[0].startswith("Error: the output's disk is full, so the run stopped: shard-0000")
    assert "cannot write the shard (File too large). 0 of 3 shards are complete and kept" in error[0]
    assert not list(out.glob("*.h5")) and not list(out.glob("*.partial"))
    summary = run_job(spec, out, workers=1, log=lambda m: None)  # the disk has room again
    assert summary.generated == 3
    _all_valid(out)


def test_a_full_disk_is_returned_by_the_task_not_raised_so_dask_does_not_retry_it(tmp_path, tiny_model_dir):
    spec = _job(tiny_model_dir, shards=1, size=64)
    code = (f"from datagen.run.job import shard_task; from datagen.spec import parse_spec\n"
            f"print(shard_task(parse_spec({spec.source_text!r}), 0, {str(tmp_path)!r}, None))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            preexec_fn=_small_file_limit)
    assert result.returncode == 0, result.stderr
    assert "'disk_full': '" in result.stdout and "cannot write the shard (File too large)" in result.stdout
    assert list(tmp_path.iterdir()) == []


def _tmpfs(path, megabytes) -> bool:
    path.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={megabytes}m", "tmpfs", str(path)],
                          capture_output=True)
    return done.returncode == 0


def test_a_disk_that_fills_mid_run_keeps_only_shards_read_back_whole(tmp_path, tiny_model_dir):
    """The reported case: a small file system, several shards completing before it fills. Every
    shard in the manifest, and every shard file, must validate; the output stays a few lines."""
    spec = _job(tiny_model_dir, shards=12, size=128)
    probe = tmp_path / "probe"
    generate_shard(spec, 0, str(probe), None)
    shard_bytes = (probe / "shard-00000.h5").stat().st_size
    job = tmp_path / "job.toml"
    job.write_text(spec.source_text)
    disk = tmp_path / "disk"
    megabytes = max(1, round(3.5 * shard_bytes / 2**20))
    if not (os.geteuid() == 0 and _tmpfs(disk, megabytes)):
        pytest.skip("mounting a small tmpfs needs root (the file-size-limit tests above run without it)")
    try:
        out = disk / "out"
        command = [sys.executable, "-m", "datagen.cli", "generate", str(job), "--out", str(out), "--workers", "2"]
        result = subprocess.run(command, capture_output=True, text=True, timeout=300)
        assert result.returncode == 1
        assert len(result.stdout.splitlines()) + len(result.stderr.splitlines()) < 12, result.stdout + result.stderr
        assert "Error: the output's disk is full, so the run stopped" in result.stderr
        manifest = read_manifest(out)
        recorded = [s for s in manifest["shards"] if s["checksum"]]
        assert 1 <= len(recorded) < 12  # some shards completed before the disk filled
        for s in recorded:
            validate_shard(out / s["file"], s["checksum"])
        for path in out.glob("shard-*.h5"):
            validate_shard(path)
        assert not list(out.glob("*.partial"))
    finally:
        subprocess.run(["umount", str(disk)], check=False)


def test_failures_are_reported_grouped_by_cause():
    from datagen.run.job import _failure_report

    report = _failure_report({0: "cause A", 1: "cause A", 5: "cause B", 2: "cause A", 3: "cause A"}, 8)
    assert report == ("5 of 8 shards failed (shard-00000.h5, shard-00001.h5, shard-00002.h5 and 1 more: cause A; "
                      "shard-00005.h5: cause B). Completed shards are kept; run the same command again to retry "
                      "the failed ones")


def test_generate_shard_in_process_matches_the_manifest_record(tmp_path, tiny_model_dir):
    spec = _job(tiny_model_dir, shards=1)
    record = generate_shard(spec, 0, str(tmp_path), None)
    assert validate_shard(tmp_path / record["file"], record["checksum"]).num_samples == 6
    assert "llvmpipe" in record["device"] and record["software"]


def _start_generate(spec, tmp_path, out, **popen):
    job = tmp_path / "job.toml"
    job.write_text(spec.source_text)
    command = [sys.executable, "-m", "datagen.cli", "generate", str(job), "--out", str(out), "--workers", "1"]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **popen)


def _wait_for(condition, seconds=120):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not condition():
        time.sleep(0.05)
    assert condition()


def test_sigterm_stops_like_ctrl_c_and_the_rerun_resumes(tmp_path, tiny_model_dir, undisturbed):
    spec = _job(tiny_model_dir)
    out = tmp_path / "out"
    process = _start_generate(spec, tmp_path, out)
    _wait_for(lambda: _some_shard_done(out))
    process.send_signal(signal.SIGTERM)  # what SLURM and PBS send at pre-emption or the walltime
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 143, output
    assert "Terminated (SIGTERM): only complete shards were kept; run the same command again to resume." in output
    assert "Traceback" not in output
    assert not list(out.glob("*.partial")) and not (out / ".datagen.lock").exists()
    summary = run_job(spec, out, workers=1, log=lambda m: None)
    assert summary.skipped >= 1
    _all_valid(out)
    assert _checksums(out) == undisturbed


def test_a_second_run_into_the_same_output_is_refused_until_the_first_is_gone(tmp_path, tiny_model_dir):
    import socket

    from datagen.run.locking import OutputLocked

    spec = _job(tiny_model_dir)
    out = tmp_path / "out"
    first = _start_generate(spec, tmp_path, out)
    try:
        _wait_for(lambda: (out / ".datagen.lock").exists())
        with pytest.raises(OutputLocked, match=f"is being written by another run \\(process {first.pid} on "
                                               f"{socket.gethostname()}, since .*delete {out / '.datagen.lock'}"):
            run_job(spec, out, workers=1, log=lambda m: None)
        assert first.poll() is None  # the refused run touched nothing of the first one's
    finally:
        first.kill()  # SIGKILL: no clean-up, the lock stays behind
        first.communicate(timeout=60)
    assert (out / ".datagen.lock").exists()
    summary = run_job(spec, out, workers=1, log=lambda m: None)  # its holder is gone: a stale lock
    assert summary.generated + summary.skipped == 12 and not (out / ".datagen.lock").exists()
    _all_valid(out)


def test_a_folder_with_shards_but_no_manifest(tmp_path, tiny_model_dir):
    spec = _job(tiny_model_dir, shards=3, size=64)
    out = tmp_path / "out"
    run_job(spec, out, workers=1, log=lambda m: None)
    written = _checksums(out)
    (out / "manifest.json").unlink()
    messages = []
    summary = run_job(spec, out, workers=1, log=messages.append)  # the same job: its shards are taken in
    assert summary.generated == 0 and _checksums(out) == written
    assert any("took in 3 shards this job had written" in m for m in messages)

    (out / "manifest.json").unlink()
    other = dataclasses.replace(tiny_spec(tiny_model_dir, num_samples=12, samples_per_shard=6, size=64), seed=8)
    with pytest.raises(DatagenError, match="has no manifest.json but holds 3 shard files this job did not write"):
        run_job(other, out, workers=1, log=lambda m: None)
    assert sorted(p.name for p in out.glob("shard-*.h5")) == ["shard-00000.h5", "shard-00001.h5", "shard-00002.h5"]
    run_job(other, out, workers=1, force=True, log=lambda m: None)
    assert sorted(p.name for p in out.glob("shard-*.h5")) == ["shard-00000.h5", "shard-00001.h5"]
    _all_valid(out)


def test_a_shard_written_whole_but_not_yet_in_the_manifest_is_kept(tmp_path, tiny_model_dir):
    spec = _job(tiny_model_dir, shards=2, size=64)
    out = tmp_path / "out"
    run_job(spec, out, workers=1, log=lambda m: None)
    manifest = read_manifest(out)
    kept = manifest["shards"][1]["checksum"]
    manifest["shards"][1].update(checksum=None, bytes=None)  # as if killed between the rename and the record
    from datagen.data.manifest import write_manifest

    write_manifest(out, manifest)
    summary = run_job(spec, out, workers=1, log=lambda m: None)
    assert summary.generated == 0 and _checksums(out)[1] == kept


def test_lock_holders_elsewhere_are_refused_and_unreadable_old_locks_taken_over(tmp_path):
    import json

    from datagen.run.locking import LOCK, OutputLock, OutputLocked

    lock = tmp_path / LOCK
    lock.write_text(json.dumps({"host": "node17", "pid": 4242, "started": "2026-12-01T10:00:00"}))
    with pytest.raises(OutputLocked, match="process 4242 on node17, since 2026-12-01T10:00:00"):
        OutputLock(tmp_path).acquire()
    lock.write_text("not a lock of ours")
    with pytest.raises(OutputLocked, match="a process that did not say who it is"):
        OutputLock(tmp_path).acquire()
    os.utime(lock, (0, 0))  # written long ago: stale
    with OutputLock(tmp_path):
        assert json.loads(lock.read_text())["pid"] == os.getpid()
    assert list(tmp_path.iterdir()) == []


def test_a_local_worker_drops_only_the_traceback_of_a_closed_scheduler_connection():
    import logging

    from distributed.comm.core import CommClosedError

    from datagen.run.cluster import _drop_lost_scheduler

    def record(exc):
        try:
            raise exc
        except Exception:
            return logging.LogRecord("distributed.worker", logging.ERROR, __file__, 1, "heartbeat", (), sys.exc_info())

    assert not _drop_lost_scheduler(record(CommClosedError("Stream is closed")))
    assert _drop_lost_scheduler(record(RuntimeError("a real failure")))
    assert _drop_lost_scheduler(logging.LogRecord("distributed.worker", logging.ERROR, __file__, 1, "plain", (), None))
