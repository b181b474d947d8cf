"""The embedded default data: scikit-learn's 8x8 handwritten digits, upscaled, as tensors or an HF Dataset."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["load_digits_dataset", "load_digits_tensors"]


def load_digits_tensors(resolution: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """
    The 1,797 digits of `sklearn.datasets.load_digits` as `[N, 1, resolution, resolution]` floats in [-1, 1]
    (bilinear upscaling from 8x8) and their `[N]` integer labels. Ships with scikit-learn: no download.
    """
    from sklearn.datasets import load_digits

    if not isinstance(resolution, int) or resolution < 8:
        raise ValueError(f"`resolution` must be an int >= 8 (the digits are 8x8), got {resolution!r}.")
    digits = load_digits()
    x = torch.from_numpy(digits.images.astype(np.float32) / 16.0).unsqueeze(1)
    if resolution != 8:
        x = F.interpolate(x, size=(resolution, resolution), mode="bilinear", align_corners=False)
    x = (x.clamp(0, 1) * 2 - 1).contiguous()
    return x, torch.from_numpy(digits.target.astype(np.int64))


def load_digits_dataset(resolution: int = 16):
    """The digits as an HF `datasets.Dataset` with an `image` (PIL, mode "L") and a `label` column."""
    import datasets
    from PIL import Image

    x, y = load_digits_tensors(resolution)
    pixels = ((x[:, 0] + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).numpy()
    features = datasets.Features(
        {"image": datasets.Image(), "label": datasets.ClassLabel(names=[str(i) for i in range(10)])}
    )
    return datasets.Dataset.from_dict(
        {"image": [Image.fromarray(p, mode="L") for p in pixels], "label": y.tolist()}, features=features
    )
