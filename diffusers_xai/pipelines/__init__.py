"""Pipelines: `DiffusionXAIPipeline` (images) and the schedulers they build."""

from .pipeline_diffusion_xai import DiffusionStep, DiffusionXAIPipeline, DiffusionXAIPipelineOutput
from .schedulers import SCHEDULERS, make_scheduler, predict_original_sample, scheduler_name

__all__ = [
    "SCHEDULERS",
    "DiffusionStep",
    "DiffusionXAIPipeline",
    "DiffusionXAIPipelineOutput",
    "make_scheduler",
    "predict_original_sample",
    "scheduler_name",
]
