import numpy as np
import pytest
import torch
from statsmodels.tsa.stattools import acf

from diffusers_xai.evaluation import (
    WindowStatsEncoder,
    autocorrelation,
    autocorrelation_distance,
    discriminative_score,
    evaluate_timeseries,
    frechet_distance,
    predictive_score,
)


def sines(n, length=24, channels=5, seed=0):
    """TimeGAN's sines: per channel a random frequency and phase in [0, 0.1], scaled to [0, 1]."""
    rng = np.random.default_rng(seed)
    freq = rng.uniform(0, 0.1, (n, 1, channels))
    phase = rng.uniform(0, 0.1, (n, 1, channels))
    return ((np.sin(freq * np.arange(length)[None, :, None] + phase) + 1) / 2).astype(np.float32)


def test_autocorrelation_matches_statsmodels():
    x = np.random.default_rng(0).standard_normal((4, 30, 2)).cumsum(1)
    ours = autocorrelation(x, 6).numpy()
    for i in range(4):
        for d in range(2):
            np.testing.assert_allclose(ours[i, :, d], acf(x[i, :, d], nlags=6)[1:], rtol=1e-10)


@pytest.mark.slow
def test_predictive_score_tstr_of_real_equals_trtr():
    real = sines(256)
    kw = {"iterations": 60, "batch_size": 64, "learning_rate": 1e-2, "progress": False}
    tstr, trtr = predictive_score(real, real, **kw)
    assert tstr == trtr and 0 < trtr < 0.25
    noisy = sines(256, seed=1) + np.random.default_rng(2).normal(0, 0.3, (256, 24, 5)).astype(np.float32)
    tstr_noisy, trtr_again = predictive_score(real, noisy.clip(0, 1), **kw)
    assert trtr_again == trtr and tstr_noisy > trtr


def test_discriminative_score_separates_noise_from_real():
    real, other = sines(300), sines(300, seed=1)
    noisy = other + np.random.default_rng(3).normal(0, 0.4, other.shape).astype(np.float32)
    # a short budget with a larger step than TimeGAN's 2000 x 1e-3
    kw = {"iterations": 100, "batch_size": 64, "learning_rate": 1e-2, "progress": False}
    assert discriminative_score(real, other, **kw) < 0.1
    assert discriminative_score(real, noisy, **kw) > 0.3


def test_window_fid_and_acf_distance_zero_on_self_and_monotonic():
    real = sines(400)
    enc = WindowStatsEncoder()
    f_real = enc(torch.from_numpy(real))
    assert f_real.shape == (400, 5 * (5 + 10 + 8) + 10)
    g = np.random.default_rng(0)
    noise = g.standard_normal(real.shape).astype(np.float32)
    fids, acfs = [], []
    for sigma in (0.0, 0.02, 0.05, 0.1):
        fake = real + sigma * noise
        fids.append(frechet_distance(f_real, enc(torch.from_numpy(fake))))
        acfs.append(autocorrelation_distance(real, fake))
    assert fids[0] == pytest.approx(0.0, abs=1e-6) and acfs[0] == 0.0
    assert all(a < b for a, b in zip(fids, fids[1:])) and all(a < b for a, b in zip(acfs, acfs[1:]))


@pytest.mark.slow
def test_evaluate_timeseries_report(tmp_path):
    real, synth = sines(200), sines(200, seed=1)
    report = evaluate_timeseries(
        real,
        synth,
        discriminative_iterations=40,
        predictive_iterations=40,
        batch_size=32,
        progress=False,
        output_dir=tmp_path,
    )
    keys = [m.key for m in report.metrics]
    assert keys == ["discriminative_score", "predictive_score", "predictive_score_real", "acf_distance", "fid", "kid"]
    assert report["fid"].name == "FID (window-statistics embedding)"
    assert report.details["window_shape"] == [24, 5]
    assert (tmp_path / "timeseries_scores.png").exists()


def test_bad_windows():
    real = sines(50)
    with pytest.raises(ValueError, match=r"\(24, 5\) \(T, D\) but synthetic windows are \(24, 3\)"):
        evaluate_timeseries(real, sines(50, channels=3), progress=False)
    nan = real.copy()
    nan[7, 3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN or inf in 1 of 50 windows .first at index 7"):
        autocorrelation_distance(real, nan)
    with pytest.raises(ValueError, match=r"\[N, T, D\]"):
        discriminative_score(real[None], real[None], progress=False)
    with pytest.raises(TypeError, match="numpy array or torch.Tensor"):
        predictive_score(real.tolist(), real, progress=False)


@pytest.mark.slow
def test_sines_real_vs_real_matches_published_original_data_scores():
    # Diffusion-TS (Yuan & Qiao 2024) Table 1, sines length 24, "original data" row: predictive 0.094. Two
    # independent draws of real sines should reach it with TimeGAN's budget, and be indistinguishable.
    real, other = sines(10000), sines(10000, seed=1)
    tstr, trtr = predictive_score(real, other, progress=False)
    assert tstr == pytest.approx(0.094, abs=0.01) and trtr == pytest.approx(0.094, abs=0.01)
    assert discriminative_score(real, other, progress=False) < 0.03
