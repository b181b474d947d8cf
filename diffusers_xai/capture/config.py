"""What a trace records, and how much memory it may take."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch

__all__ = ["TraceConfig", "resolve_trace_config"]

_MiB = 2**20


@dataclass
class TraceConfig:
    r"""
    Configuration of a [`Trace`]: which steps, which tensors and which layers are recorded.

    Memory is bounded by this configuration: every stored tensor is detached, cast to `dtype` and moved to
    `device` (CPU by default), only the selected steps are kept, and recording stops with a warning once the
    trace holds `max_bytes`.

    Args:
        steps (`"auto"`, `"all"`, `int` or `list[int]`, *optional*, defaults to `"auto"`):
            Which denoising steps (0-based loop indices) to record. `"auto"` keeps at most `max_recorded_steps`
            evenly spaced steps (always including the first and the last), `"all"` keeps every step, an `int`
            is a stride (every k-th step plus the last) and a list names the steps explicitly.
        max_recorded_steps (`int`, *optional*, defaults to 100):
            Upper bound on the number of recorded steps when `steps="auto"`.
        latents (`bool`, *optional*, defaults to `True`): record $x_t$, the input of each recorded step.
        pred_original_sample (`bool`, *optional*, defaults to `True`): record the predicted $\hat{x}_0$.
        model_output (`bool`, *optional*, defaults to `False`): record the raw model output ($\epsilon$, $v$ or
            $x_0$ depending on `prediction_type`).
        attention (`bool`, *optional*, defaults to `False`): record attention probabilities.
        attention_layers (`list[str]`, *optional*): dotted module names (or `fnmatch` patterns such as
            `"mid_block.*"`) of the `Attention` modules to record; `None` means all of them.
        head_reduction (`"mean"` or `"none"`, *optional*, defaults to `"mean"`): average the heads
            (`[B, Q, K]`) or keep them (`[B, heads, Q, K]`).
        activations (`list[str]`, *optional*): dotted names (or patterns) of modules whose forward outputs are
            recorded at the recorded steps.
        dtype (`torch.dtype`, *optional*, defaults to `torch.float16`): storage dtype.
        device (`str`, *optional*, defaults to `"cpu"`): storage device.
        max_bytes (`int`, *optional*, defaults to 64 MiB): hard memory budget of the trace.
    """

    steps: Literal["auto", "all"] | int | list[int] = "auto"
    max_recorded_steps: int = 100
    latents: bool = True
    pred_original_sample: bool = True
    model_output: bool = False
    attention: bool = False
    attention_layers: list[str] | None = None
    head_reduction: Literal["mean", "none"] = "mean"
    activations: list[str] | None = field(default=None)
    dtype: torch.dtype = torch.float16
    device: str = "cpu"
    max_bytes: int = 64 * _MiB

    def __post_init__(self):
        if self.head_reduction not in ("mean", "none"):
            raise ValueError(f"`head_reduction` must be 'mean' or 'none', got {self.head_reduction!r}.")
        if isinstance(self.steps, bool) or not isinstance(self.steps, (str, int, list, tuple)):
            raise TypeError(
                f"`steps` must be 'auto', 'all', an int stride or a list of step indices, got {self.steps!r}."
            )
        if isinstance(self.steps, str) and self.steps not in ("auto", "all"):
            raise ValueError(
                f"`steps` must be 'auto', 'all', an int stride or a list of step indices, got {self.steps!r}."
            )
        if isinstance(self.steps, int) and self.steps < 1:
            raise ValueError(f"A step stride must be >= 1, got steps={self.steps}.")
        if isinstance(self.steps, (list, tuple)):
            if any((not isinstance(s, int)) or s < 0 for s in self.steps):
                raise ValueError(f"Step indices must be non-negative ints, got steps={self.steps!r}.")
            self.steps = sorted(set(self.steps))
        if self.max_recorded_steps < 1:
            raise ValueError(f"`max_recorded_steps` must be >= 1, got {self.max_recorded_steps}.")
        if self.max_bytes <= 0:
            raise ValueError(f"`max_bytes` must be positive, got {self.max_bytes}.")
        if not isinstance(self.dtype, torch.dtype) or not self.dtype.is_floating_point:
            raise TypeError(f"`dtype` must be a floating torch.dtype, got {self.dtype!r}.")

    def step_indices(self, num_steps: int | None) -> set[int] | None:
        """The recorded step indices for a loop of `num_steps` steps (`None` = record every step seen)."""
        if num_steps is None:
            if self.steps in ("auto", "all"):
                return None
            if isinstance(self.steps, int):
                return None  # stride is applied on the fly in `should_record`
            return set(self.steps)
        if self.steps == "all" or (self.steps == "auto" and num_steps <= self.max_recorded_steps):
            return set(range(num_steps))
        if self.steps == "auto":
            k = self.max_recorded_steps
            if k == 1:
                return {num_steps - 1}
            return {round(i * (num_steps - 1) / (k - 1)) for i in range(k)}
        if isinstance(self.steps, int):
            return set(range(0, num_steps, self.steps)) | {num_steps - 1}
        out_of_range = [s for s in self.steps if s >= num_steps]
        if out_of_range:
            raise ValueError(
                f"Trace steps {out_of_range} do not exist in a loop of {num_steps} steps; use indices in "
                f"[0, {num_steps - 1}]."
            )
        return set(self.steps)


def resolve_trace_config(trace: bool | TraceConfig | dict | None) -> TraceConfig | None:
    """Turn the `trace=` argument of a pipeline into a [`TraceConfig`] (or `None` when tracing is off)."""
    if trace is None or trace is False:
        return None
    if trace is True:
        return TraceConfig()
    if isinstance(trace, TraceConfig):
        return trace
    if isinstance(trace, dict):
        return TraceConfig(**trace)
    raise TypeError(f"`trace` must be a bool, a dict or a TraceConfig, got {type(trace).__name__}.")
