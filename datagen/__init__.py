"""facegen: synthetic training data for single-image 3D face reconstruction.

The pipeline, one module per stage, plain data between stages:
``spec`` (job file -> JobSpec) -> ``plan`` (shards, seeds) -> ``sampling`` (FaceParams)
-> ``geometry`` (Scene) -> ``render`` (RenderOutput) -> ``annotate`` (Sample)
-> ``shards`` (HDF5 files) -> manifest.
"""

__version__ = "0.1.0"

from .errors import DatagenError, ModelError, RenderError, ShardError, SpecError  # noqa: E402

__all__ = ["__version__", "DatagenError", "ModelError", "RenderError", "ShardError", "SpecError"]
