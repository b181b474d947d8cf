"""The time-series modality: windows → normalised `[C, L]` tensors, a [`TimeSeriesDenoiser`] and a
[`TimeSeriesXAIPipeline`]."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from diffusers import UNet1DModel

from ..base import ModalityOptions, SampleBatch
from ..hf_datasets import load_hf_dataset, to_stream
from ..preprocessed import PreprocessedModality
from ..registry import register_modality
from ..sampling import sample_per_generator, sampling_steps
from .data import (
    TIMESERIES_DATASETS,
    iter_windows,
    load_series,
    load_timeseries_dataset,
    windows_from_columns,
)
from .denoiser import TimeSeriesDenoiser
from .pipeline_timeseries import TimeSeriesXAIPipeline
from .preprocessor import TimeSeriesPreprocessor

__all__ = ["TimeSeriesModality", "TimeSeriesOptions", "unet1d"]


POSITIVE_OPTIONS = (
    "sequence_length",
    "stride",
    "num_series",
    "hidden_dim",
    "num_layers",
    "num_heads",
    "time_embedding_dim",
)


@dataclass
class TimeSeriesOptions(ModalityOptions):
    """The time-series keys (see [`TimeSeriesModality`])."""

    sequence_length: int = 24
    stride: int = 1
    value_columns: list[str] | None = None
    normalization: Literal["minmax", "standard"] = "minmax"
    nan_policy: Literal["raise", "interpolate"] = "raise"
    num_series: int = 10000
    architecture: Literal["transformer", "conv", "unet1d"] = "transformer"
    hidden_dim: int = 64
    num_layers: int = 3
    num_heads: int = 4
    time_embedding_dim: int = 128

    def validate(self) -> None:
        for key in POSITIVE_OPTIONS:
            _positive_int(key, getattr(self, key))
        self.check_choices("normalization", "nan_policy", "architecture")
        if self.architecture == "transformer" and self.hidden_dim % self.num_heads:
            raise ValueError(f"`hidden_dim` ({self.hidden_dim}) must be divisible by `num_heads` ({self.num_heads}).")
        if self.architecture == "unet1d" and self.hidden_dim % 8:
            raise ValueError(f"`hidden_dim` must be a multiple of 8 for unet1d (GroupNorm), got {self.hidden_dim}.")
        channels = self.value_columns
        if isinstance(channels, str):
            self.value_columns = [channels]
        elif channels is not None and not (isinstance(channels, list) and all(isinstance(c, str) for c in channels)):
            raise ValueError(f"`value_columns` must be a list of column names, got {channels!r}.")


def _positive_int(key: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"`{key}` must be a positive int, got {value!r}.")


@register_modality
class TimeSeriesModality(PreprocessedModality):
    """
    Fixed-length multivariate windows. `dataset_name` is `sines` (TimeGAN's benchmark, `num_series` windows),
    `co2` (weekly Mauna Loa CO2, windowed), or a CSV/Parquet file / `save_to_disk` folder / Hub id holding one long
    series (numeric columns = channels; non-numeric columns such as dates are ignored).

    Keys: `sequence_length`, `stride`, `value_columns` (the channels; default: every numeric column),
    `normalization` (`minmax`/`standard`), `nan_policy` (`raise`/`interpolate`), `num_series` (sines only), and
    the denoiser's `architecture` (`transformer`/`conv`: [`TimeSeriesDenoiser`]; `unet1d`: diffusers' stock
    `UNet1DModel` with `num_layers` ResNet levels of widths `hidden_dim * 2**i`), `hidden_dim`, `num_layers`,
    `num_heads`, `time_embedding_dim` (plus the shared `dropout`). (`value_columns`, not `channels`: the trainer's
    `channels` key is the image channel count.)
    """

    name = "timeseries"
    pipeline_class = TimeSeriesXAIPipeline
    adjective = "time-series"
    data_noun = "time series"
    task_categories = ("time-series-forecasting",)
    options_class = TimeSeriesOptions
    sample_field = "series"
    evaluation_batch_size = 256

    # ---- data ----
    def load_dataset(self, config):
        opts = config.modality_options
        source = config.dataset_name
        if source not in TIMESERIES_DATASETS:
            source = load_hf_dataset(config).to_pandas()
        return load_timeseries_dataset(
            source,
            sequence_length=opts.sequence_length,
            stride=opts.stride,
            channels=opts.value_columns,
            nan_policy=opts.nan_policy,
            num_series=opts.num_series,
            seed=config.seed or 0,
        )

    def load_streaming_dataset(self, config):
        """
        Windows cut from a streamed long series (rows = time steps) by [`iter_windows`]: the windows, stride and
        values of the map-style read. Windows overlap, so neighbours are alike; the shuffle buffer mixes them.
        The built-in `sines`/`co2` are windowed in memory (they are small) and then streamed.
        """
        opts = config.modality_options
        import datasets
        import pandas as pd

        if config.dataset_name in TIMESERIES_DATASETS:
            return to_stream(self.load_dataset(config))
        if opts.nan_policy != "raise":
            raise ValueError(
                f"`nan_policy: {opts.nan_policy}` fills gaps from both sides along the whole series, which a stream "
                "never holds; with `streaming: true` use `nan_policy: raise` (a missing value then stops training "
                "naming its time step), or interpolate the series before training."
            )
        rows = load_hf_dataset(config, streaming=True)
        # the channels by the map-style rules (`value_columns`, else every numeric column), read off the first rows
        _, channels = load_series(pd.DataFrame(list(rows.take(100))), opts.value_columns)
        features = datasets.Features({name: datasets.Sequence(datasets.Value("float32")) for name in channels})
        # `from_generator` with a tuple of channels: a list in `gen_kwargs` would be split into shards
        return datasets.IterableDataset.from_generator(
            iter_windows,
            features=features,
            gen_kwargs={
                "rows": rows,
                "channels": tuple(channels),
                "sequence_length": opts.sequence_length,
                "stride": opts.stride,
            },
        )

    def fit_preprocessor(self, dataset, config) -> TimeSeriesPreprocessor:
        opts = config.modality_options
        return TimeSeriesPreprocessor.fit(
            dataset,
            sequence_length=opts.sequence_length,
            stride=opts.stride,
            normalization=opts.normalization,
            nan_policy=opts.nan_policy,
        )

    def to_tensors(self, examples: dict[str, list], preprocessor, config) -> dict[str, torch.Tensor]:
        windows = windows_from_columns({c: examples[c] for c in preprocessor.channels})
        return {"x0": preprocessor.transform(windows)}

    # ---- model and pipeline ----
    def build_model(self, config, preprocessor: TimeSeriesPreprocessor) -> TimeSeriesDenoiser | UNet1DModel:
        opts = config.modality_options
        if opts.architecture == "unet1d":
            return unet1d(
                preprocessor.num_channels,
                preprocessor.config.sequence_length,
                opts.hidden_dim,
                opts.num_layers,
            )
        return TimeSeriesDenoiser(
            in_channels=preprocessor.num_channels,
            sample_size=preprocessor.config.sequence_length,
            architecture=opts.architecture,
            hidden_dim=opts.hidden_dim,
            num_layers=opts.num_layers,
            num_heads=opts.num_heads,
            time_embedding_dim=opts.time_embedding_dim,
            dropout=config.dropout,
        )

    def log_validation(self, pipeline, step: int, config, accelerator) -> str:
        """Sample a few windows with DDIM from a fixed seed and plot them to `samples/step_N.png`."""
        generator = torch.Generator("cpu").manual_seed(config.seed or 0)
        series = self.draw(
            self.ddim(pipeline),
            min(config.validation_batch_size, 16),
            generator=generator,
            num_inference_steps=sampling_steps(config),
        )
        path = os.path.join(config.output_dir, "samples", f"step_{step:07d}.png")
        from ...viz.samples import save_series_plot  # viz imports the explainers: on use only

        return save_series_plot(series, pipeline.preprocessor.channels, path)

    # ---- end of training ----
    def evaluate(self, pipeline, config, num_samples: int, output_dir: str):
        """TimeGAN discriminative/predictive scores, autocorrelation distance and window FID/KID of DDIM windows
        vs the training windows (original scale)."""
        from ...evaluation import evaluate_timeseries

        synthetic = np.concatenate(self.sample_for_evaluation(pipeline, config, num_samples))
        dataset = self.reference_dataset(config, 10_000)
        real = windows_from_columns({c: dataset[c] for c in pipeline.preprocessor.channels})
        return evaluate_timeseries(
            real, synthetic, output_dir=output_dir, dataset_name=config.dataset_name, seed=config.seed or 0
        )

    evaluation_output_type = "np"

    def score(self, real, samples, options: dict):
        """TimeGAN discriminative/predictive scores, autocorrelation distance and window FID/KID."""
        from ...evaluation import evaluate_timeseries

        return evaluate_timeseries(
            real,
            samples,
            **self.report_options(options, "discriminative_iterations", "predictive_iterations", "progress"),
        )

    # the explanation card ([`PreprocessedModality.explain`]): attributions of the whole window, commit steps
    def plot_attributions(self, explanation, path: str) -> str:
        from ...viz import plot_series_attributions

        return plot_series_attributions(explanation, path)

    def plot_commit_steps(self, pipeline, trace, path: str) -> str:
        from ...explain import series_commit_steps
        from ...viz import plot_series_commit_steps

        return plot_series_commit_steps(series_commit_steps(trace, pipeline.preprocessor.channels), path)

    # ---- sharded datasets ----
    def samples_from_dataset(self, dataset) -> np.ndarray:
        """The generated windows of a dataset written by [`sample_batch`] as one `[N, length, channels]` array."""
        return np.stack([np.asarray(window, dtype=np.float32) for window in dataset["series"]])

    def sample_batch(self, pipeline, generators, num_inference_steps: int, trace) -> SampleBatch:
        """Windows from a [`TimeSeriesXAIPipeline`] in original units: one `[length, channels]` float32 array each."""
        import datasets

        out = sample_per_generator(pipeline, generators, num_inference_steps, trace, output_type="np")
        series = np.asarray(out.series, dtype=np.float32)  # [N, L, C]
        feature = datasets.Array2D(shape=tuple(series.shape[1:]), dtype="float32")
        return SampleBatch({"series": [s.tolist() for s in series]}, datasets.Features({"series": feature}), out.trace)


def unet1d(in_channels: int, sample_size: int, hidden_dim: int = 64, num_layers: int = 2) -> UNet1DModel:
    """diffusers' `UNet1DModel` in the ResNet configuration of its value-guided RL pipeline (positional timestep
    embedding, `DownResnetBlock1D`/`UpResnetBlock1D`), `num_layers` levels of widths `hidden_dim * 2**i`."""
    levels = max(2, num_layers)
    if sample_size % 2 ** (levels - 1):
        raise ValueError(
            f"UNet1DModel with {levels} levels needs sequence_length divisible by {2 ** (levels - 1)}, got "
            f"{sample_size}."
        )
    return UNet1DModel(
        sample_size=sample_size,
        in_channels=in_channels,
        out_channels=in_channels,
        block_out_channels=tuple(hidden_dim * 2**i for i in range(levels)),
        down_block_types=("DownResnetBlock1D",) * levels,
        up_block_types=("UpResnetBlock1D",) * (levels - 1),
        mid_block_type="MidResTemporalBlock1D",
        out_block_type="OutConv1DBlock",
        time_embedding_type="positional",
        use_timestep_embedding=True,
        act_fn="mish",
        norm_num_groups=8,
        flip_sin_to_cos=False,
        freq_shift=1,
    )
