"""Datasets → tensors for each modality."""

from .digits import load_digits_dataset, load_digits_tensors
from .tabular import TabularPreprocessor, load_breast_cancer_frame, load_table, load_wine_frame
from .timeseries import TimeSeriesPreprocessor, load_co2_frame, load_series, make_sines, make_windows

__all__ = [
    "TabularPreprocessor",
    "TimeSeriesPreprocessor",
    "load_breast_cancer_frame",
    "load_co2_frame",
    "load_digits_dataset",
    "load_digits_tensors",
    "load_series",
    "load_table",
    "load_wine_frame",
    "make_sines",
    "make_windows",
]
