"""diffusers-xai: generate synthetic data with diffusion models and explain every generation."""

__version__ = "0.1.0"

from .capture import (
    ActivationCapture,
    CapturingAttnProcessor,
    Trace,
    TraceConfig,
    TraceRecorder,
    TraceStep,
    find_attention_modules,
)
from .pipelines import (
    SCHEDULERS,
    DiffusionStep,
    DiffusionXAIPipeline,
    DiffusionXAIPipelineOutput,
    make_scheduler,
    predict_original_sample,
)

__all__ = [
    "SCHEDULERS",
    "ActivationCapture",
    "CapturingAttnProcessor",
    "DiffusionStep",
    "DiffusionXAIPipeline",
    "DiffusionXAIPipelineOutput",
    "Trace",
    "TraceConfig",
    "TraceRecorder",
    "TraceStep",
    "__version__",
    "find_attention_modules",
    "make_scheduler",
    "predict_original_sample",
]
