"""Time-series data: TimeGAN sines, windowing, CO2, TimeSeriesPreprocessor round trips and bad input."""

import numpy as np
import pandas as pd
import pytest
import torch

from diffusers_xai.modalities.timeseries.data import (
    clean_series,
    load_co2_frame,
    load_series,
    load_timeseries_dataset,
    make_sines,
    make_windows,
    windows_from_columns,
)
from diffusers_xai.modalities.timeseries.preprocessor import TimeSeriesPreprocessor


def test_sines_follow_the_timegan_protocol():
    x = make_sines(200, 24, 5, seed=3)
    assert x.shape == (200, 24, 5) and x.dtype == np.float32
    assert x.min() >= 0 and x.max() <= 1
    # x_j = (sin(f j + phi) + 1) / 2 with f, phi ~ U(0, 0.1): recover phi and f of one channel and check ranges
    s = np.arcsin(2 * x[:, :, 0].astype(np.float64) - 1)
    phase, freq = s[:, 0], s[:, 1] - s[:, 0]
    assert (phase >= 0).all() and (phase < 0.1).all() and (freq >= 0).all() and (freq < 0.1 + 1e-6).all()
    np.testing.assert_array_equal(make_sines(10, seed=1), make_sines(10, seed=1))
    assert not np.array_equal(make_sines(10, seed=1), make_sines(10, seed=2))


def test_windows_with_stride():
    series = np.arange(20, dtype=np.float64).reshape(10, 2)
    w = make_windows(series, sequence_length=4, stride=3)
    assert w.shape == (3, 4, 2)  # starts 0, 3, 6
    np.testing.assert_array_equal(w[1], series[3:7])
    with pytest.raises(ValueError, match=r"window length 11 is longer than the series \(10 time steps\)"):
        make_windows(series, sequence_length=11)
    with pytest.raises(ValueError, match="`stride` must be a positive int"):
        make_windows(series, 4, stride=0)


def test_co2_nans_are_refused_or_interpolated():
    frame = load_co2_frame()
    values, names = load_series(frame)
    assert names == ["co2"] and values.shape == (len(frame), 1)
    with pytest.raises(ValueError, match=r"missing values in \{'co2': 59\}.*nan_policy='interpolate'"):
        clean_series(values, names)
    filled = clean_series(values, names, "interpolate")
    assert not np.isnan(filled).any()
    i = int(np.flatnonzero(np.isnan(values[:, 0]))[0])
    if not np.isnan(values[i - 1, 0]) and not np.isnan(values[i + 1, 0]):
        assert filled[i, 0] == pytest.approx((values[i - 1, 0] + values[i + 1, 0]) / 2)
    with pytest.raises(ValueError, match=r"Channels \['b'\] are entirely missing"):
        clean_series(np.array([[1.0, np.nan], [2.0, np.nan]]), ["a", "b"], "interpolate")


@pytest.mark.parametrize("normalization", ["minmax", "standard"])
def test_preprocessor_round_trip_and_persistence(tmp_path, normalization):
    frame = load_co2_frame()
    pre = TimeSeriesPreprocessor.fit(
        frame, sequence_length=52, stride=8, normalization=normalization, nan_policy="interpolate"
    )
    windows = pre.windows(frame)
    assert windows.shape == ((len(frame) - 52) // 8 + 1, 52, 1)
    x = pre.transform(windows)
    assert x.shape == (len(windows), 1, 52) and x.dtype == torch.float32
    if normalization == "minmax":
        assert x.min() == -1 and x.max() == 1
    else:
        assert abs(float(x.mean())) < 0.05
    np.testing.assert_allclose(pre.inverse_transform(x), windows, atol=1e-3)  # float32 model space, ppm units
    pre.save_pretrained(tmp_path)
    loaded = TimeSeriesPreprocessor.from_pretrained(tmp_path)
    assert loaded.channels == ["co2"] and loaded.loc.dtype == torch.float64
    assert torch.equal(loaded.loc, pre.loc) and torch.equal(loaded.scale, pre.scale)
    assert torch.equal(loaded.transform(windows), x)


def test_dataset_of_windows_and_sequences_input():
    ds = load_timeseries_dataset("sines", sequence_length=24, num_series=50)
    assert ds.column_names == [f"sine_{i}" for i in range(5)] and len(ds) == 50 and len(ds[0]["sine_0"]) == 24
    pre = TimeSeriesPreprocessor.fit(ds, sequence_length=24)
    assert pre.channels == ds.column_names and pre.sample_shape == (5, 24)
    batch = ds[:8]
    w = windows_from_columns({c: batch[c] for c in pre.channels})
    np.testing.assert_allclose(w, make_sines(50)[:8], atol=1e-7)
    frame = pd.DataFrame(
        {"date": pd.date_range("2020-01-01", periods=30), "x": np.arange(30.0), "y": np.sin(np.arange(30.0))}
    )
    ds2 = load_timeseries_dataset(frame, sequence_length=10, stride=5)
    assert ds2.column_names == ["x", "y"] and len(ds2) == 5  # the date column is not a channel


def test_preprocessor_bad_input():
    w = make_sines(20)
    with pytest.raises(ValueError, match=r"sequences have length 24, not sequence_length=30"):
        TimeSeriesPreprocessor.fit(w, sequence_length=30)
    with pytest.raises(ValueError, match=r"window length 100 is longer than the series"):
        TimeSeriesPreprocessor.fit(np.arange(50.0), sequence_length=100)
    with pytest.raises(ValueError, match=r"Channels \['flat'\] are constant"):
        TimeSeriesPreprocessor.fit(pd.DataFrame({"x": np.arange(30.0), "flat": 1.0}), sequence_length=5)
    with pytest.raises(ValueError, match=r"Channels \['z'\] are not columns"):
        TimeSeriesPreprocessor.fit(pd.DataFrame({"x": np.arange(30.0)}), sequence_length=5, channels=["z"])
    pre = TimeSeriesPreprocessor.fit(w, sequence_length=24)
    with pytest.raises(ValueError, match=r"Expected windows of shape \[N, 24, 5\]"):
        pre.transform(w[:, :, :3])
    with pytest.raises(ValueError, match=r"Expected \[N, 5, L\] samples"):
        pre.inverse_transform(torch.zeros(2, 3, 24))
    with pytest.raises(ValueError, match="data has 2 channels but this preprocessor was fitted on 5"):
        pre.windows(np.zeros((40, 2)))
    with pytest.raises(ValueError, match="`normalization` must be"):
        TimeSeriesPreprocessor(normalization="robust")


def test_columns_left_out_of_a_series_and_dates_out_of_order_are_said(tmp_path, caplog):
    """A text column was dropped without a word, and a file listing its newest day first was learnt backwards."""
    days = pd.date_range("2020-01-01", periods=30, freq="D")
    frame = pd.DataFrame({"date": days.strftime("%Y-%m-%d"), "level": np.arange(30.0), "site": ["a"] * 30})
    frame.to_csv(tmp_path / "in_order.csv", index=False)
    frame.iloc[::-1].to_csv(tmp_path / "newest_first.csv", index=False)
    with caplog.at_level("WARNING", logger="diffusers_xai.modalities.timeseries.data"):
        values, names = load_series(tmp_path / "in_order.csv")
    assert names == ["level"] and values[:, 0].tolist() == list(range(30))
    assert [r.getMessage() for r in caplog.records] == [
        "Columns ['site'] are not numbers: they are not channels of the series and are not modelled (pass `channels` "
        "to choose, or encode them as numbers)."
    ]
    caplog.clear()
    with caplog.at_level("WARNING", logger="diffusers_xai.modalities.timeseries.data"):
        values, _ = load_series(tmp_path / "newest_first.csv")
    assert values[0, 0] == 29.0  # still the file's order: said, not reordered
    assert "The date column 'date' does not increase down the rows" in caplog.records[-1].getMessage()
    caplog.clear()
    with caplog.at_level("WARNING", logger="diffusers_xai.modalities.timeseries.data"):
        load_series(frame[["date", "level"]])  # in order, nothing left out but the dates: nothing to say
    assert caplog.records == []
