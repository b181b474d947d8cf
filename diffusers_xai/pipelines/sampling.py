r"""The sampling loop all pipelines share: argument checks, $x_T$, the reverse process step by step, the traced run."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass

import torch
from diffusers import DiffusionPipeline
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from diffusers.utils.torch_utils import randn_tensor

from ..capture import Trace, TraceConfig, TraceRecorder
from .schedulers import predict_original_sample

__all__ = [
    "DiffusionStep",
    "check_eta",
    "check_sampling_args",
    "denoise_progressive",
    "prepare_latents",
    "run_progressive",
]


@dataclass
class DiffusionStep:
    r"""One step of a pipeline's `progressive`: $x_t$, $t$, $x_{t-1}$ and $\hat{x}_0$."""

    step_index: int
    timestep: int
    sample: torch.Tensor
    prev_sample: torch.Tensor
    pred_original_sample: torch.Tensor | None


def check_sampling_args(scheduler, batch_size: int, num_inference_steps: int, generator, what: str) -> None:
    """
    The checks every pipeline's `check_inputs` starts with: `batch_size` (named `what` in the messages, e.g.
    `"num_rows"`) is a positive int, `num_inference_steps` an int in [1, `num_train_timesteps`], and a list of
    generators has one generator per sample. Raises `ValueError` saying what was passed.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"`{what}` must be a positive int, got {batch_size!r}.")
    max_steps = scheduler.config.num_train_timesteps
    if isinstance(num_inference_steps, bool) or not isinstance(num_inference_steps, int):
        raise ValueError(f"`num_inference_steps` must be an int, got {num_inference_steps!r}.")
    if not 1 <= num_inference_steps <= max_steps:
        raise ValueError(
            f"`num_inference_steps` must be between 1 and the scheduler's num_train_timesteps ({max_steps}), "
            f"got {num_inference_steps}."
        )
    if isinstance(generator, list) and len(generator) != batch_size:
        raise ValueError(
            f"You have passed a list of generators of length {len(generator)}, but requested {what}={batch_size}. "
            "Make sure the number of generators matches."
        )


def check_eta(eta) -> None:
    r"""DDIM's $\eta$ must be a number in [0, 1] (0: deterministic DDIM, 1: DDPM's posterior variance); beyond 1 the
    variance $\sigma_t^2$ exceeds $1 - \bar\alpha_{t-1}$ and the step takes the square root of a negative number."""
    if isinstance(eta, bool) or not isinstance(eta, (int, float)) or not 0.0 <= eta <= 1.0:
        raise ValueError(f"`eta` must be a number in [0, 1] (0 = deterministic DDIM, 1 = DDPM noise), got {eta!r}.")


def prepare_latents(
    scheduler: SchedulerMixin,
    shape: tuple[int, ...],
    generator=None,
    device: torch.device | None = None,
    dtype: torch.dtype | None = None,
    latents: torch.Tensor | None = None,
) -> torch.Tensor:
    r"""
    $x_T$ of `shape`: fresh noise from `generator` (diffusers' `randn_tensor`, so a list of generators gives one
    sample each), or the given `latents` moved to `device`/`dtype`; scaled by the scheduler's `init_noise_sigma`
    (1.0 for DDPM, DDIM and DPM-Solver++, so their samples are exactly those of `DDPMPipeline`/`DDIMPipeline`).
    """
    if latents is None:
        x = randn_tensor(shape, generator=generator, device=device, dtype=dtype)
    else:
        x = latents.to(device=device, dtype=dtype)
    return x * scheduler.init_noise_sigma


def denoise_progressive(
    model: torch.nn.Module,
    scheduler: SchedulerMixin,
    sample: torch.Tensor,
    generator=None,
    eta: float = 0.0,
    model_kwargs: dict | None = None,
    recorder: TraceRecorder | None = None,
) -> Iterator[DiffusionStep]:
    r"""
    The reverse process from $x_T$ = `sample` over `scheduler.timesteps` (set by the caller), yielding a
    [`DiffusionStep`] per step (as improved-diffusion's `p_sample_loop_progressive`); the next step starts from the
    yielded step's `prev_sample` as the consumer leaves it (`callback_on_step_end` may replace it). Any model with the
    `model(x_t, t, **model_kwargs).sample` convention works (`model_kwargs` such as `{"class_labels": y}`). `eta`
    and `generator` reach `scheduler.step` only if it accepts them (as diffusers' `prepare_extra_step_kwargs`). With
    a `recorder`, $\hat{x}_0$ is recorded at every recorded step (computed from the model output when the scheduler
    does not return it).
    """
    check_eta(eta)
    params = set(inspect.signature(scheduler.step).parameters)
    step_kwargs = {k: v for k, v in (("eta", eta), ("generator", generator)) if k in params}
    model_kwargs = model_kwargs or {}
    for i, t in enumerate(scheduler.timesteps):
        # 1. predict noise model_output
        model_input = scheduler.scale_model_input(sample, t)
        model_output = model(model_input, t, **model_kwargs).sample
        # 2. compute previous sample: x_t -> x_t-1
        out = scheduler.step(model_output, t, sample, **step_kwargs)
        pred_x0 = getattr(out, "pred_original_sample", None)
        if recorder is not None and recorder.recording:
            if pred_x0 is None:
                pred_x0 = predict_original_sample(scheduler, model_output, t, sample)
                if getattr(scheduler.config, "thresholding", False) and hasattr(scheduler, "_threshold_sample"):
                    # the x0 the scheduler steps with (DPM-Solver++ thresholds it in `convert_model_output`)
                    pred_x0 = scheduler._threshold_sample(pred_x0)
            # what the scheduler stepped with (under guidance the mix, not the denoiser's doubled output)
            recorder.record_latents(pred_original_sample=pred_x0, model_output=model_output)
        step = DiffusionStep(i, int(t), sample, out.prev_sample, pred_x0)
        yield step
        sample = step.prev_sample  # as the consumer left it (a `callback_on_step_end` may replace the latents)


def run_progressive(
    pipeline: DiffusionPipeline,
    model: torch.nn.Module,
    config: TraceConfig | None,
    progressive: Callable[..., Iterator[DiffusionStep]],
    on_step_end: Callable[[DiffusionStep], None] | None = None,
) -> tuple[torch.Tensor, Trace | None]:
    """
    What a pipeline's `__call__` does once its inputs are checked, `pipeline.scheduler.set_timesteps` is called and
    $x_T$ is drawn: drain `progressive(recorder=...)` (e.g. [`denoise_progressive`] with everything but the recorder
    bound) under the pipeline's progress bar, with a [`TraceRecorder`] on `model` open for the whole loop when
    `config` is set, calling `on_step_end(step)` after every step (which may replace `step.prev_sample`) and stopping
    early when `pipeline.interrupt` is set (as diffusers' pipelines do). Returns the final sample $x_0$ (model space)
    and the trace (or `None`).
    """
    num_steps = len(pipeline.scheduler.timesteps)
    recorder = TraceRecorder(model, config, num_steps=num_steps) if config else None
    sample = None
    with recorder if recorder is not None else nullcontext():
        with pipeline.progress_bar(total=num_steps) as bar:
            for step in progressive(recorder=recorder):
                if on_step_end is not None:
                    on_step_end(step)
                sample = step.prev_sample
                bar.update()
                if getattr(pipeline, "interrupt", False):
                    break
    return sample, recorder.trace if recorder is not None else None
