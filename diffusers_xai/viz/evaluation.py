"""PNG plots of evaluation results (matplotlib, Agg backend), each written atomically."""

from __future__ import annotations

import math
import os

import torch

from ..evaluation.memorization import MemorizationResult
from ..utils.io import atomic_path

__all__ = ["plot_class_histogram", "plot_metric_bars", "plot_nearest_neighbours"]


def _figure(*args, **kwargs):
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt, plt.figure(*args, **kwargs)


def _save(plt, fig, path: str | os.PathLike) -> str:
    path = os.fspath(path)
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=fig.dpi, bbox_inches="tight")
    finally:
        plt.close(fig)
    return path


def _show(ax, image: torch.Tensor) -> None:
    image = image.detach().float().cpu().clamp(0, 1)
    if image.shape[0] == 1:
        ax.imshow(image[0].numpy(), cmap="gray", vmin=0, vmax=1)
    else:
        ax.imshow(image.permute(1, 2, 0).numpy())
    ax.set_xticks([])
    ax.set_yticks([])


def plot_nearest_neighbours(
    generated: torch.Tensor,
    training: torch.Tensor,
    result: MemorizationResult,
    path: str | os.PathLike,
    num_samples: int = 16,
    per_row: int = 8,
) -> str:
    r"""
    A grid of generated samples (top of each pair) above their nearest training image (bottom), the most suspicious
    (lowest $\ell$) first, with $\ell$ in the title (red when flagged). Images are `[N, C, H, W]` in [0, 1].
    """
    order = torch.argsort(result.ratio)[: min(num_samples, len(generated))]
    cols = min(per_row, len(order))
    rows = math.ceil(len(order) / cols)
    plt, fig = _figure(figsize=(1.3 * cols, 2.9 * rows), dpi=100)
    for n, i in enumerate(order.tolist()):
        r, c = divmod(n, cols)
        top = fig.add_subplot(2 * rows, cols, 2 * r * cols + c + 1)
        _show(top, generated[i])
        flagged = bool(result.flagged[i])
        top.set_title(f"#{i} ℓ={float(result.ratio[i]):.2f}", fontsize=7, color="red" if flagged else "black")
        bottom = fig.add_subplot(2 * rows, cols, (2 * r + 1) * cols + c + 1)
        _show(bottom, training[int(result.nearest_index[i])])
        bottom.set_title(f"train #{int(result.nearest_index[i])}", fontsize=7)
    fig.suptitle(
        f"Generated (top) vs nearest training image in {result.space} space (bottom); "
        f"{result.fraction_flagged:.1%} flagged (ℓ < {result.threshold:.2g})",
        fontsize=9,
    )
    return _save(plt, fig, path)


def plot_metric_bars(values: dict[str, float], path: str | os.PathLike, title: str = "") -> str:
    """A horizontal bar chart of named metrics (e.g. precision / recall / density / coverage)."""
    plt, fig = _figure(figsize=(6, 0.45 * len(values) + 1), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    names = list(values)
    bars = ax.barh(names, [values[n] for n in names], color="tab:blue")
    for bar, name in zip(bars, names):
        ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, f" {values[name]:.3f}", va="center", fontsize=8)
    ax.invert_yaxis()
    ax.set_title(title, fontsize=10)
    ax.axvline(1.0, color="gray", lw=0.8, ls="--")
    return _save(plt, fig, path)


def plot_class_histogram(
    fake_histogram: list[float], real_histogram: list[float] | None, path: str | os.PathLike, title: str = ""
) -> str:
    """Predicted-class frequencies of generated vs real samples."""
    import numpy as np

    k = len(fake_histogram)
    plt, fig = _figure(figsize=(max(4, 0.5 * k + 1), 3), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    x = np.arange(k)
    width = 0.4 if real_histogram is not None else 0.8
    ax.bar(x - (width / 2 if real_histogram is not None else 0), fake_histogram, width, label="generated")
    if real_histogram is not None:
        ax.bar(x + width / 2, real_histogram, width, label="real")
    ax.set_xticks(x)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("fraction")
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=10)
    return _save(plt, fig, path)
