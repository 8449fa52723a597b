"""Job specs: a TOML job file -> a validated, frozen ``JobSpec`` (``load_spec``).

``jobs`` declares every table and key with its default and meaning (``priors`` the ``[sampling.*]``
tables); ``loader`` reads TOML into them; ``checks`` formats errors as 'file: line N: dotted.key: message'.
"""

from .jobs import CLUSTER_KINDS, COMPRESSIONS, ClusterSpec, JobSpec, ModelSpec, OutputSpec, PhotorealSpec, RenderSpec
from .priors import (AppearancePrior, BackgroundPrior, CameraPrior, CapturePrior, ClothingPrior, DetailPrior, ExpressionPrior,
                     HairPrior, IdentityPrior, LightingPrior, OccluderPrior, PosePrior, Range, SamplingSpec)
from .video import VideoSpec
from .loader import (QUICKSTART, default_spec_text, load_default_spec, load_spec, parse_spec, with_cluster,
                     with_overrides, with_settings)

__all__ = ["CLUSTER_KINDS", "COMPRESSIONS", "AppearancePrior", "BackgroundPrior", "CameraPrior", "CapturePrior", "ClothingPrior", "DetailPrior",
           "ClusterSpec", "ExpressionPrior", "HairPrior", "IdentityPrior", "JobSpec", "LightingPrior", "ModelSpec",
           "OccluderPrior", "OutputSpec", "PhotorealSpec", "PosePrior", "QUICKSTART", "Range", "RenderSpec",
           "SamplingSpec", "VideoSpec", "default_spec_text", "load_default_spec", "load_spec", "parse_spec", "with_cluster",
           "with_overrides", "with_settings"]
