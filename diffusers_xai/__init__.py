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
from .hub import (
    ExplanationCardData,
    HubPushError,
    explanation_card,
    load_explanation_card_data,
    publish,
    save_explanation_card,
    save_pretrained_with_card,
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
    "ExplanationCardData",
    "HubPushError",
    "Trace",
    "TraceConfig",
    "TraceRecorder",
    "TraceStep",
    "__version__",
    "explanation_card",
    "load_explanation_card_data",
    "publish",
    "save_explanation_card",
    "save_pretrained_with_card",
    "find_attention_modules",
    "make_scheduler",
    "predict_original_sample",
]
