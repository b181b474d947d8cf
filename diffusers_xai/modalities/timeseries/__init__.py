"""The time-series modality: windows → normalised `[C, L]` tensors ([`TimeSeriesPreprocessor`]), a
[`TimeSeriesDenoiser`], [`TimeSeriesXAIPipeline`]."""

from ...utils.moved_modules import alias_moved_modules
from .data import TIMESERIES_DATASETS, load_co2_frame, load_series, make_sines, make_windows
from .denoiser import TimeSeriesDenoiser, TimeSeriesDenoiserOutput
from .modality import TimeSeriesModality
from .pipeline_timeseries import TimeSeriesXAIPipeline, TimeSeriesXAIPipelineOutput
from .preprocessor import TimeSeriesPreprocessor

alias_moved_modules()  # pipelines saved before the move name the old modules

__all__ = [
    "TIMESERIES_DATASETS",
    "TimeSeriesDenoiser",
    "TimeSeriesDenoiserOutput",
    "TimeSeriesModality",
    "TimeSeriesPreprocessor",
    "TimeSeriesXAIPipeline",
    "TimeSeriesXAIPipelineOutput",
    "load_co2_frame",
    "load_series",
    "make_sines",
    "make_windows",
]
