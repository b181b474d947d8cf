"""The schedulers our pipelines sample with, built by name, with safe pixel-space defaults."""

from __future__ import annotations

import logging
from typing import Literal

import torch
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler
from diffusers.schedulers.scheduling_utils import SchedulerMixin

__all__ = [
    "NOISE_SCHEDULE_KEYS",
    "SCHEDULERS",
    "SchedulerName",
    "injects_noise",
    "make_scheduler",
    "noise_schedule",
    "predict_original_sample",
    "scheduler_name",
]

logger = logging.getLogger(__name__)

SchedulerName = Literal["ddpm", "ddim", "dpmsolver"]
SCHEDULERS: dict[str, type[SchedulerMixin]] = {
    "ddpm": DDPMScheduler,
    "ddim": DDIMScheduler,
    "dpmsolver": DPMSolverMultistepScheduler,
}
BETA_SCHEDULES = ("linear", "squaredcos_cap_v2", "scaled_linear")

# Pixel-space DPM-Solver++ diverges on roughly one sample in ten (values far outside [-1, 1]) unless its data
# prediction is dynamically thresholded; diffusers leaves `thresholding=False` because latent-space models must
# not threshold. Our pipelines sample in pixel space, so this is the default whenever *we* build the scheduler.
#
# `timestep_spacing="trailing"` (Lin et al. 2023, https://huggingface.co/papers/2305.08891, Table 2): built from a
# DDPM config, DPM-Solver inherits its "leading" spacing, whose first of 20 steps is t=940 of 1000, so x_T ~ N(0, I)
# is denoised as if it were the far less noisy x_940; "trailing" starts at t=999. `bench/sampler_quality.py`.
DPM_SOLVER_PIXEL_DEFAULTS = {
    "thresholding": True,
    "sample_max_value": 1.0,
    "algorithm_type": "dpmsolver++",
    "timestep_spacing": "trailing",
}


# What a trained denoiser fixes (its betas, output convention and, for learned variances, output width); every other
# key of a scheduler's config (clipping, thresholding, timestep spacing, solver order, SDE or ODE, ...) is a choice
# of the sampler, which `set_scheduler` must not carry from one scheduler to the next.
NOISE_SCHEDULE_KEYS = (
    "num_train_timesteps",
    "beta_start",
    "beta_end",
    "beta_schedule",
    "trained_betas",
    "prediction_type",
    "rescale_betas_zero_snr",
    "variance_type",
)


def noise_schedule(config) -> dict:
    """The noise-schedule part of a scheduler config ([`NOISE_SCHEDULE_KEYS`]): what a new sampler for the same
    denoiser keeps. `set_scheduler("dpmsolver")` after `set_scheduler("dpmsolver", algorithm_type="sde-dpmsolver++")`
    is then the ODE solver again, not the SDE one that `from_config` of the whole config would give."""
    return {key: config[key] for key in NOISE_SCHEDULE_KEYS if key in config}


def injects_noise(scheduler: SchedulerMixin, eta: float = 0.0) -> bool:
    """Whether sampling with `scheduler` (and DDIM's `eta`) adds fresh noise at each step, as DDPM's ancestral steps,
    DDIM with `eta > 0` and DPM-Solver's SDE forms do; the ODE samplers (DDIM with `eta = 0`, DPM-Solver's ODE forms)
    map $x_T$ to $x_0$ deterministically."""
    if isinstance(scheduler, DDIMScheduler):
        return eta > 0
    if isinstance(scheduler, DPMSolverMultistepScheduler):
        return scheduler.config.algorithm_type.startswith("sde")
    return isinstance(scheduler, DDPMScheduler) or "Ancestral" in type(scheduler).__name__


def scheduler_name(scheduler: SchedulerMixin) -> str:
    for name, cls in SCHEDULERS.items():
        if type(scheduler) is cls:
            return name
    return type(scheduler).__name__


def make_scheduler(
    name: str,
    config: dict | None = None,
    *,
    num_train_timesteps: int | None = None,
    beta_schedule: str | None = None,
    prediction_type: str | None = None,
    **kwargs,
) -> SchedulerMixin:
    """
    Build a scheduler by name (`"ddpm"`, `"ddim"`, `"dpmsolver"`), optionally from another scheduler's config.

    `DPMSolverMultistepScheduler` gets `thresholding=True, sample_max_value=1.0` unless the caller sets them.

    Example:

    ```py
    >>> ddim = make_scheduler("ddim", pipe.scheduler.config)
    >>> dpm = make_scheduler("dpmsolver", beta_schedule="squaredcos_cap_v2")
    ```
    """
    if not isinstance(name, str) or name.lower() not in SCHEDULERS:
        raise ValueError(f"Unknown scheduler type {name!r}; choose one of {sorted(SCHEDULERS)}.")
    cls = SCHEDULERS[name.lower()]
    overrides = dict(kwargs)
    for key, value in (
        ("num_train_timesteps", num_train_timesteps),
        ("beta_schedule", beta_schedule),
        ("prediction_type", prediction_type),
    ):
        if value is not None:
            overrides[key] = value
    schedule = overrides.get("beta_schedule", (config or {}).get("beta_schedule", "linear"))
    if schedule not in BETA_SCHEDULES:
        raise ValueError(
            f"Unknown beta_schedule {schedule!r}; choose one of {BETA_SCHEDULES} (cosine = 'squaredcos_cap_v2')."
        )
    if cls is DPMSolverMultistepScheduler:
        for key, value in DPM_SOLVER_PIXEL_DEFAULTS.items():
            overrides.setdefault(key, value)
    if config is not None:
        return cls.from_config(config, **overrides)
    return cls(**overrides)


def predict_original_sample(
    scheduler: SchedulerMixin, model_output: torch.Tensor, timestep, sample: torch.Tensor
) -> torch.Tensor:
    r"""
    $\hat{x}_0$ from the model output at timestep $t$, for schedulers whose `step()` does not return it.

    $\hat{x}_0 = (x_t - \sqrt{1-\bar\alpha_t}\,\epsilon)/\sqrt{\bar\alpha_t}$ for epsilon prediction,
    $\sqrt{\bar\alpha_t}\,x_t - \sqrt{1-\bar\alpha_t}\,v$ for v-prediction, the output itself for sample prediction.
    """
    alphas_cumprod = scheduler.alphas_cumprod.to(device=sample.device, dtype=torch.float32)
    t = int(timestep)
    alpha_bar = alphas_cumprod[t]
    x_t, out = sample.float(), model_output.float()
    prediction_type = scheduler.config.prediction_type
    if prediction_type == "epsilon":
        x0 = (x_t - (1 - alpha_bar).sqrt() * out) / alpha_bar.sqrt()
    elif prediction_type == "v_prediction":
        x0 = alpha_bar.sqrt() * x_t - (1 - alpha_bar).sqrt() * out
    elif prediction_type == "sample":
        x0 = out
    else:
        raise ValueError(f"Unsupported prediction_type {prediction_type!r}.")
    return x0.to(sample.dtype)
