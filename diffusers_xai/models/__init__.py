"""Denoisers for non-image modalities: a TabDDPM-style MLP/ResNet for tables and a 1-D model for time series."""

from .tabular_denoiser import TabularDenoiser, TabularDenoiserOutput
from .timeseries_denoiser import TimeSeriesDenoiser, TimeSeriesDenoiserOutput

__all__ = ["TabularDenoiser", "TabularDenoiserOutput", "TimeSeriesDenoiser", "TimeSeriesDenoiserOutput"]
