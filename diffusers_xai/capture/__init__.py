"""Capture hooks: attention probabilities, activations/gradients and per-step latents of any diffusers model."""

from .config import TraceConfig, resolve_trace_config
from .hooks import ActivationCapture, resolve_module_names
from .processor import CapturingAttnProcessor, attention_probabilities, find_attention_modules
from .recorder import TraceRecorder
from .trace import Trace, TraceStep

__all__ = [
    "ActivationCapture",
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
