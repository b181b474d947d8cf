r"""A diffusers `PipelineCallback` recording per-step latents (and $\hat{x}_0$ where recoverable) into a [`Trace`]."""

from __future__ import annotations

import logging
from typing import Any

import torch
from diffusers.callbacks import PipelineCallback

from .config import TraceConfig
from .trace import Trace, TraceStep

__all__ = ["LatentTraceCallback"]

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
        self._kept = self.trace_config.step_indices(num_steps)
        self._previous = None if initial_latents is None else initial_latents.detach().float()
        self._warned = False

    def callback_fn(self, pipeline, step_index: int, timestep, callback_kwargs: dict[str, Any]) -> dict[str, Any]:
        latents = callback_kwargs["latents"]
        x0 = _pred_original_sample(pipeline.scheduler, step_index, self._previous, latents)
        self._previous = latents.detach().float()
        keep = self._kept is None or step_index in self._kept
        if isinstance(self.trace_config.steps, int) and self._kept is None:
            keep = step_index % self.trace_config.steps == 0
        if keep and not self.trace.truncated:
            t = float(timestep.flatten()[0]) if isinstance(timestep, torch.Tensor) else float(timestep)
            step = TraceStep(step_index=step_index, timestep=int(round(t)))
            if self.trace_config.latents:
                step.latents = self._store(latents, step)
            if self.trace_config.pred_original_sample and x0 is not None:
                step.pred_original_sample = self._store(x0, step)
            if not self.trace.truncated:
                self.trace.steps.append(step)
        return callback_kwargs

    def _store(self, tensor: torch.Tensor, pending: TraceStep) -> torch.Tensor | None:
        config = self.trace_config
        stored = tensor.detach().to(device=config.device, dtype=config.dtype)
        if self.trace.nbytes + pending.nbytes + stored.numel() * stored.element_size() > config.max_bytes:
            self.trace.truncated = True
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
