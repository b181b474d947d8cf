"""Attribution heat maps over the image, and per-step grids of maps."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from ._io import image_for_imshow, label_row, new_figure, save_figure, to_display_images

__all__ = ["save_heatmap_overlay", "save_step_grid"]


def _as_2d(heatmap: torch.Tensor) -> np.ndarray:
    h = torch.as_tensor(heatmap).detach().float().cpu()
    while h.ndim > 2:
        h = h.sum(0) if h.shape[0] > 1 else h[0]
    if h.ndim != 2:
        raise ValueError(f"A heat map must be [H, W] (or [1, H, W]), got shape {tuple(heatmap.shape)}.")
    return h.numpy()


def _draw(ax, heatmap: np.ndarray, image: torch.Tensor | None, alpha: float, signed: bool | None):
    signed = bool((heatmap < 0).any()) if signed is None else signed
    if image is not None:
        arr, cmap = image_for_imshow(image)
        ax.imshow(arr, cmap=cmap or None, vmin=0, vmax=1, interpolation="nearest")
    if signed:
        lim = float(np.abs(heatmap).max()) or 1.0
        im = ax.imshow(heatmap, cmap="RdBu_r", vmin=-lim, vmax=lim, alpha=alpha if image is not None else 1.0)
    else:
        im = ax.imshow(heatmap, cmap="inferno", alpha=alpha if image is not None else 1.0)
    ax.axis("off")
    return im


def save_heatmap_overlay(
    image,
    heatmap: torch.Tensor,
    path: str | os.PathLike,
    title: str | None = None,
    alpha: float = 0.55,
    signed: bool | None = None,
) -> Path:
    """
    Save the image, the heat map and the overlay of both side by side.

    Args:
        image: the image `[C, H, W]`/`[1, C, H, W]` (in [-1, 1] or [0, 1]), or `None` for the map alone.
        heatmap (`torch.Tensor`): `[H, W]` or `[1, H, W]` (channels are summed).
        path (`str` or `os.PathLike`): PNG path.
        signed (`bool`, *optional*): diverging colormap centred at 0 (default: when the map has negative values).
    """
    h = _as_2d(heatmap)
    img = None if image is None else to_display_images(image)[0]
    if img is not None and tuple(img.shape[-2:]) != h.shape:
        raise ValueError(
            f"The heat map is {h.shape} but the image is {tuple(img.shape[-2:])}; upsample the map first."
        )
    panels = 3 if img is not None else 1
    fig = new_figure(2.2 * panels, 2.4)
    axes = fig.subplots(1, panels, squeeze=False)[0]
    if img is not None:
        arr, cmap = image_for_imshow(img)
        axes[0].imshow(arr, cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
        axes[0].set_title("image", fontsize=8)
        axes[0].axis("off")
        im = _draw(axes[1], h, None, alpha, signed)
        axes[1].set_title("map", fontsize=8)
        fig.colorbar(im, ax=axes[1], fraction=0.046, pad=0.04)
        _draw(axes[2], h, img, alpha, signed)
        axes[2].set_title("overlay", fontsize=8)
    else:
        im = _draw(axes[0], h, None, alpha, signed)
        fig.colorbar(im, ax=axes[0], fraction=0.046, pad=0.04)
    if title:
        fig.suptitle(title, fontsize=9)
    return save_figure(fig, path)


def save_step_grid(
    maps: torch.Tensor | Mapping[str, torch.Tensor],
    path: str | os.PathLike,
    image=None,
    timesteps: Sequence[int] | None = None,
    title: str | None = None,
    alpha: float = 0.55,
) -> Path:
    """
    Save a grid of maps: one row per method (or a single row), one column per explained step.

    Args:
        maps (`torch.Tensor` `[K, H, W]`/`[K, 1, H, W]` or a `dict[str, torch.Tensor]` of those): one sample's maps.
        path (`str` or `os.PathLike`): PNG path.
        image (*optional*): an image `[C, H, W]` drawn under every map.
        timesteps (`list[int]`, *optional*): column titles.
    """
    rows = dict(maps) if isinstance(maps, Mapping) else {"": maps}
    if not rows:
        raise ValueError("No maps to plot.")
    rows = {name: torch.as_tensor(m).detach().float().cpu() for name, m in rows.items()}
    k = max(m.shape[0] for m in rows.values())
    if timesteps is not None and len(timesteps) != k:
        raise ValueError(f"Got {len(timesteps)} timesteps for {k} steps.")
    img = None if image is None else to_display_images(image)[0]
    fig = new_figure(1.6 * k + 0.8, 1.6 * len(rows) + 0.4)
    axes = fig.subplots(len(rows), k, squeeze=False)
    for r, (name, m) in enumerate(rows.items()):
        for c in range(k):
            ax = axes[r, c]
            if c >= m.shape[0]:
                ax.axis("off")
                continue
            _draw(ax, _as_2d(m[c]), img, alpha, None)
            if r == 0 and timesteps is not None:
                ax.set_title(f"t={int(timesteps[c])}", fontsize=8)
            if c == 0 and name:
                label_row(ax, name)
    if title:
        fig.suptitle(title, fontsize=9)
    return save_figure(fig, path)
