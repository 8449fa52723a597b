"""Where a job's tasks run: a dask Client on a local cluster, an existing scheduler, or SLURM/PBS.

All three are dask's own machinery (``LocalCluster``, ``Client(address)``, dask-jobqueue's
``SLURMCluster``/``PBSCluster``), configured from the job's ``[cluster]`` table. Every worker
process renders with one GL context (single-threaded workers) bound to its own GPU where there
is one (``synth.gpus.egl_device``); ``WorkerSetup`` builds the model and renderer once per worker as
it joins, before its first task.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import contextlib
import logging
import os
import shutil

from distributed import WorkerPlugin

from ..errors import DatagenError
from ..spec import ClusterSpec, JobSpec


class WorkerSetup(WorkerPlugin):
    """Loads the model and creates the renderer (binding this worker's GPU) once per worker process."""

    def __init__(self, spec: JobSpec, model_dir: str | None):
        self.spec, self.model_dir = spec, model_dir

    async def setup(self, worker):
        from .generator import cached_generator

        reuse_freed_memory()
        # On the thread that runs the tasks: a GL context is current in the thread that made it.
        loop = asyncio.get_running_loop()
        generator = await loop.run_in_executor(worker.executors["default"], cached_generator, self.spec, self.model_dir)
        logging.getLogger("datagen").info("worker %s renders on %s", worker.name, generator.device)
        if self.spec.cluster.kind == "local":
            for handler in logging.getLogger("distributed").handlers:  # what prints to the terminal
                handler.addFilter(_drop_lost_scheduler)


def reuse_freed_memory() -> None:
    """Let this process reuse the memory of freed arrays rather than map fresh pages for each new one.

    dask's nannies start workers with ``MALLOC_TRIM_THRESHOLD_=65536`` (``distributed.nanny.pre-spawn-
    environ``), and setting any malloc threshold turns glibc's dynamic mmap threshold off: every array
    over 128 KiB is then a new mapping, its pages zeroed as they are touched: 10-20% of a quickstart
    sample's time (bench/malloc.py). A fixed mmap threshold
    at glibc's own dynamic ceiling (32 MiB) and a trim threshold of 128 MiB keep a sample's arrays on
    the heap; bench/soak.py shows memory flat with them. Nothing happens without glibc.
    """
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return
    m_trim_threshold, m_mmap_threshold = -1, -3  # glibc's malloc.h
    mallopt(m_mmap_threshold, 32 * 1024 * 1024)
    mallopt(m_trim_threshold, 128 * 1024 * 1024)


def _drop_lost_scheduler(record: logging.LogRecord) -> bool:
    """False for a local worker's traceback of a closed connection to the scheduler.

    A local cluster's scheduler lives in the ``datagen`` process, so a worker only loses it when that
    process stops (the end of a job, Ctrl-C, SIGTERM); its heartbeat then logs a traceback that would
    end the user's clean "Terminated" message. Anything else a worker logs still shows.
    """
    return not (record.exc_info and isinstance(record.exc_info[1], OSError))


def llvmpipe_threads(cores: int, workers: int) -> str:
    """LP_NUM_THREADS for ``workers`` llvmpipe workers sharing ``cores``: 0 (render on the worker's own
    thread) once there is a core or less each, which bench/scaling.py measures as the fastest."""
    share = cores // max(workers, 1)
    return str(share if share > 1 else 0)


def local_worker_count(cluster: ClusterSpec) -> tuple[int, int]:
    """(worker processes, GPUs) for a local cluster: ``workers``, else one per GPU, else one per core."""
    from ..synth.gpus import gpu_count

    gpus = gpu_count()
    return cluster.workers or gpus or os.cpu_count() or 1, gpus


def _local_cluster(cluster: ClusterSpec):
    from distributed import LocalCluster

    n, gpus = local_worker_count(cluster)
    env = {}
    if not gpus:
        # Mesa's llvmpipe starts one render thread per core in every worker: share the cores instead.
        env["LP_NUM_THREADS"] = os.environ.get("LP_NUM_THREADS", llvmpipe_threads(os.cpu_count() or 1, n))
    # One single-threaded process per worker: one GL context each, no GIL contention.
    return LocalCluster(n_workers=n, threads_per_worker=1, processes=True, env=env,
                        silence_logs=logging.ERROR, dashboard_address=":0")


def jobqueue_cluster(cluster: ClusterSpec, **overrides):
    """The dask-jobqueue cluster object for ``kind = "slurm"`` or ``"pbs"`` (no jobs submitted yet).

    One batch job is one node's worth of single-threaded workers: one per GPU with
    ``gpus_per_job``, else one per core. ``cluster.job_script()`` shows what would be submitted.
    """
    try:
        import dask_jobqueue
    except ImportError:
        raise DatagenError(f'cluster kind "{cluster.kind}" needs dask-jobqueue: pip install "datagen[cluster]"') from None
    workers = cluster.gpus_per_job or cluster.cores
    prologue = list(cluster.prologue)
    if not cluster.gpus_per_job:
        prologue.append(f"export LP_NUM_THREADS={llvmpipe_threads(cluster.cores, workers)}")
    options = dict(
        name="datagen-worker",
        queue=cluster.queue or None,
        account=cluster.account or None,
        walltime=cluster.walltime,
        cores=workers,  # dask gives each worker cores / processes threads: one
        processes=workers,
        memory=cluster.memory,
        job_script_prologue=prologue,
        interface=cluster.interface or None,
        local_directory=cluster.local_directory or None,
        scheduler_options={"dashboard_address": ":8787"},
        job_extra_directives=list(cluster.job_directives),
    )
    if cluster.kind == "slurm":
        options["job_cpu"] = cluster.cores
        if cluster.gpus_per_job:
            options["job_extra_directives"].insert(0, f"--gres=gpu:{cluster.gpus_per_job}")
        cls = dask_jobqueue.SLURMCluster
    elif cluster.kind == "pbs":
        gpus = f":ngpus={cluster.gpus_per_job}" if cluster.gpus_per_job else ""
        memory = cluster.memory.replace(" ", "")
        options["resource_spec"] = f"select=1:ncpus={cluster.cores}{gpus}:mem={memory}"
        cls = dask_jobqueue.PBSCluster
    else:
        raise DatagenError(f'cluster kind "{cluster.kind}" is not a batch system (slurm or pbs)')
    options.update(overrides)
    return cls(**{k: v for k, v in options.items() if v is not None})


def check_batch_system(cluster: ClusterSpec) -> None:
    """For slurm/pbs: fail before any work if this machine cannot submit batch jobs."""
    submit = {"slurm": "sbatch", "pbs": "qsub"}.get(cluster.kind)
    if submit and shutil.which(submit) is None:
        raise DatagenError(f"--cluster {cluster.kind} submits batch jobs with '{submit}', which is not on this "
                           f"machine's PATH: run datagen on the cluster's login node")


@contextlib.contextmanager
def connect(cluster: ClusterSpec, log=print):
    """A dask Client for ``cluster``; the cluster it started (if any) is closed on exit."""
    from distributed import Client

    started = None
    if cluster.kind == "scheduler":
        try:
            client = Client(cluster.scheduler, timeout="30s")
        except (OSError, TimeoutError) as e:
            raise DatagenError(f"cannot reach the dask scheduler at {cluster.scheduler}: {e}") from None
    elif cluster.kind == "local":
        started = _local_cluster(cluster)
        client = Client(started)
    else:
        check_batch_system(cluster)
        started = jobqueue_cluster(cluster)
        log(f"{cluster.kind}: the scheduler runs here; workers join as the batch system starts their jobs")
        if cluster.adaptive_max_jobs:
            started.adapt(minimum_jobs=cluster.adaptive_min_jobs, maximum_jobs=cluster.adaptive_max_jobs)
            log(f"{cluster.kind}: adaptive, {cluster.adaptive_min_jobs} to {cluster.adaptive_max_jobs} batch jobs")
        else:
            started.scale(jobs=cluster.jobs)
            log(f"{cluster.kind}: submitting {cluster.jobs} batch jobs of {cluster.gpus_per_job or cluster.cores} "
                f"workers each; job script:\n" + _indent(started.job_script()))
        client = Client(started)
    try:
        workers = len(client.scheduler_info()["workers"])
        log(f"dask: {workers} workers now, dashboard {client.dashboard_link}")
        yield client
    finally:
        client.close()
        if started is not None:
            started.close()


def _indent(text: str) -> str:
    return "\n".join("    " + line for line in text.strip().splitlines())
