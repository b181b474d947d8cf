"""Time series → fixed-length windows in model space and back: `TimeSeriesPreprocessor` (per-channel
normalisation, windowing with stride) and the built-in series (TimeGAN sines, Mauna Loa CO2)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin

__all__ = [
    "TIMESERIES_DATASETS",
    "TimeSeriesPreprocessor",
    "clean_series",
    "iter_windows",
    "load_co2_frame",
    "load_series",
    "load_timeseries_dataset",
    "make_sines",
    "make_windows",
    "windows_from_columns",
]

Normalization = Literal["minmax", "standard"]
SeriesNanPolicy = Literal["raise", "interpolate"]


# ---- built-in data ----
def make_sines(num_series: int = 10000, sequence_length: int = 24, num_channels: int = 5, seed: int = 0) -> np.ndarray:
    r"""
    The sines benchmark of TimeGAN ([Yoon et al., 2019](https://papers.nips.cc/paper/8789)), `[N, L, C]` in [0, 1].

    Each channel of each series is $x_j = \frac{1}{2}(\sin(f j + \phi) + 1)$, $j = 0..L-1$, with frequency and
    phase drawn independently from $U(0, 0.1)$ (the protocol of TimeGAN's `sine_data_generation`).
    """
    if min(num_series, sequence_length, num_channels) < 1:
        raise ValueError(
            f"num_series, sequence_length and num_channels must be >= 1, got {num_series}, {sequence_length}, "
            f"{num_channels}."
        )
    rng = np.random.default_rng(seed)
    freq = rng.uniform(0, 0.1, size=(num_series, 1, num_channels))
    phase = rng.uniform(0, 0.1, size=(num_series, 1, num_channels))
    j = np.arange(sequence_length, dtype=np.float64)[None, :, None]
    return ((np.sin(freq * j + phase) + 1) * 0.5).astype(np.float32)


def load_co2_frame() -> pd.DataFrame:
    """Weekly Mauna Loa CO2 (ppm), 1958-2001, from `statsmodels.datasets.co2`; it has 59 missing weeks (NaN)."""
    from statsmodels.datasets import co2

    return co2.load_pandas().data


TIMESERIES_DATASETS = ("sines", "co2")


def load_series(source: Any, channels: list[str] | None = None) -> tuple[np.ndarray, list[str]]:
    """
    Read a long series `[T, C]` (or already-cut sequences `[N, L, C]`) as float64 plus the channel names.

    `source` is a DataFrame (numeric columns are channels; the index is the time axis), a 1-, 2- or 3-D
    array, a `.csv`/`.parquet` path, the name `"co2"`, or an HF `datasets.Dataset` (columns are channels, or one
    column of equal-length `[L, C]` sequences).
    """
    if isinstance(source, (str, os.PathLike)):
        if str(source) == "co2":
            source = load_co2_frame()
        elif str(source) == "sines":
            return make_sines().astype(np.float64), [f"sine_{i}" for i in range(5)]
        else:
            path = Path(source)
            if not path.exists():
                raise ValueError(
                    f"Series {str(source)!r} is neither a file nor a built-in dataset {TIMESERIES_DATASETS}."
                )
            if path.suffix not in (".csv", ".parquet", ".pq"):
                raise ValueError(f"Unsupported series file {path.name!r}: use a .csv or .parquet file.")
            source = pd.read_csv(path) if path.suffix == ".csv" else pd.read_parquet(path)
    if hasattr(source, "to_pandas") and hasattr(source, "column_names"):
        names = channels or source.column_names
        absent = [c for c in names if c not in source.column_names]
        if absent:
            raise ValueError(f"Channels {absent} are not columns of the dataset ({source.column_names}).")
        if len(source) and all(isinstance(source[0][c], list) for c in names):
            return windows_from_columns({c: source[c] for c in names}), list(names)
        source = source.to_pandas()
    if isinstance(source, pd.Series):
        source = source.to_frame()
    if isinstance(source, pd.DataFrame):
        absent = [c for c in channels or [] if c not in source.columns]
        if absent:
            raise ValueError(f"Channels {absent} are not columns of the table ({source.columns.tolist()}).")
        frame = source if channels is None else source[channels]
        bad = [c for c in frame.columns if not pd.api.types.is_numeric_dtype(frame[c]) or frame[c].dtype == bool]
        if bad and channels is None:
            frame = frame.drop(columns=bad)  # e.g. a date column
        elif bad:
            raise TypeError(f"Channels {bad} are not numeric; a time-series channel must be int or float.")
        if frame.shape[1] == 0:
            raise ValueError(
                f"The table has no numeric column to use as a channel (columns: {source.columns.tolist()})."
            )
        return frame.to_numpy(dtype=np.float64), [str(c) for c in frame.columns]
    if isinstance(source, (np.ndarray, torch.Tensor, list)):
        values = np.asarray(source.detach().cpu() if isinstance(source, torch.Tensor) else source, dtype=np.float64)
        if values.ndim == 1:
            values = values[:, None]
        if values.ndim not in (2, 3):
            raise ValueError(f"Expected a [T], [T, C] or [N, L, C] array, got shape {values.shape}.")
        names = channels or [f"channel_{i}" for i in range(values.shape[-1])]
        if len(names) != values.shape[-1]:
            raise ValueError(f"Got {len(names)} channel names for {values.shape[-1]} channels.")
        return values, list(names)
    raise TypeError(
        f"Cannot read a time series from {type(source).__name__}; pass a DataFrame, an array, a CSV/Parquet path "
        "or a datasets.Dataset."
    )


def clean_series(values: np.ndarray, channels: list[str], nan_policy: SeriesNanPolicy = "raise") -> np.ndarray:
    """
    Apply the missing-value policy along the time axis: `"raise"` refuses NaNs naming the channels, `"interpolate"`
    fills them linearly in time (nearest value at the ends). Works on `[T, C]` and `[N, L, C]`.
    """
    if nan_policy not in ("raise", "interpolate"):
        raise ValueError(f"`nan_policy` must be 'raise' or 'interpolate', got {nan_policy!r}.")
    nan = np.isnan(values)
    if not nan.any():
        return values
    counts = {channels[c]: int(nan[..., c].sum()) for c in range(values.shape[-1]) if nan[..., c].any()}
    flat = values.reshape(-1, values.shape[-2], values.shape[-1])
    all_missing = [channels[c] for c in range(flat.shape[-1]) if np.isnan(flat[..., c]).all(axis=-1).any()]
    if all_missing:
        raise ValueError(f"Channels {all_missing} are entirely missing (in at least one sequence); drop them.")
    if nan_policy == "raise":
        raise ValueError(
            f"The series has missing values in {counts} (channel: count). Pass nan_policy='interpolate' to fill them "
            "linearly in time, or clean the series first."
        )
    out = flat.copy()
    for seq in out:
        seq[:] = pd.DataFrame(seq).interpolate(limit_direction="both").to_numpy()
    return out.reshape(values.shape)


def make_windows(values: np.ndarray, sequence_length: int, stride: int = 1) -> np.ndarray:
    """Cut `[T, C]` into overlapping windows `[N, L, C]` starting every `stride` steps (the tail that does not fill
    a window is dropped)."""
    if isinstance(sequence_length, bool) or not isinstance(sequence_length, int) or sequence_length < 1:
        raise ValueError(f"`sequence_length` must be a positive int, got {sequence_length!r}.")
    if isinstance(stride, bool) or not isinstance(stride, int) or stride < 1:
        raise ValueError(f"`stride` must be a positive int, got {stride!r}.")
    if values.ndim != 2:
        raise ValueError(f"Windows are cut from a [T, C] series, got shape {values.shape}.")
    if sequence_length > values.shape[0]:
        raise ValueError(
            f"The window length {sequence_length} is longer than the series ({values.shape[0]} time steps); use "
            f"sequence_length <= {values.shape[0]} or a longer series."
        )
    starts = np.arange(0, values.shape[0] - sequence_length + 1, stride)
    return np.stack([values[s : s + sequence_length] for s in starts])


def windows_from_columns(columns: dict[str, list]) -> np.ndarray:
    """`{channel: [N lists of L values]}` (a `datasets` batch of windows) → `[N, L, C]` float64."""
    try:
        return np.stack([np.asarray(v, dtype=np.float64) for v in columns.values()], axis=-1)
    except ValueError as err:
        raise ValueError(f"The windows of channels {list(columns)} do not all have the same length: {err}") from None


def iter_windows(rows: Any, channels: tuple[str, ...], sequence_length: int, stride: int = 1):
    """
    [`make_windows`] over a stream: rows (time steps, dicts with the `channels`) in, `{channel: [L] float32 list}`
    windows out, starting every `stride` steps, the unfilled tail dropped; the same windows and values as
    [`load_timeseries_dataset`] on the whole series. Holds only the last `sequence_length` rows. A missing value
    raises `ValueError` with its time step: interpolation (`nan_policy="interpolate"`) needs the whole series.
    """
    import collections

    window = collections.deque(maxlen=sequence_length)
    for step, row in enumerate(rows):
        values = [row[name] for name in channels]
        if any(v is None or v != v for v in values):
            missing = [name for name, v in zip(channels, values) if v is None or v != v]
            raise ValueError(
                f"Missing value in channels {missing} at time step {step} of the stream; streamed series must be "
                "complete (interpolating needs the whole series): clean them first or train without streaming."
            )
        window.append(values)
        start = step - sequence_length + 1
        if start >= 0 and start % stride == 0:
            block = np.asarray(window, dtype=np.float64).astype(np.float32)
            yield {name: block[:, c].tolist() for c, name in enumerate(channels)}


def load_timeseries_dataset(
    source: Any,
    sequence_length: int = 24,
    stride: int = 1,
    channels: list[str] | None = None,
    nan_policy: SeriesNanPolicy = "raise",
    num_series: int = 10000,
    seed: int = 0,
):
    """
    Windows as an HF `datasets.Dataset` with one column per channel, each row holding that channel's `L` values
    (what the trainer iterates over; [`windows_from_columns`] turns a batch back into `[B, L, C]`).

    `"sines"` generates `num_series` TimeGAN sines of length `sequence_length`; anything else goes through
    [`load_series`], [`clean_series`] and (for a long series) [`make_windows`].
    """
    import datasets

    if isinstance(source, str) and source == "sines":
        windows = make_sines(num_series, sequence_length, seed=seed).astype(np.float64)
        names = [f"sine_{i}" for i in range(windows.shape[-1])]
    else:
        values, names = load_series(source, channels)
        values = clean_series(values, names, nan_policy)
        windows = values if values.ndim == 3 else make_windows(values, sequence_length, stride)
        if windows.shape[1] != sequence_length:
            raise ValueError(f"The sequences have length {windows.shape[1]}, not sequence_length={sequence_length}.")
    return datasets.Dataset.from_dict(
        {name: windows[:, :, c].astype(np.float32).tolist() for c, name in enumerate(names)}
    )


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
