r"""A diffusers `PipelineCallback` recording per-step latents (and $\hat{x}_0$ where recoverable) into a [`Trace`]."""

from __future__ import annotations

import inspect
import logging
from typing import Any

import torch
from diffusers.callbacks import PipelineCallback
from diffusers.utils import BaseOutput

from .config import TraceConfig
from .trace import Trace, TraceBudget, TraceStep

__all__ = ["LatentTraceCallback", "SchedulerStepTrace"]

logger = logging.getLogger(__name__)


class LatentTraceCallback(PipelineCallback):
    r"""
    Record the latents of every step of any stock pipeline through `callback_on_step_end`, into a [`Trace`].

    `callback_on_step_end` runs after the scheduler step, so step $i$'s record holds the latents the step produced,
    $x_{t_{i+1}}$ (the last one is the final $x_0$ latent), under the step's timestep $t_i$. $\hat{x}_0$ is stored
    where the scheduler makes it recoverable: multistep solvers that keep their converted model outputs as data
    predictions (`DPMSolverMultistepScheduler` with `algorithm_type="dpmsolver++"`/`"sde-dpmsolver++"`,
    `UniPCMultistepScheduler` with `predict_x0=True`) expose it directly; for `FlowMatchEulerDiscreteScheduler`
    (SD3, Flux) it is solved from two consecutive latents, $v = (x_{i+1} - x_i)/(\sigma_{i+1} - \sigma_i)$,
    $\hat{x}_0 = x_i - \sigma_i v$, so step 0 needs `initial_latents` (the `latents=` given to the pipeline).
    Other schedulers record latents only. Tensors are stored under the [`TraceConfig`] (`steps`, `dtype`, `device`,
    `max_bytes`, with a warning when the budget stops recording).

    Args:
        config ([`TraceConfig`], *optional*): what to keep (default: every step, float16 on CPU, 64 MiB).
        num_steps (`int`, *optional*): the run's step count, to resolve `config.steps="auto"` or a stride.
        initial_latents (`torch.Tensor`, *optional*): $x_T$ as handed to the pipeline, for step 0's $\hat{x}_0$.

    Example:

    ```py
    >>> trace_cb = LatentTraceCallback()
    >>> pipe("a red cat", num_inference_steps=4, callback_on_step_end=trace_cb)
    >>> trace_cb.trace.stack("latents").shape  # [steps, B, C, h, w] (packed [steps, B, N, C] for Flux)
    ```
    """

    tensor_inputs = ["latents"]

    def __init__(
        self,
        config: TraceConfig | None = None,
        num_steps: int | None = None,
        initial_latents: torch.Tensor | None = None,
    ):
        super().__init__(cutoff_step_ratio=1.0)
        self.trace_config = config or TraceConfig(steps="all")
        self.trace = Trace(config=self.trace_config, num_inference_steps=num_steps)
        self._budget = TraceBudget(self.trace)
        self._kept = self.trace_config.step_indices(num_steps)
        self._previous = None if initial_latents is None else initial_latents.detach().float()
        self._warned = False

    def callback_fn(self, pipeline, step_index: int, timestep, callback_kwargs: dict[str, Any]) -> dict[str, Any]:
        latents = callback_kwargs["latents"]
        x0 = _pred_original_sample(pipeline.scheduler, step_index, self._previous, latents)
        self.record(step_index, timestep, latents, x0)
        return callback_kwargs

    def record(self, step_index: int, timestep, latents: torch.Tensor, x0: torch.Tensor | None) -> None:
        """Store step `step_index`'s latents (after the step) and $\\hat{x}_0$ under the config's steps and budget."""
        self._previous = latents.detach().float()
        keep = self._kept is None or step_index in self._kept
        if isinstance(self.trace_config.steps, int) and self._kept is None:
            keep = step_index % self.trace_config.steps == 0
        if keep and not self.trace.truncated:
            t = float(timestep.flatten()[0]) if isinstance(timestep, torch.Tensor) else float(timestep)
            step = TraceStep(step_index=step_index, timestep=int(round(t)))
            if self.trace_config.latents:
                step.latents = self._store(latents)
            if self.trace_config.pred_original_sample and x0 is not None:
                step.pred_original_sample = self._store(x0)
            if not self.trace.truncated:
                self.trace.steps.append(step)

    def _store(self, tensor: torch.Tensor) -> torch.Tensor | None:
        config = self.trace_config
        stored = tensor.detach().to(device=config.device, dtype=config.dtype)
        if not self._budget.admit(stored):  # counts the pending step's tensors too
            if not self._warned:
                logger.warning(
                    "LatentTraceCallback reached TraceConfig.max_bytes=%d; later steps are not recorded. Raise "
                    "max_bytes or record fewer steps (TraceConfig(steps=...)).",
                    config.max_bytes,
                )
                self._warned = True
            return None
        return stored


def _pred_original_sample(scheduler, step_index: int, previous, latents: torch.Tensor) -> torch.Tensor | None:
    """$\\hat{x}_0$ of the step just taken, where the scheduler makes it recoverable (see [`LatentTraceCallback`])."""
    name = type(scheduler).__name__
    outputs = getattr(scheduler, "model_outputs", None)
    data_prediction = getattr(scheduler.config, "algorithm_type", "") in ("dpmsolver++", "sde-dpmsolver++") or (
        getattr(scheduler.config, "predict_x0", False) and name.startswith("UniPC")
    )
    if outputs and data_prediction and outputs[-1] is not None:
        return outputs[-1].detach()
    if name == "FlowMatchEulerDiscreteScheduler" and previous is not None and not scheduler.config.stochastic_sampling:
        sigma, sigma_next = float(scheduler.sigmas[step_index]), float(scheduler.sigmas[step_index + 1])
        velocity = (latents.float() - previous.to(latents.device)) / (sigma_next - sigma)
        return previous.to(latents.device) - sigma * velocity
    return None


class SchedulerStepTrace:
    r"""
    Record per-step latents of *any* stock pipeline, also those without `callback_on_step_end` (PixArt-α/Σ in
    diffusers 0.42), by wrapping the scheduler's `step` for the duration of a `with` block.

    Every pipeline's loop calls `scheduler.step(model_output, t, latents)` once per iteration; the wrapper calls the
    original step and records, into the same [`Trace`] as [`LatentTraceCallback`] (it uses one internally, with its
    `steps`, `dtype`, `device` and `max_bytes`), the latents the step produced under step $i$ and timestep $t_i$, and
    $\hat{x}_0$: the step output's `pred_original_sample` where the scheduler returns one (DDIM, DDPM, Euler, LCM,
    ...), else as [`LatentTraceCallback`] recovers it (DPM-Solver++/UniPC data predictions; flow matching from the
    step's own input, so no `initial_latents` is needed). The step is called with `return_dict=True` and its output
    handed back as the pipeline asked (`to_tuple()` for `return_dict=False`), so the latents are unchanged. The
    scheduler's own `step` is restored on exit, also after an exception.

    Args:
        pipeline: a diffusers pipeline (its `scheduler` is wrapped) or a scheduler.
        config ([`TraceConfig`], *optional*): what to keep (default: every step, float16 on CPU, 64 MiB).
        num_steps (`int`, *optional*): the run's step count, to resolve `config.steps="auto"` or a stride.

    Example:

    ```py
    >>> with SchedulerStepTrace(pipe) as recorder:  # e.g. a PixArtAlphaPipeline
    ...     pipe("a red cat", num_inference_steps=4)
    >>> recorder.trace.stack("latents").shape  # [steps, B, C, h, w]
    ```
    """

    def __init__(self, pipeline, config: TraceConfig | None = None, num_steps: int | None = None):
        self.scheduler = getattr(pipeline, "scheduler", pipeline)
        if not callable(getattr(self.scheduler, "step", None)):
            raise ValueError(
                f"{type(pipeline).__name__} has no scheduler with a `step` method; pass a diffusers pipeline or "
                "scheduler."
            )
        self.recorder = LatentTraceCallback(config, num_steps=num_steps)
        self.step_index = 0
        self._own_step = None

    @property
    def trace(self) -> Trace:
        return self.recorder.trace

    def __enter__(self) -> SchedulerStepTrace:
        scheduler = self.scheduler
        if "step" in scheduler.__dict__ and getattr(scheduler.__dict__["step"], "_scheduler_step_trace", False):
            raise ValueError("This scheduler's `step` is already traced by another SchedulerStepTrace; nest none.")
        self._own_step = scheduler.__dict__.get("step")
        original = scheduler.step
        signature = inspect.signature(original)

        def step(*args, **kwargs):
            bound = signature.bind(*args, **kwargs)
            return_dict = bound.arguments.get("return_dict", True)
            if "return_dict" in signature.parameters:
                bound.arguments["return_dict"] = True
            scheduler_index = getattr(scheduler, "step_index", None)
            output = original(*bound.args, **bound.kwargs)
            self._record(output, bound.arguments, scheduler_index)
            return output if return_dict or not isinstance(output, BaseOutput) else output.to_tuple()

        step._scheduler_step_trace = True
        scheduler.step = step
        return self

    def _record(self, output, arguments: dict, scheduler_index: int | None) -> None:
        latents = output.prev_sample if isinstance(output, BaseOutput) else output[0]
        x0 = getattr(output, "pred_original_sample", None) if isinstance(output, BaseOutput) else None
        if x0 is None:
            sample = arguments.get("sample")
            previous = sample.detach().float() if isinstance(sample, torch.Tensor) else self.recorder._previous
            index = self.step_index if scheduler_index is None else scheduler_index
            x0 = _pred_original_sample(self.scheduler, index, previous, latents)
        self.recorder.record(self.step_index, arguments.get("timestep", self.step_index), latents, x0)
        self.step_index += 1

    def __exit__(self, *exc) -> None:
        if self._own_step is None:
            self.scheduler.__dict__.pop("step", None)
        else:
            self.scheduler.step = self._own_step
