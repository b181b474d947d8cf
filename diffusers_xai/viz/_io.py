"""Figure creation and atomic PNG writing (matplotlib's object API with the Agg canvas: no pyplot global state)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

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


def to_display_images(images, value_range: str | tuple[float, float] = "auto") -> torch.Tensor:
    """
    Images as a float tensor `[B, C, H, W]` in [0, 1].

    Accepts a tensor `[B, C, H, W]` / `[C, H, W]`, a numpy array `[B, H, W, C]` (what pipelines return for
    `output_type="np"`) or a list of PIL images. `value_range="auto"` reads a tensor with negative values as
    [-1, 1] (the models' data range) and anything else as [0, 1]; pass `(lo, hi)` to be explicit.
    """
    if isinstance(images, list) and images and hasattr(images[0], "convert"):
        arrays = [np.asarray(im, dtype=np.float32) / 255.0 for im in images]
        images = torch.from_numpy(np.stack([a[..., None] if a.ndim == 2 else a for a in arrays])).permute(0, 3, 1, 2)
        value_range = (0.0, 1.0)
    elif isinstance(images, np.ndarray):
        if images.ndim == 3:
            images = images[None]
        images = torch.from_numpy(np.ascontiguousarray(images)).float().permute(0, 3, 1, 2)
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"Expected images as a tensor, a numpy array or PIL images, got {type(images).__name__}.")
    x = images.detach().float().cpu()
    if x.ndim == 2:
        x = x[None, None]
    elif x.ndim == 3:
        x = x[None]
    if x.ndim != 4:
        raise ValueError(f"Images must be [B, C, H, W], got shape {tuple(images.shape)}.")
    if value_range == "auto":
        value_range = (-1.0, 1.0) if float(x.min()) < 0 else (0.0, 1.0)
    lo, hi = value_range
    return ((x - lo) / (hi - lo)).clamp(0, 1)


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
