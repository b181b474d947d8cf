"""What every modality's pipeline shares: the sampling loop and the schedulers it builds. The pipelines themselves
live with their modality (`diffusers_xai.modalities.<name>`)."""

from .base import SamplingRun, XAIPipelineMixin
from .sampling import DiffusionStep
from .schedulers import SCHEDULERS, make_scheduler, predict_original_sample, scheduler_name

__all__ = [
    "SCHEDULERS",
    "DiffusionStep",
    "SamplingRun",
    "XAIPipelineMixin",
    "make_scheduler",
    "predict_original_sample",
    "scheduler_name",
]
