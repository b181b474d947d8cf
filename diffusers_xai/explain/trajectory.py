r"""Trajectory analysis of a trace: how $x_t$ and $\hat{x}_0$ move, when each pixel commits, SNR per step."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..capture import Trace

__all__ = ["TrajectoryAnalysis", "analyze_trajectory", "commit_steps", "first_settled_steps", "recorded_pred_x0"]


@dataclass
class TrajectoryAnalysis:
    r"""
    Per-step statistics of one sampling run (S recorded steps, B samples).

    Args:
        step_indices (`list[int]`): loop indices of the recorded steps.
        timesteps (`torch.Tensor`): their scheduler timesteps `[S]`.
        latent_change (`torch.Tensor`): RMS change of $x_t$ between consecutive recorded steps `[S-1, B]`.
        x0_change (`torch.Tensor`): RMS change of $\hat{x}_0$ between consecutive recorded steps `[S-1, B]`.
        x0_distance_to_final (`torch.Tensor`): RMS distance of $\hat{x}_0$ at each step to the final sample `[S, B]`.
        commit_step (`torch.Tensor`): per pixel, the loop index from which $\hat{x}_0$ stays within `eps` of the
            final sample in every channel until the end `[B, H, W]` (`num_inference_steps` if it never does).
        commit_fraction (`torch.Tensor`): `commit_step` as a fraction of the run, `[B, H, W]` in [0, 1].
        snr (`torch.Tensor`, *optional*): $\mathrm{SNR}(t) = \bar\alpha_t / (1 - \bar\alpha_t)$ per step `[S]`
            (needs the scheduler).
        eps (`float`): the commit tolerance.
    """

    step_indices: list[int]
    timesteps: torch.Tensor
    latent_change: torch.Tensor
    x0_change: torch.Tensor
    x0_distance_to_final: torch.Tensor
    commit_step: torch.Tensor
    commit_fraction: torch.Tensor
    snr: torch.Tensor | None
    eps: float

    def summary(self, sample_index: int = 0) -> dict:
        """JSON-able numbers for one sample."""
        out = {
            "eps": self.eps,
            "mean_commit_fraction": float(self.commit_fraction[sample_index].mean()),
            "x0_distance_to_final": [round(float(v), 6) for v in self.x0_distance_to_final[:, sample_index]],
            "timesteps": [int(t) for t in self.timesteps],
        }
        if self.snr is not None:
            out["log10_snr"] = [round(float(v), 4) for v in self.snr.clamp_min(1e-30).log10()]
        return out


def _rms(x: torch.Tensor) -> torch.Tensor:
    return x.pow(2).flatten(2).mean(dim=2).sqrt()


def commit_steps(
    x0: torch.Tensor, final: torch.Tensor, step_indices: list[int], eps: float, never: int
) -> torch.Tensor:
    r"""
    The first recorded step from which $|\hat{x}_0 - x_{\text{final}}| \le \varepsilon$ holds at every later step,
    per pixel (all channels), `[B, H, W]`; `never` where even the last step is outside the tolerance.

    Args:
        x0 (`torch.Tensor`): $\hat{x}_0$ over the recorded steps `[S, B, C, H, W]`.
        final (`torch.Tensor`): the final sample `[B, C, H, W]`.
    """
    within = ((x0 - final.unsqueeze(0)).abs() <= eps).all(dim=2)  # [S, B, H, W]
    # settled[s] = within at s and at every later step: a reverse cumulative AND
    settled = within.flip(0).int().cumprod(dim=0).flip(0).bool()
    steps = torch.tensor(step_indices, dtype=torch.long).view(-1, 1, 1, 1).expand_as(settled)
    big = torch.full_like(steps, never)
    return torch.where(settled, steps, big).amin(dim=0)


def recorded_pred_x0(trace: Trace, tolerance: float) -> tuple[torch.Tensor, list[int]]:
    r"""
    $\hat{x}_0$ of the recorded steps that hold it, stacked as float `[S, B, ...]`, and their loop indices: what the
    per-column and per-time-step commit steps start from. Checks that `trace` is a [`Trace`] with
    `pred_original_sample` and that `tolerance` > 0.
    """
    if not isinstance(trace, Trace):
        raise TypeError(f"`trace` must be a Trace, got {type(trace).__name__}.")
    if tolerance <= 0:
        raise ValueError(f"`tolerance` must be > 0, got {tolerance}.")
    steps = [s for s in trace.steps if s.pred_original_sample is not None]
    if not steps:
        raise ValueError(
            "The trace holds no pred_original_sample; record it with TraceConfig(pred_original_sample=True)."
        )
    return torch.stack([s.pred_original_sample.float() for s in steps]), [s.step_index for s in steps]


def first_settled_steps(
    settled: torch.Tensor, recorded: list[int], num_inference_steps: int | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """
    Per element of `settled` `[S, ...]` (within tolerance of its final value at each recorded step), the loop index
    of the first recorded step from which it stays settled until the end, and that index as a fraction of the run
    of `num_inference_steps` (`None`: the last recorded step ends the run). The last step is always settled.
    """
    # committed at s iff settled at every s' >= s: reverse cumulative AND
    stays = torch.flip(torch.cummin(torch.flip(settled.int(), [0]), dim=0).values, [0]).bool()
    first = torch.argmax(stays.int(), dim=0)  # first True
    step_idx = torch.tensor(recorded)[first]
    total = max(num_inference_steps or (recorded[-1] + 1), 1)
    return step_idx, step_idx.float() / max(total - 1, 1)


def analyze_trajectory(
    trace: Trace, scheduler=None, eps: float = 0.1, final: torch.Tensor | None = None
) -> TrajectoryAnalysis:
    r"""
    Analyse the denoising trajectory recorded in a [`Trace`].

    Args:
        trace ([`Trace`]): with `latents` and `pred_original_sample` recorded.
        scheduler (*optional*): gives $\mathrm{SNR}(t)$ from its `alphas_cumprod`.
        eps (`float`, *optional*, defaults to 0.1): commit tolerance, in data units ([-1, 1] images: 5% of the range).
        final (`torch.Tensor`, *optional*): the final sample `[B, C, H, W]` in the model's data range ([-1, 1]);
            defaults to the last recorded $\hat{x}_0$ (the final sample of DDPM/DDIM up to clipping).

    Returns:
        [`TrajectoryAnalysis`].
    """
    if not isinstance(eps, (int, float)) or eps <= 0:
        raise ValueError(f"`eps` must be a positive number, got {eps!r}.")
    latents = trace.stack("latents").float()
    x0 = trace.stack("pred_original_sample").float()
    if len(trace.steps) < 2:
        raise ValueError("Trajectory analysis needs at least two recorded steps.")
    if final is None:
        final = x0[-1]
    final = final.float().to(x0.device)
    if final.shape != x0.shape[1:]:
        raise ValueError(f"`final` must have shape {tuple(x0.shape[1:])}, got {tuple(final.shape)}.")
    step_indices = trace.step_indices
    never = trace.num_inference_steps if trace.num_inference_steps is not None else step_indices[-1] + 1
    commit = commit_steps(x0, final, step_indices, float(eps), never)
    last = max(never - 1, 1)
    snr = None
    if scheduler is not None and hasattr(scheduler, "alphas_cumprod"):
        alpha_bar = scheduler.alphas_cumprod.float()[trace.timesteps]
        snr = alpha_bar / (1 - alpha_bar)
    return TrajectoryAnalysis(
        step_indices=step_indices,
        timesteps=trace.timesteps,
        latent_change=_rms(latents[1:] - latents[:-1]),
        x0_change=_rms(x0[1:] - x0[:-1]),
        x0_distance_to_final=_rms(x0 - final.unsqueeze(0)),
        commit_step=commit,
        commit_fraction=(commit.float() / last).clamp(max=1.0),
        snr=snr,
        eps=float(eps),
    )
