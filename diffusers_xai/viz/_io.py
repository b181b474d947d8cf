"""Figure creation and atomic PNG writing (matplotlib's object API with the Agg canvas: no pyplot global state)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..utils.images import to_display_images
from ..utils.io import atomic_path

__all__ = ["label_row", "new_figure", "save_figure", "to_display_images"]


def new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(max(width, 1.0), max(height, 1.0)), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def save_figure(
    fig: Figure, path: str | os.PathLike, fmt: str = "png", tight: bool = False, dpi: float | None = None
) -> Path:
    """
    Write `fig` to `path` atomically (temp file in the same folder, then `os.replace`). `tight=True` crops to the
    drawn content (an extra layout pass: about twice the time, so image grids place their labels themselves);
    `dpi` overrides the figure's resolution.
    """
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=fmt, bbox_inches="tight" if tight else None, dpi=dpi)
    return Path(path)


def save_pil(images: list, path: str | os.PathLike, **kwargs) -> Path:
    """Write PIL image(s) atomically (several images with `save_all=True` make an animated GIF)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        images[0].save(tmp, format=path.suffix.lstrip(".").upper() or "PNG", **kwargs)
    return path


def label_row(ax, text: str, fontsize: int = 8) -> None:
    """A row label left of an axis whose frame is off."""
    ax.text(-0.08, 0.5, text, transform=ax.transAxes, rotation=90, ha="right", va="center", fontsize=fontsize)


def image_for_imshow(image: torch.Tensor) -> tuple[np.ndarray, str | None]:
    """`[C, H, W]` in [0, 1] → an array for `imshow` and its colormap (grey for one channel)."""
    if image.shape[0] == 1:
        return image[0].numpy(), "gray"
    if image.shape[0] >= 3:
        return image[:3].permute(1, 2, 0).numpy(), None
    return image.mean(0).numpy(), "gray"
