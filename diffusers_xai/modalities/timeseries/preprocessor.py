"""Time series → fixed-length windows in model space and back: `TimeSeriesPreprocessor` (per-channel
normalisation, windowing with stride)."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin

from .data import SeriesNanPolicy, clean_series, load_series, make_windows

__all__ = ["Normalization", "TimeSeriesPreprocessor"]

Normalization = Literal["minmax", "standard"]


class TimeSeriesPreprocessor(ModelMixin, ConfigMixin):
    r"""
    Per-channel normalisation of fixed-length windows, saved with the pipeline (config JSON + safetensors).

    `normalization="minmax"` maps each channel's training range to [-1, 1] (the TimeGAN/Diffusion-TS protocol,
    so DDPM's `clip_sample` to [-1, 1] applies); `"standard"` subtracts the mean and divides by the standard
    deviation. `bound` (set by `fit`) is the largest |normalised value| of the training data (1 for min-max), the
    range the pipeline clips $\hat{x}_0$ to while sampling. Statistics are float64 buffers; windows go in as
    `[N, L, C]` (time-major, like a DataFrame) and come out of [`transform`] as `[N, C, L]` (channels first, like
    `UNet1DModel`).

    It is a diffusers `ModelMixin` only to reuse its persistence, which makes it a pipeline component that
    `DiffusionPipeline.save_pretrained`/`from_pretrained` save and load. Build it with [`TimeSeriesPreprocessor.fit`].

    Example:

    ```py
    >>> pre = TimeSeriesPreprocessor.fit(load_co2_frame(), sequence_length=52, stride=4, nan_policy="interpolate")
    >>> x0 = pre.transform(pre.windows(load_co2_frame()))  # [N, 1, 52]
    >>> pre.inverse_transform(x0).shape  # [N, 52, 1], in ppm
    ```
    """

    @register_to_config
    def __init__(
        self,
        channels: list[str] | None = None,
        sequence_length: int = 24,
        stride: int = 1,
        normalization: Normalization = "minmax",
        nan_policy: SeriesNanPolicy = "raise",
        bound: float | None = None,
    ):
        super().__init__()
        if normalization not in ("minmax", "standard"):
            raise ValueError(f"`normalization` must be 'minmax' or 'standard', got {normalization!r}.")
        if nan_policy not in ("raise", "interpolate"):
            raise ValueError(f"`nan_policy` must be 'raise' or 'interpolate', got {nan_policy!r}.")
        self.channels = list(channels or [])
        self.register_buffer("loc", torch.zeros(len(self.channels), dtype=torch.float64))
        self.register_buffer("scale", torch.ones(len(self.channels), dtype=torch.float64))

    @property
    def num_channels(self) -> int:
        return len(self.channels)

    @property
    def sample_shape(self) -> tuple[int, int]:
        """`(C, L)`, the shape of one window in model space."""
        return (self.num_channels, self.config.sequence_length)

    @classmethod
    def fit(
        cls,
        data: Any,
        sequence_length: int = 24,
        stride: int = 1,
        channels: list[str] | None = None,
        normalization: Normalization = "minmax",
        nan_policy: SeriesNanPolicy = "raise",
    ) -> TimeSeriesPreprocessor:
        """
        Fit per-channel statistics on a long series `[T, C]` or on sequences `[N, L, C]` (anything
        [`load_series`] reads, or a `datasets.Dataset` with a `series` column).
        """
        values, names = load_series(data, channels)
        values = clean_series(values, names, nan_policy)
        if values.ndim == 2:
            make_windows(values, sequence_length, stride)  # validates the window against the series length
        elif values.shape[1] != sequence_length:
            raise ValueError(f"The sequences have length {values.shape[1]}, not sequence_length={sequence_length}.")
        flat = values.reshape(-1, values.shape[-1])
        if normalization == "minmax":
            loc, scale = flat.min(axis=0), flat.max(axis=0) - flat.min(axis=0)
        else:
            loc, scale = flat.mean(axis=0), flat.std(axis=0)
        constant = [names[i] for i in np.flatnonzero(scale == 0)]
        if constant:
            raise ValueError(
                f"Channels {constant} are constant; drop them before fitting and add them back after sampling."
            )
        z = (flat - loc) / scale
        bound = 1.0 if normalization == "minmax" else float(np.abs(z).max())
        pre = cls(
            channels=names,
            sequence_length=sequence_length,
            stride=stride,
            normalization=normalization,
            nan_policy=nan_policy,
            bound=bound,
        )
        pre.loc.copy_(torch.from_numpy(loc))
        pre.scale.copy_(torch.from_numpy(scale))
        return pre

    def windows(self, data: Any) -> np.ndarray:
        """Raw windows `[N, L, C]` (original units) from a long series or from sequences, with this preprocessor's
        channels, window length, stride and missing-value policy."""
        values, names = load_series(
            data, self.channels if not isinstance(data, (np.ndarray, torch.Tensor, list)) else None
        )
        if values.shape[-1] != self.num_channels:
            raise ValueError(
                f"The data has {values.shape[-1]} channels but this preprocessor was fitted on {self.num_channels} "
                f"({self.channels})."
            )
        values = clean_series(values, self.channels, self.config.nan_policy)
        if values.ndim == 3:
            if values.shape[1] != self.config.sequence_length:
                raise ValueError(
                    f"The sequences have length {values.shape[1]}, not sequence_length={self.config.sequence_length}."
                )
            return values
        return make_windows(values, self.config.sequence_length, self.config.stride)

    def _stats(self) -> tuple[np.ndarray, np.ndarray]:
        return self.loc.detach().cpu().numpy(), self.scale.detach().cpu().numpy()

    def transform(self, windows: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Windows `[N, L, C]` in original units → normalised `[N, C, L]` float32 ($x_0$ of the diffusion)."""
        w = np.asarray(windows.detach().cpu() if isinstance(windows, torch.Tensor) else windows, dtype=np.float64)
        expected = (self.config.sequence_length, self.num_channels)
        if w.ndim != 3 or w.shape[1:] != expected:
            raise ValueError(f"Expected windows of shape [N, {expected[0]}, {expected[1]}] (N, L, C), got {w.shape}.")
        if np.isnan(w).any():
            raise ValueError("The windows contain NaN; clean them with `preprocessor.windows(...)` first.")
        loc, scale = self._stats()
        z = (w - loc) / scale
        if self.config.normalization == "minmax":
            z = 2 * z - 1
        return torch.from_numpy(z.transpose(0, 2, 1).astype(np.float32))

    def inverse_transform(self, x: torch.Tensor | np.ndarray) -> np.ndarray:
        """Model-space `[N, C, L]` → windows `[N, L, C]` (float64) in the original units."""
        z = x.detach().cpu().double().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=np.float64)
        if z.ndim != 3 or z.shape[1] != self.num_channels:
            raise ValueError(
                f"Expected [N, {self.num_channels}, L] samples for this preprocessor ({self.channels}), got "
                f"{z.shape}; the denoiser and the preprocessor do not match."
            )
        loc, scale = self._stats()
        z = z.transpose(0, 2, 1)
        if self.config.normalization == "minmax":
            z = (z + 1) / 2
        return z * scale + loc
