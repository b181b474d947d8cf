"""Capture hooks: attention probabilities, activations/gradients and per-step latents of any diffusers model."""

from .callback import LatentTraceCallback, SchedulerStepTrace
from .config import TraceConfig, resolve_trace_config
from .hooks import ActivationCapture, resolve_module_names
from .probability_capture import AttentionCall, AttentionProbabilityCapture, find_all_attention_modules
from .processor import CapturingAttnProcessor, attention_probabilities, find_attention_modules
from .query_key import (
    UnsupportedAttentionProcessorError,
    attention_query_key,
    chunked_attention_probabilities,
)
from .recorder import TraceRecorder
from .trace import Trace, TraceStep

__all__ = [
    "ActivationCapture",
    "AttentionCall",
    "AttentionProbabilityCapture",
    "LatentTraceCallback",
    "SchedulerStepTrace",
    "UnsupportedAttentionProcessorError",
    "attention_query_key",
    "chunked_attention_probabilities",
    "find_all_attention_modules",
    "CapturingAttnProcessor",
    "Trace",
    "TraceConfig",
    "TraceRecorder",
    "TraceStep",
    "attention_probabilities",
    "find_attention_modules",
    "resolve_module_names",
    "resolve_trace_config",
]
