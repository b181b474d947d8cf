"""PNGs of generated samples as they are (no explanation): image tiles and time-series panels."""

from __future__ import annotations

import math

import numpy as np
import PIL.Image

from ..utils.io import atomic_path

__all__ = ["image_tiles", "save_image_tiles", "save_series_plot"]


def image_tiles(
    images: np.ndarray,
    min_cell: int = 64,
    cols: int | None = None,
    pad: int | None = None,
    background: float = 0.5,
) -> PIL.Image.Image:
    """
    `[N, H, W, C]` images in [0, 1] as one grid picture: nearest-upscaled so a cell is at least `min_cell` pixels a
    side (small images stay visible), `cols` per row (default: about the square root of N), separated by `pad`
    pixels (default: half the upscale factor, at least 1) of `background` (0 black, 1 white).
    """
    n, h, w, c = images.shape
    scale = max(1, math.ceil(min_cell / max(h, w)))
    images = images.repeat(scale, axis=1).repeat(scale, axis=2)
    h, w = h * scale, w * scale
    pad = max(1, scale // 2) if pad is None else pad
    cols = cols or math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    grid = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, c), background, dtype=np.float32)
    for i, image in enumerate(images):
        r, col = divmod(i, cols)
        top, left = pad + r * (h + pad), pad + col * (w + pad)
        grid[top : top + h, left : left + w] = image
    pixels = (grid * 255).round().clip(0, 255).astype(np.uint8)
    return PIL.Image.fromarray(pixels[..., 0] if c == 1 else pixels)


def save_image_tiles(images: np.ndarray, path: str, min_cell: int = 64) -> str:
    """Save `[N, H, W, C]` images in [0, 1] as one PNG grid ([`image_tiles`]: nearest-upscaled so small images stay
    visible, with a gray gutter between cells)."""
    picture = image_tiles(images, min_cell)
    with atomic_path(path, suffix=".png") as tmp:
        picture.save(tmp)
    return path


def save_series_plot(series: np.ndarray, channels: list[str], path: str, max_series: int = 16) -> str:
    """Plot up to `max_series` windows `[N, L, C]` (one panel per window, one line per channel) to a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = min(len(series), max_series)
    cols = int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 1.8 * rows), squeeze=False, sharex=True)
    for i, ax in enumerate(axes.flat):
        if i >= n:
            ax.axis("off")
            continue
        for c, name in enumerate(channels):
            ax.plot(series[i, :, c], lw=1, label=name)
        ax.tick_params(labelsize=6)
    axes.flat[0].legend(fontsize=5, loc="best")
    fig.tight_layout()
    try:
        with atomic_path(path, suffix=".png") as tmp:
            fig.savefig(tmp, dpi=100)
    finally:
        plt.close(fig)
    return path
