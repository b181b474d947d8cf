"""Images as `[B, C, H, W]` floats in [0, 1], from whatever a pipeline returns: read by the explainers (the image a
report explains) and by `viz/` (what it draws), so neither imports the other for it."""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["to_display_images"]


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
