"""What every modality's pipeline shares: the sampling loop and the schedulers it builds. The pipelines themselves
live with their modality (`diffusers_xai.modalities.<name>`)."""

# ruff: noqa: F401  (the imports are re-exported: `__all__` is built from the top level's list of them)

from .. import _EXPORTS
from .base import SamplingRun, SavedPipelineMismatchError, XAIPipelineMixin
from .sampling import DiffusionStep
from .schedulers import SCHEDULERS, make_scheduler, predict_original_sample, scheduler_name

# The names the package's top level re-exports (listed there, where they are resolved lazily), and the rest.
__all__ = [*_EXPORTS["pipelines"], "SavedPipelineMismatchError", "scheduler_name"]
