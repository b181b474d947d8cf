"""Per-word heat maps of a stock text-to-image generation (the result of `TextToImageExplainer`)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..explain.text_to_image import TextToImageExplanation
from ._io import new_figure, save_figure

__all__ = ["save_word_maps"]


def _first_image(images) -> np.ndarray:
    """The first generated image as an `[H, W, 3]` float array in [0, 1] (PIL list, numpy or torch output)."""
    first = images[0]
    if hasattr(first, "convert"):  # PIL
        return np.asarray(first.convert("RGB"), dtype=np.float32) / 255.0
    arr = np.asarray(first.detach().cpu() if hasattr(first, "detach") else first, dtype=np.float32)
    if arr.ndim == 3 and arr.shape[0] in (1, 3) and arr.shape[-1] not in (1, 3):  # [C, H, W] torch layout
        arr = arr.transpose(1, 2, 0)
    return np.clip(arr, 0.0, 1.0)


def save_word_maps(
    explanation: TextToImageExplanation, path: str | os.PathLike, alpha: float = 0.6, normalize: bool = True
) -> Path:
    """
    Save the generated image followed by one heat map per word (DAAM), overlaid on the image. With `normalize=True`
    each map is rescaled to [0, 1] on its own (DAAM's display); the title carries the word's integrated-gradients
    attribution when the explanation has one.
    """
    image = _first_image(explanation.images)
    words = explanation.words
    ig = explanation.attributions.get("integrated_gradients")
    fig = new_figure(1.8 * (len(words) + 1), 2.1)
    axes = fig.subplots(1, len(words) + 1, squeeze=False)[0]
    axes[0].imshow(image, interpolation="nearest")
    axes[0].set_title("image", fontsize=8)
    axes[0].axis("off")
    for i, (ax, word) in enumerate(zip(axes[1:], words)):
        m = explanation.word_maps[i].float().numpy()
        if normalize:
            m = (m - m.min()) / max(float(m.max() - m.min()), 1e-12)
        ax.imshow(image, interpolation="nearest")
        ax.imshow(m, cmap="jet", alpha=alpha, interpolation="bilinear")
        title = word if ig is None or i >= len(ig["words"]) else f"{word}\nIG {float(ig['words'][i]):+.3g}"
        ax.set_title(title, fontsize=8)
        ax.axis("off")
    return save_figure(fig, path)
