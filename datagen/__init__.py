"""facegen: synthetic training data for single-image 3D face reconstruction.

The pipeline, one module per stage, plain frozen data between stages:
``spec`` (job file -> JobSpec) -> ``run.plan`` (shards, the manifest) ->
``synth.sampling`` (FaceParams) -> ``synth.geometry`` (SceneBatch) -> ``synth.render``
(RenderOutput) -> ``synth.annotate`` (``data.fields.SampleBatch``) -> ``data.shards`` (HDF5) ->
``data.manifest``. Beside it: ``photo`` (real photos: fitting, texture libraries,
photo-realistic re-rendering), ``data.dataset`` (the reader), ``reconstruction`` (the reference
trainer and reconstructor), ``models`` (morphable models), ``camera`` (the conventions), and
``cli`` on top.
"""

__version__ = "0.1.0"

from .errors import DatagenError, ModelError, RenderError, ShardError, SpecError  # noqa: E402

__all__ = ["__version__", "DatagenError", "ModelError", "RenderError", "ShardError", "SpecError"]
