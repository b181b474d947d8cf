"""Denoising trajectories: a strip of x_t and predicted x0, the commit-step map, curves and an optional GIF."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import PIL.Image
import torch

from ..capture import Trace
from ..explain.trajectory import TrajectoryAnalysis
from ._io import image_for_imshow, label_row, new_figure, save_figure, save_pil, to_display_images

__all__ = ["save_commit_step_map", "save_denoising_gif", "save_trajectory_curves", "save_trajectory_strip"]


def _pick(n: int, k: int) -> list[int]:
    if n <= k:
        return list(range(n))
    return sorted({round(i * (n - 1) / (k - 1)) for i in range(k)})


def save_trajectory_strip(trace: Trace, path: str | os.PathLike, sample_index: int = 0, max_steps: int = 8) -> Path:
    r"""
    Save a strip of $x_t$ (top row) and the predicted $\hat{x}_0$ (bottom row) at up to `max_steps` evenly
    spaced recorded steps of one sample of a [`Trace`].
    """
    rows = [(name, trace.stack(name)) for name in ("latents", "pred_original_sample") if _has(trace, name)]
    if not rows:
        raise ValueError("The trace holds neither latents nor pred_original_sample.")
    n = rows[0][1].shape[0]
    if not -rows[0][1].shape[1] <= sample_index < rows[0][1].shape[1]:
        raise ValueError(f"`sample_index` {sample_index} is out of range for a batch of {rows[0][1].shape[1]}.")
    cols = _pick(n, max_steps)
    steps = [s for s in trace.steps if getattr(s, rows[0][0]) is not None]
    fig = new_figure(1.3 * len(cols) + 0.6, 1.4 * len(rows) + 0.3)
    axes = fig.subplots(len(rows), len(cols), squeeze=False)
    for r, (name, stack) in enumerate(rows):
        images = to_display_images(stack[cols, sample_index].float().clamp(-1, 1), (-1.0, 1.0))
        for c, idx in enumerate(cols):
            arr, cmap = image_for_imshow(images[c])
            axes[r, c].imshow(arr, cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
            axes[r, c].axis("off")
            if r == 0:
                axes[r, c].set_title(f"t={steps[idx].timestep}", fontsize=8)
        label_row(axes[r, 0], "$x_t$" if name == "latents" else r"$\hat{x}_0$", fontsize=9)
    return save_figure(fig, path)


def _has(trace: Trace, name: str) -> bool:
    return any(getattr(s, name) is not None for s in trace.steps)


def save_commit_step_map(
    analysis: TrajectoryAnalysis, path: str | os.PathLike, sample_index: int = 0, image=None
) -> Path:
    """Save the per-pixel commit step (next to the final image when given)."""
    commit = analysis.commit_step[sample_index].float().numpy()
    panels = 2 if image is not None else 1
    fig = new_figure(2.6 * panels, 2.5)
    axes = fig.subplots(1, panels, squeeze=False)[0]
    if image is not None:
        arr, cmap = image_for_imshow(to_display_images(image)[0])
        axes[0].imshow(arr, cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
        axes[0].set_title("final", fontsize=8)
        axes[0].axis("off")
    ax = axes[-1]
    im = ax.imshow(commit, cmap="viridis", interpolation="nearest")
    ax.set_title(f"commit step (eps={analysis.eps:g})", fontsize=8)
    ax.axis("off")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    return save_figure(fig, path)


def save_trajectory_curves(analysis: TrajectoryAnalysis, path: str | os.PathLike, sample_index: int = 0) -> Path:
    r"""Save the per-step curves: change of $x_t$ and $\hat{x}_0$, distance to the final sample, log-SNR."""
    steps = np.asarray(analysis.step_indices)
    panels = 3 if analysis.snr is not None else 2
    fig = new_figure(3.2 * panels, 2.6)
    axes = fig.subplots(1, panels, squeeze=False)[0]
    axes[0].plot(steps[1:], analysis.latent_change[:, sample_index].numpy(), marker=".", label="$x_t$")
    axes[0].plot(steps[1:], analysis.x0_change[:, sample_index].numpy(), marker=".", label=r"$\hat{x}_0$")
    axes[0].set_title("RMS change per step", fontsize=9)
    axes[0].legend(fontsize=7)
    axes[1].plot(steps, analysis.x0_distance_to_final[:, sample_index].numpy(), marker=".")
    axes[1].set_title(r"RMS($\hat{x}_0$ - final)", fontsize=9)
    if analysis.snr is not None:
        axes[2].plot(steps, analysis.snr.clamp_min(1e-30).log10().numpy(), marker=".")
        axes[2].set_title(r"$\log_{10}$ SNR(t)", fontsize=9)
    for ax in axes:
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
    return save_figure(fig, path, tight=True)


def save_denoising_gif(
    trace: Trace,
    path: str | os.PathLike,
    sample_index: int = 0,
    field: str = "pred_original_sample",
    scale: int = 8,
    duration_ms: int = 120,
) -> Path:
    r"""Save an animated GIF of one sample's $\hat{x}_0$ (or `field="latents"`: $x_t$) over the recorded steps."""
    stack = trace.stack(field)[:, sample_index].float().clamp(-1, 1)
    frames = (to_display_images(stack, (-1.0, 1.0)) * 255).round().to(torch.uint8)
    images = []
    for frame in frames:
        arr = frame.permute(1, 2, 0).numpy()
        arr = arr[..., 0] if arr.shape[-1] == 1 else arr[..., :3]
        im = PIL.Image.fromarray(np.ascontiguousarray(arr))
        images.append(im.resize((im.width * scale, im.height * scale), PIL.Image.NEAREST))
    return save_pil(images, path, save_all=True, append_images=images[1:], duration=duration_ms, loop=0)
