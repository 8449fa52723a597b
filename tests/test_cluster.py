"""Cluster back-ends and GPU binding: [cluster] keys, the SLURM/PBS job scripts, EGL device choice."""

import multiprocessing
import os
import textwrap

import pytest

from datagen.run.cluster import jobqueue_cluster, local_worker_count
from datagen.errors import SpecError
from datagen.synth.gpus import EglDevice, claim_gpu, egl_device, egl_devices, usable_gpus
from datagen.spec import load_spec, parse_spec, with_cluster

GPU_JOB = textwrap.dedent('''
    name = "faces"
    num_samples = 1000
    [cluster]
    kind = "slurm"
    queue = "gpu"
    account = "vision"
    walltime = "12:00:00"
    cores = 16
    memory = "128GB"
    gpus_per_job = 4
    jobs = 50
    job_directives = ["--constraint=a100"]
    prologue = ["module load cuda/12.4"]
''')


def _script(text, **changes):
    spec = parse_spec(text, "job.toml")
    if changes:
        spec = with_cluster(spec, **changes)
    cluster = jobqueue_cluster(spec.cluster)
    try:
        return cluster.job_script()
    finally:
        cluster.close()


def test_slurm_job_script_from_the_job_file():
    script = _script(GPU_JOB)
    for line in ("#SBATCH -p gpu", "#SBATCH -A vision", "#SBATCH -t 12:00:00", "#SBATCH --cpus-per-task=16",
                 "#SBATCH --gres=gpu:4", "#SBATCH --constraint=a100", "module load cuda/12.4"):
        assert line in script, line
    worker = next(line for line in script.splitlines() if "dask_worker" in line)
    # one single-threaded worker per GPU: each holds one GL context, bound to its own GPU
    assert "--nworkers 4" in worker and "--nthreads 1" in worker and "--nanny" in worker
    assert "LP_NUM_THREADS" not in script


def test_slurm_without_gpus_runs_one_worker_per_core_sharing_no_llvmpipe_threads():
    script = _script(GPU_JOB.replace("gpus_per_job = 4", "gpus_per_job = 0"))
    assert "--gres" not in script and "export LP_NUM_THREADS=0" in script
    assert "--nworkers 16" in next(line for line in script.splitlines() if "dask_worker" in line)


def test_pbs_job_script():
    script = _script(GPU_JOB, kind="pbs")
    assert "#PBS -q gpu" in script and "#PBS -l select=1:ncpus=16:ngpus=4:mem=128GB" in script
    assert "#PBS -l walltime=12:00:00" in script and "--nworkers 4" in script


def test_documented_million_job_parses(tmp_path):
    from conftest import REPO

    spec = load_spec(REPO / "jobs" / "million.toml")
    assert spec.num_samples == 1_000_000 and spec.num_shards == 1000
    assert spec.cluster.kind == "local"  # --cluster slurm picks up its [cluster] batch settings
    assert with_cluster(spec, kind="slurm").cluster.gpus_per_job >= 1


@pytest.mark.parametrize("lines, message", [
    ('kind = "kubernetes"', 'cluster.kind: must be one of local, scheduler, slurm, pbs, got "kubernetes"'),
    ('walltime = "4h"', 'cluster.walltime: must be [D-]HH:MM[:SS], got "4h"'),
    ('memory = "lots"', 'cluster.memory: must be an amount such as "32GB", got "lots"'),
    ('job_directives = "--gres=gpu:1"', 'cluster.job_directives: expected a list of strings, got "--gres=gpu:1"'),
    ('adaptive_min_jobs = 4\nadaptive_max_jobs = 2', "cluster.adaptive_max_jobs: must be 0 (fixed size) or >= adaptive_min_jobs"),
])
def test_bad_cluster_keys_are_one_clear_error(lines, message):
    with pytest.raises(SpecError) as e:
        parse_spec(f'name = "x"\n[cluster]\n{lines}\n', "job.toml")
    assert str(e.value) == f"job.toml: line {2 + lines.count(chr(10)) + 1}: {message}"


# --- which EGL device a worker renders on

NVIDIA_4 = [EglDevice(0, False, 2), EglDevice(1, False, 3), EglDevice(2, False, 0), EglDevice(3, False, 1),
            EglDevice(4, True)]


def test_gpus_follow_cuda_visible_devices_by_cuda_ordinal_not_egl_order():
    assert usable_gpus(NVIDIA_4, None) == NVIDIA_4[:4]
    assert [d.index for d in usable_gpus(NVIDIA_4, "0,1")] == [2, 3]  # EGL 2 is CUDA 0
    assert [d.index for d in usable_gpus(NVIDIA_4, "3")] == [1]
    assert usable_gpus(NVIDIA_4, "") == [] and usable_gpus(NVIDIA_4, "-1") == []
    # a batch system's cgroup already hides the other GPUs from EGL: use what EGL sees
    assert usable_gpus(NVIDIA_4[:2] + [NVIDIA_4[4]], "5,7") == NVIDIA_4[:2]
    # UUIDs cannot be matched to EGL devices: every GPU EGL sees
    assert usable_gpus(NVIDIA_4, "GPU-8f2c") == NVIDIA_4[:4]
    assert usable_gpus([EglDevice(0, True)], None) == []


def _claim(folder, queue):
    import os
    import time

    gpu, shared = claim_gpu(NVIDIA_4[:2], folder)
    queue.put((os.getpid(), gpu.index, shared))
    time.sleep(60)  # hold the claim until killed


def test_workers_on_a_node_take_one_gpu_each_and_a_restarted_worker_takes_the_freed_one(tmp_path):
    mp = multiprocessing.get_context("spawn")
    queue = mp.Queue()
    workers = [mp.Process(target=_claim, args=(tmp_path, queue), daemon=True) for _ in range(2)]
    try:
        for p in workers:
            p.start()
        claims = {pid: (index, shared) for pid, index, shared in (queue.get(timeout=30) for _ in range(2))}
        assert sorted(claims.values()) == [(0, False), (1, False)]
        workers.append(mp.Process(target=_claim, args=(tmp_path, queue), daemon=True))
        workers[-1].start()
        assert queue.get(timeout=30)[2] is True  # a third worker shares a GPU
        workers[0].kill()  # kill -9: its flock goes with it
        workers[0].join()
        workers.append(mp.Process(target=_claim, args=(tmp_path, queue), daemon=True))
        workers[-1].start()
        _, index, shared = queue.get(timeout=30)
        assert (index, shared) == (claims[workers[0].pid][0], False)
    finally:
        for p in workers:
            p.kill()
            p.join()


def test_this_machine_renders_on_llvmpipe_and_says_so(ctx):
    devices = egl_devices()
    assert devices and any(d.software for d in devices)
    binding = egl_device()
    assert binding.gpu is False and "llvmpipe" in binding.how
    with ctx:  # current in this thread (an earlier test's ``with ctx:`` may have left none current)
        assert "llvmpipe" in ctx.info["GL_RENDERER"]


def test_local_cluster_defaults_to_one_worker_per_core_without_gpus(monkeypatch):
    spec = parse_spec('name = "x"', "job.toml")
    monkeypatch.setattr("os.cpu_count", lambda: 6)
    assert local_worker_count(spec.cluster) == (6, 0)
    assert local_worker_count(with_cluster(spec, workers=2).cluster) == (2, 0)
    monkeypatch.setattr("datagen.synth.gpus.egl_devices", lambda: NVIDIA_4)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert local_worker_count(spec.cluster) == (4, 4)  # one per GPU


def test_slurm_without_sbatch_is_one_clear_error(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from datagen.cli import cli

    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch here
    job = tmp_path / "job.toml"
    job.write_text(GPU_JOB)
    result = CliRunner().invoke(cli, ["generate", str(job), "--out", str(tmp_path / "out"), "--cluster", "slurm",
                                      "--model-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert "Error: --cluster slurm submits batch jobs with 'sbatch', which is not on this machine's PATH" in result.output


def test_workers_reuse_freed_arrays_despite_dasks_malloc_setting():
    """dask starts workers with MALLOC_TRIM_THRESHOLD_ set, which makes glibc map (and fault in) fresh
    pages for every large array; a worker's set-up (``reuse_freed_memory``) makes them come from the
    heap again: a new 4 MiB array a sample then faults in almost no pages."""
    import subprocess
    import sys

    probe = """
import resource, sys
import numpy as np
from datagen.run.cluster import reuse_freed_memory
if sys.argv[1] == "fixed":
    reuse_freed_memory()
for _ in range(3):
    np.ones(4 << 20, np.uint8)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(50):
    array = np.ones(4 << 20, np.uint8)
    del array
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""
    env = {**os.environ, "MALLOC_TRIM_THRESHOLD_": "65536"}  # what distributed.nanny.pre-spawn-environ sets
    faults = {how: int(subprocess.run([sys.executable, "-c", probe, how], env=env, capture_output=True, text=True,
                                      check=True).stdout) for how in ("as_dask_starts_it", "fixed")}
    assert faults["as_dask_starts_it"] > 50 * 500  # ~1,024 pages an array
    assert faults["fixed"] < 0.05 * faults["as_dask_starts_it"]
