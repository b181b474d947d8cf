r"""Per-time-step and per-channel explanations of generated time series: attributions of a region of
$\hat{x}_0$ to the noisy window $x_t$, and which time steps commit first along the trajectory; plus plots."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ..capture import Trace
from ..pipelines.schedulers import predict_original_sample
from ..viz._io import new_figure, save_figure
from .base import frozen_parameters, recorded_inputs
from .tabular import PLOT_DPI
from .trajectory import first_settled_steps, recorded_pred_x0

__all__ = [
    "SeriesCommitResult",
    "TimeSeriesAttribution",
    "TimeSeriesExplanation",
    "plot_series_attributions",
    "plot_series_commit_steps",
    "series_commit_steps",
]


@dataclass
class TimeSeriesExplanation:
    r"""
    What [`TimeSeriesAttribution.attribute`] returns.

    Args:
        method (`str`): `"integrated_gradients"` or `"shap"`.
        channels (`list[str]`): channel names.
        attributions (`torch.Tensor` `[K, B, C, L]`): attribution of the target to every element of $x_t$.
        timesteps (`list[int]`), step_indices (`list[int | None]`): the explained steps.
        target (`dict`): the explained region (`channel`, `time`).
        delta (`torch.Tensor` `[K, B]`, *optional*): IG's convergence delta, when requested.
    """

    method: str
    channels: list[str]
    attributions: torch.Tensor
    timesteps: list[int]
    step_indices: list[int | None]
    target: dict = field(default_factory=dict)
    delta: torch.Tensor | None = None

    @property
    def per_time_step(self) -> torch.Tensor:
        """$\\sum_c |a_{c,l}|$: `[K, B, L]`."""
        return self.attributions.abs().sum(dim=2)

    @property
    def per_channel(self) -> torch.Tensor:
        """$\\sum_l |a_{c,l}|$: `[K, B, C]`."""
        return self.attributions.abs().sum(dim=3)


class _RegionTarget(nn.Module):
    r"""$x_t \mapsto \sum_{(c, l) \in R} \hat{x}_0(x_t, t)_{c,l}$, `[B]` (or `[B, 1]` for shap)."""

    def __init__(self, denoiser, scheduler, timestep: int, mask: torch.Tensor, keepdim: bool = False):
        super().__init__()
        self.denoiser, self.scheduler, self.timestep, self.keepdim = denoiser, scheduler, timestep, keepdim
        self.register_buffer("mask", mask)

    def forward(self, x_t):
        x0 = predict_original_sample(self.scheduler, self.denoiser(x_t, self.timestep).sample, self.timestep, x_t)
        y = (x0 * self.mask.to(x0.dtype)).flatten(1).sum(dim=1)
        return y[:, None] if self.keepdim else y


def _index(value, size: int, what: str, names: list[str] | None = None):
    if value is None:
        return slice(None)
    if isinstance(value, str):
        if names is None or value not in names:
            raise ValueError(f"Unknown {what} {value!r}; choose one of {names}.")
        return names.index(value)
    if isinstance(value, slice):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        if not -size <= value < size:
            raise ValueError(f"{what} index {value} is out of range for size {size}.")
        return value
    raise TypeError(f"The target {what} must be an int, a slice{', a name' if names else ''} or None, got {value!r}.")


class TimeSeriesAttribution:
    r"""
    Attribute a region of the predicted clean window $\hat{x}_0(x_t, t)$ (one channel, one time step, a slice, or
    everything) to every element of the noisy window $x_t$, at chosen steps of a [`TimeSeriesXAIPipeline`] run:
    "which time steps and channels of the current noisy series made the model predict this value".

    `method="integrated_gradients"` is captum's `IntegratedGradients` from $x_t = 0$ (the noise mean);
    `method="shap"` is shap's `GradientExplainer` (expected gradients) against standard-normal windows.
    Sampling ran without gradients; `attribute()` enables them only for the explained forward passes.

    Args:
        pipeline ([`TimeSeriesXAIPipeline`]): gives the denoiser, scheduler and preprocessor (channel names).
        method (`"integrated_gradients"` or `"shap"`, *optional*, defaults to `"integrated_gradients"`).

    Example:

    ```py
    >>> out = pipe(num_series=8, num_inference_steps=50, trace=True)
    >>> expl = TimeSeriesAttribution(pipe).attribute(out.trace, timesteps=[int(out.trace.timesteps[25])],
    ...                                              target_channel=0, target_time=12)
    >>> expl.per_time_step.shape  # [1, 8, 24]
    >>> plot_series_attributions(expl, "series_ig.png")
    ```
    """

    def __init__(self, pipeline, method: Literal["integrated_gradients", "shap"] = "integrated_gradients"):
        if method not in ("integrated_gradients", "shap"):
            raise ValueError(f"`method` must be 'integrated_gradients' or 'shap', got {method!r}.")
        for name in ("denoiser", "scheduler", "preprocessor"):
            if getattr(pipeline, name, None) is None:
                raise TypeError(f"Expected a TimeSeriesXAIPipeline (with .{name}), got {type(pipeline).__name__}.")
        self.pipeline = pipeline
        self.method = method

    def _steps(self, inputs, timesteps) -> list[tuple[torch.Tensor, int, int | None]]:
        shape = self.pipeline.preprocessor.sample_shape
        if isinstance(inputs, Trace):
            return recorded_inputs(inputs, timesteps)
        if not isinstance(inputs, torch.Tensor):
            raise TypeError(f"`inputs` must be a Trace or a tensor x_t [B, C, L], got {type(inputs).__name__}.")
        if inputs.ndim != 3 or tuple(inputs.shape[1:]) != tuple(shape):
            raise ValueError(f"`inputs` x_t must have shape [B, {shape[0]}, {shape[1]}], got {tuple(inputs.shape)}.")
        if timesteps is None:
            raise ValueError("Explaining a tensor x_t needs `timesteps=` (the t of that x_t).")
        return [(inputs, int(t), None) for t in np.atleast_1d(timesteps)]

    def attribute(
        self,
        inputs: Trace | torch.Tensor,
        timesteps: int | Sequence[int] | None = None,
        target_channel: int | str | slice | None = None,
        target_time: int | slice | None = None,
        n_steps: int = 32,
        nsamples: int = 64,
        return_convergence_delta: bool = False,
        seed: int = 0,
    ) -> TimeSeriesExplanation:
        r"""
        Args:
            inputs ([`Trace`] or `torch.Tensor` `[B, C, L]`): a trace of the run, or $x_t$.
            timesteps (`int` or `list[int]`, *optional*): which steps; `None` = every recorded step of a trace.
            target_channel (`int`, `str`, `slice`, *optional*): channel(s) of $\hat{x}_0$ to explain; `None` = all.
            target_time (`int` or `slice`, *optional*): time step(s) of $\hat{x}_0$ to explain; `None` = all.
            n_steps (`int`, *optional*, defaults to 32): IG's Riemann steps.
            nsamples (`int`, *optional*, defaults to 64): shap's samples per window.
            return_convergence_delta (`bool`, *optional*, defaults to `False`): IG only.
            seed (`int`, *optional*, defaults to 0): shap's seed.

        Returns:
            [`TimeSeriesExplanation`] with attributions `[K, B, C, L]`.
        """
        pipe = self.pipeline
        denoiser, pre = pipe.denoiser, pipe.preprocessor
        c, length = pre.sample_shape
        if return_convergence_delta and self.method != "integrated_gradients":
            raise ValueError("`return_convergence_delta` is only available for method='integrated_gradients'.")
        mask = torch.zeros(1, c, length)
        mask[:, _index(target_channel, c, "channel", pre.channels), _index(target_time, length, "time")] = 1.0
        if mask.sum() == 0:
            raise ValueError(f"The target (channel={target_channel!r}, time={target_time!r}) selects nothing.")
        steps = self._steps(inputs, timesteps)
        device, dtype = denoiser.device, denoiser.dtype
        attrs, deltas = [], []
        with frozen_parameters(denoiser):
            for x_t, t, _ in tqdm(steps, desc="attribute", leave=False, disable=len(steps) < 2):
                x_t = x_t.to(device=device, dtype=dtype)
                with torch.enable_grad():
                    if self.method == "integrated_gradients":
                        from captum.attr import IntegratedGradients

                        forward = _RegionTarget(denoiser, pipe.scheduler, t, mask.to(device))
                        attr, delta = IntegratedGradients(forward).attribute(
                            x_t, baselines=torch.zeros_like(x_t), n_steps=n_steps, return_convergence_delta=True
                        )
                        deltas.append(delta.detach().cpu())
                    else:
                        attr = self._shap(
                            _RegionTarget(denoiser, pipe.scheduler, t, mask.to(device), True), x_t, nsamples, seed
                        )
                attrs.append(attr.detach().cpu().float())
        return TimeSeriesExplanation(
            method=self.method,
            channels=list(pre.channels),
            attributions=torch.stack(attrs),
            timesteps=[t for _, t, _ in steps],
            step_indices=[i for _, _, i in steps],
            target={"channel": target_channel, "time": target_time},
            delta=torch.stack(deltas) if return_convergence_delta else None,
        )

    @staticmethod
    def _shap(model, x_t, nsamples: int, seed: int) -> torch.Tensor:
        import shap

        gen = torch.Generator().manual_seed(seed)
        background = torch.randn(max(nsamples, 16), *x_t.shape[1:], generator=gen).to(x_t)
        values = shap.GradientExplainer(model, background).shap_values(x_t, nsamples=nsamples, rseed=seed)
        values = np.asarray(values[0] if isinstance(values, list) else values)
        if values.ndim == x_t.ndim + 1:  # trailing output dimension of size 1
            values = values[..., 0]
        return torch.from_numpy(values)


# ---- trajectory ----
@dataclass
class SeriesCommitResult:
    r"""
    What [`series_commit_steps`] returns.

    Args:
        channels (`list[str]`): channel names.
        step_indices (`torch.Tensor` `[B, C, L]`): loop index of the first recorded step from which each element
            of $\hat{x}_0$ stays within `tolerance` of its final value.
        fraction (`torch.Tensor` `[B, C, L]`): the same as a fraction of the run.
        recorded_steps (`list[int]`): loop indices of the recorded steps.
    """

    channels: list[str]
    step_indices: torch.Tensor
    fraction: torch.Tensor
    recorded_steps: list[int]

    def per_time_step(self) -> torch.Tensor:
        """Mean commit fraction of each time step over rows and channels, `[L]`."""
        return self.fraction.mean(dim=(0, 1))


def series_commit_steps(
    trace: Trace, channels: list[str] | None = None, tolerance: float = 0.05
) -> SeriesCommitResult:
    r"""
    When each time step of each channel commits: the first recorded step after which $\hat{x}_0$ stays within
    `tolerance` (in normalised units; [-1, 1] for min-max data) of its final value. Needs `pred_original_sample`
    in the trace (the default `TraceConfig`).
    """
    x0, recorded = recorded_pred_x0(trace, tolerance)  # [S, B, C, L]
    if x0.ndim != 4:
        raise ValueError(f"Expected a time-series trace with [B, C, L] samples, got {tuple(x0.shape[1:])}.")
    step_idx, fraction = first_settled_steps((x0 - x0[-1:]).abs() <= tolerance, recorded, trace.num_inference_steps)
    names = channels or [f"channel_{i}" for i in range(x0.shape[2])]
    return SeriesCommitResult(names, step_idx, fraction, recorded)


# ---- plots ----
def plot_series_attributions(explanation: TimeSeriesExplanation, path: str, sample: int = 0, step: int = -1) -> str:
    """Heatmap of one window's attributions `[C, L]` (signed) with the per-time-step |attribution| underneath."""
    attr = explanation.attributions[step, sample].numpy()
    vmax = float(np.abs(attr).max()) or 1.0
    fig = new_figure(7, 1.0 + 0.35 * attr.shape[0] + 1.5)
    ax, ax2 = fig.subplots(2, 1, sharex=True)
    im = ax.imshow(attr, cmap="RdBu_r", vmin=-vmax, vmax=vmax, aspect="auto")
    ax.set_yticks(range(len(explanation.channels)), explanation.channels, fontsize=7)
    ax.set_title(f"{explanation.method}, t = {explanation.timesteps[step]}, target {explanation.target}", fontsize=8)
    fig.colorbar(im, ax=ax, label="attribution")
    ax2.bar(range(attr.shape[1]), explanation.per_time_step[step, sample].numpy(), color="gray")
    ax2.set_xlabel("time step of x_t")
    ax2.set_ylabel("Σ|attr|", fontsize=8)
    save_figure(fig, path, tight=True, dpi=PLOT_DPI)
    return path


def plot_series_commit_steps(result: SeriesCommitResult, path: str) -> str:
    """Heatmap of the mean commit fraction per channel and time step (darker = commits earlier)."""
    grid = result.fraction.mean(dim=0).numpy()
    fig = new_figure(7, 0.35 * grid.shape[0] + 1.6)
    ax = fig.subplots()
    im = ax.imshow(grid, cmap="magma", vmin=0, vmax=1, aspect="auto")
    ax.set_yticks(range(len(result.channels)), result.channels, fontsize=7)
    ax.set_xlabel("time step")
    fig.colorbar(im, ax=ax, label="commit step (fraction of the run)")
    save_figure(fig, path, tight=True, dpi=PLOT_DPI)
    return path
