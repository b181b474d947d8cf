"""Plots of table-row and series-window explanations: column attribution matrices, series maps, commit steps."""

from __future__ import annotations

import numpy as np

from ._io import new_figure, save_figure

__all__ = [
    "plot_column_attributions",
    "plot_column_commit_steps",
    "plot_series_attributions",
    "plot_series_commit_steps",
]

PLOT_DPI = 110  # written with `save_figure` (atomic), cropped to the content


def plot_column_attributions(explanation, path: str, step: int = -1) -> str:
    """Heatmap of mean |attribution| (rows: generated columns, columns: input columns of $x_t$, plus the condition)
    of a [`TabularExplanation`] at one explained step; saved as a PNG."""
    matrix = explanation.matrix(step).numpy()
    labels = list(explanation.columns)
    if explanation.condition is not None:
        matrix = np.concatenate([matrix, explanation.condition[step].abs().mean(dim=0).numpy()[:, None]], axis=1)
        labels.append("[condition]")
    fig = new_figure(0.45 * len(labels) + 2.5, 0.35 * len(explanation.targets) + 1.8)
    ax = fig.subplots()
    im = ax.imshow(matrix, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(labels)), labels, rotation=70, ha="right", fontsize=7)
    ax.set_yticks(range(len(explanation.targets)), explanation.targets, fontsize=7)
    ax.set_xlabel("input column of x_t")
    ax.set_ylabel("generated column of x̂0")
    ax.set_title(f"{explanation.method}, t = {explanation.timesteps[step]}", fontsize=9)
    fig.colorbar(im, ax=ax, label="mean |attribution|")
    save_figure(fig, path, tight=True, dpi=PLOT_DPI)
    return path


def plot_column_commit_steps(result, path: str) -> str:
    """Box plot of the commit fraction of each column over the rows (earliest-committing first); saved as a PNG."""
    order = result.order()
    data = [result.fraction[:, result.columns.index(c)].numpy() for c in order]
    fig = new_figure(6, 0.3 * len(order) + 1.5)
    ax = fig.subplots()
    ax.boxplot(data, vert=False, tick_labels=order, showfliers=False)
    ax.set_xlim(-0.02, 1.02)
    ax.set_xlabel("commit step (fraction of the run)")
    ax.tick_params(labelsize=7)
    save_figure(fig, path, tight=True, dpi=PLOT_DPI)
    return path


def plot_series_attributions(
    result, path: str, sample: int = 0, step: int = -1, channels: list[str] | None = None, title: str | None = None
) -> str:
    """Heatmap of one window's attributions `[C, L]` (signed) of an [`ExplanationResult`] with the per-time-step
    |attribution| underneath; channel names from `channels` or `result.feature_names`."""
    attributions = result.attributions[0] if isinstance(result.attributions, tuple) else result.attributions
    attr = attributions[step, sample].numpy()
    names = channels or result.feature_names or [f"channel_{i}" for i in range(attr.shape[0])]
    vmax = float(np.abs(attr).max()) or 1.0
    fig = new_figure(7, 1.0 + 0.35 * attr.shape[0] + 1.5)
    ax, ax2 = fig.subplots(2, 1, sharex=True)
    im = ax.imshow(attr, cmap="RdBu_r", vmin=-vmax, vmax=vmax, aspect="auto")
    ax.set_yticks(range(len(names)), names, fontsize=7)
    ax.set_title(title or f"{result.method}, t = {result.timesteps[step]}", fontsize=8)
    fig.colorbar(im, ax=ax, label="attribution")
    ax2.bar(range(attr.shape[1]), np.abs(attr).sum(axis=0), color="gray")
    ax2.set_xlabel("time step of x_t")
    ax2.set_ylabel("Σ|attr|", fontsize=8)
    save_figure(fig, path, tight=True, dpi=PLOT_DPI)
    return path


def plot_series_commit_steps(result, path: str) -> str:
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
