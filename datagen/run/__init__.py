"""Running a job: ``job`` (plan, manifest, one dask task per shard, resume), ``cluster``
(local, an existing scheduler, SLURM/PBS), ``gpus`` (an EGL device per worker), ``locking``
(one run per output folder).
"""
