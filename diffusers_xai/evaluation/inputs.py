"""Turn what users pass as images (tensors, arrays, PIL lists; uint8, [0, 1] or [-1, 1]) into one checked format."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch

__all__ = ["check_image_pair", "to_unit_images"]

logger = logging.getLogger(__name__)

# Float images may overshoot their range slightly (an unclipped sampler); beyond this they are rejected.
_RANGE_TOLERANCE = 1e-2


def _to_tensor(images, name: str) -> torch.Tensor:
    if isinstance(images, torch.Tensor):
        return images.detach().cpu()
    if isinstance(images, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(images))
    if isinstance(images, Sequence) and len(images) and hasattr(images[0], "convert"):  # list of PIL images
        modes = {im.mode for im in images}
        mode = "L" if modes <= {"L", "1"} else "RGB"
        return torch.from_numpy(np.stack([np.asarray(im.convert(mode)) for im in images]))
    raise TypeError(
        f"`{name}` must be a torch.Tensor [N, C, H, W], a numpy array [N, H, W, C] or a list of PIL images, "
        f"got {type(images).__name__}."
    )


def _channels_first(x: torch.Tensor, name: str, from_numpy: bool) -> torch.Tensor:
    if x.ndim == 3:  # [N, H, W] grayscale
        return x.unsqueeze(1)
    if x.ndim != 4:
        raise ValueError(
            f"`{name}` must have 3 ([N, H, W]) or 4 ([N, C, H, W] / [N, H, W, C]) dimensions, got shape "
            f"{tuple(x.shape)}."
        )
    channels_last = x.shape[-1] in (1, 3, 4) and x.shape[1] not in (1, 3, 4)
    if from_numpy and x.shape[-1] in (1, 3, 4) and x.shape[1] in (1, 3, 4):
        channels_last = True  # numpy images are [N, H, W, C] by convention (diffusers' output_type="np")
    if channels_last:
        x = x.permute(0, 3, 1, 2)
    if x.shape[1] == 4:
        logger.warning(f"`{name}` has 4 channels; dropping the alpha channel.")
        x = x[:, :3]
    if x.shape[1] not in (1, 3):
        raise ValueError(
            f"`{name}` must have 1 (grayscale) or 3 (RGB) channels, got shape {tuple(x.shape)}; pass [N, C, H, W] "
            "tensors or [N, H, W, C] arrays."
        )
    return x


def to_unit_images(
    images, name: str = "images", value_range: tuple[float, float] | None = None
) -> tuple[torch.Tensor, tuple[float, float]]:
    r"""
    Check images and bring them to float32 `[N, C, H, W]` in [0, 1].

    Args:
        images: a `torch.Tensor` `[N, C, H, W]` or `[N, H, W]`, a numpy array `[N, H, W, C]`, `[N, H, W]` (or
            `[N, C, H, W]` when C is not plausible as a width), or a list of PIL images.
        name (`str`): the argument name used in error messages.
        value_range (`tuple[float, float]`, *optional*): the `(low, high)` the images span. By default uint8 means
            (0, 255), float with any negative value means (-1, 1) (this package's model space) and other floats
            (0, 1). A float set that is all non-negative but really in [-1, 1] cannot be told apart: pass it.

    Returns:
        `(images, value_range)`: the converted tensor and the range that was assumed.
    """
    from_numpy = not isinstance(images, torch.Tensor)
    x = _to_tensor(images, name)
    if x.shape[0] == 0:
        raise ValueError(f"`{name}` is empty; pass at least 2 images.")
    if x.dtype == torch.bool or x.is_complex():
        raise TypeError(f"`{name}` has dtype {x.dtype}; pass uint8 or float images.")
    x = _channels_first(x, name, from_numpy)
    if x.is_floating_point():
        bad = (~torch.isfinite(x)).flatten(1).any(1)
        if bad.any():
            raise ValueError(
                f"`{name}` contains NaN or inf in {int(bad.sum())} of {len(x)} images (first at index "
                f"{int(bad.nonzero()[0])}); a sampler that diverged produces these. Fix or drop those samples."
            )
    if value_range is None:
        if x.dtype == torch.uint8:
            value_range = (0.0, 255.0)
        elif not x.is_floating_point():
            raise TypeError(f"`{name}` has integer dtype {x.dtype}; pass uint8 or float, or set `value_range`.")
        elif float(x.min()) < 0:
            value_range = (-1.0, 1.0)
        else:
            value_range = (0.0, 1.0)
    low, high = (float(v) for v in value_range)
    if not high > low:
        raise ValueError(f"`value_range` must be (low, high) with high > low, got {value_range}.")
    x = x.float()
    lo_seen, hi_seen = float(x.min()), float(x.max())
    span = high - low
    if lo_seen < low - _RANGE_TOLERANCE * span or hi_seen > high + _RANGE_TOLERANCE * span:
        hint = " Floats in 0..255 should be uint8 or pass value_range=(0, 255)." if hi_seen > 2 else ""
        raise ValueError(
            f"`{name}` spans [{lo_seen:.4g}, {hi_seen:.4g}], outside the assumed value range ({low:g}, {high:g})."
            f"{hint} Pass `value_range=(low, high)` explicitly."
        )
    return ((x - low) / span).clamp(0, 1).contiguous(), (low, high)


def check_image_pair(real: torch.Tensor, fake: torch.Tensor, real_name: str = "real", fake_name: str = "fake") -> None:
    """Raise a `ValueError` when two image sets differ in channels or spatial size."""
    if real.shape[1:] != fake.shape[1:]:
        raise ValueError(
            f"`{real_name}` images are {tuple(real.shape[1:])} (C, H, W) but `{fake_name}` images are "
            f"{tuple(fake.shape[1:])}; generate at the training resolution and channel count, or resize the real "
            "data to match (e.g. `load_digits_tensors(resolution=...)`)."
        )
