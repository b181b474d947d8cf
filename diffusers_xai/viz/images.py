"""Image grids."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

from ._io import image_for_imshow, new_figure, save_figure, to_display_images

__all__ = ["save_image_grid"]


def save_image_grid(
    images,
    path: str | os.PathLike,
    nrow: int | None = None,
    titles: Sequence[str] | None = None,
    value_range: str | tuple[float, float] = "auto",
    cell_size: float = 1.2,
) -> Path:
    """
    Save a grid of images as a PNG.

    Args:
        images: `[B, C, H, W]` tensor in [-1, 1] or [0, 1] (see `value_range`), `[B, H, W, C]` numpy array or
            a list of PIL images.
        path (`str` or `os.PathLike`): where to write the PNG (atomically).
        nrow (`int`, *optional*): images per row (default: about the square root of B).
        titles (`list[str]`, *optional*): one title per image.
        value_range (`"auto"` or `(lo, hi)`): how to read tensor values (auto: negative values mean [-1, 1]).
        cell_size (`float`, *optional*, defaults to 1.2): inches per image.

    Example:

    ```py
    >>> out = pipe(batch_size=16, output_type="pt")
    >>> save_image_grid(out.images, "samples.png")
    ```
    """
    x = to_display_images(images, value_range)
    b = x.shape[0]
    if titles is not None and len(titles) != b:
        raise ValueError(f"Got {len(titles)} titles for {b} images.")
    ncol = nrow or max(1, math.ceil(math.sqrt(b)))
    nrows = math.ceil(b / ncol)
    fig = new_figure(ncol * cell_size, nrows * cell_size + (0.2 * nrows if titles else 0))
    axes = fig.subplots(nrows, ncol, squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k < b:
            arr, cmap = image_for_imshow(x[k])
            ax.imshow(arr, cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
            if titles:
                ax.set_title(titles[k], fontsize=7)
    return save_figure(fig, path)
