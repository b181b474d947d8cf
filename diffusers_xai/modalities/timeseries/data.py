"""The series a training run reads: the built-in ones (TimeGAN sines, Mauna Loa CO2) and any array, DataFrame or
file, as values `[T, C]` or sequences `[N, L, C]`, with the windowing and NaN handling shared by training and the
preprocessor."""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch

from ...utils.moved_modules import moved_attribute_getter
from ..hf_datasets import load_data_file

logger = logging.getLogger(__name__)

__all__ = [
    "TIMESERIES_DATASETS",
    "clean_series",
    "iter_windows",
    "load_co2_frame",
    "load_series",
    "load_timeseries_dataset",
    "make_sines",
    "make_windows",
    "windows_from_columns",
]

SeriesNanPolicy = Literal["raise", "interpolate"]

__getattr__ = moved_attribute_getter(__name__)  # `TimeSeriesPreprocessor` & co., for pipelines saved before it moved


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
            source = load_data_file(path)["train"].to_pandas()  # as the trainer reads it
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
            _warn_dropped(frame[bad])
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


def _warn_dropped(frame: pd.DataFrame) -> None:
    """Say which columns are not channels: a text column left out was silently not modelled, and a date column
    that does not increase means the rows (the time axis) are not in time order (an export listing the newest
    first)."""
    dates = {}
    for column in frame.columns:
        parsed = frame[column] if pd.api.types.is_datetime64_any_dtype(frame[column]) else None
        if parsed is None and frame[column].dtype == object:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # pandas' "could not infer format" for text that is no date
                parsed = pd.to_datetime(frame[column], errors="coerce")
            parsed = parsed if parsed.notna().all() else None
        if parsed is not None:
            dates[column] = parsed
    others = [str(c) for c in frame.columns if c not in dates]
    if others:
        logger.warning(
            f"Columns {others} are not numbers: they are not channels of the series and are not modelled "
            "(pass `channels` to choose, or encode them as numbers)."
        )
    for column, parsed in dates.items():
        if not parsed.is_monotonic_increasing:
            logger.warning(
                f"The date column {str(column)!r} does not increase down the rows, but the rows are the time axis: "
                "sort the table by it (df.sort_values(...)) before training."
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
