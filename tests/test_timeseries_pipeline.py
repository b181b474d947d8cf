"""TimeSeriesXAIPipeline and TimeSeriesDenoiser: shapes, scale, tracing, persistence, UNet1DModel, training."""

import json

import numpy as np
import pytest
import torch
from diffusers import UNet1DModel

from diffusers_xai import TraceConfig
from diffusers_xai.modalities.timeseries.data import load_co2_frame, make_sines
from diffusers_xai.modalities.timeseries.modality import unet1d
from diffusers_xai.modalities.timeseries.pipeline_timeseries import TimeSeriesXAIPipeline
from diffusers_xai.modalities.timeseries.preprocessor import TimeSeriesPreprocessor
from diffusers_xai.models import TimeSeriesDenoiser
from diffusers_xai.testing import seeded_generator as gen
from diffusers_xai.training import TrainingConfig, train
from tests.test_training import QUIET

# a 1-layer transformer denoiser trained for 3 steps through the trainer
TINY = dict(
    modality="timeseries",
    hidden_dim=16,
    num_layers=1,
    num_heads=2,
    time_embedding_dim=16,
    num_train_timesteps=50,
    train_batch_size=16,
    max_train_steps=3,
    lr_warmup_steps=0,
    **QUIET,
)


def tiny_series_denoiser(in_channels, sample_size, architecture, width):
    """A 2-layer, 2-head TimeSeriesDenoiser whose hidden and time-embedding sizes are both `width`."""
    return TimeSeriesDenoiser(
        in_channels=in_channels,
        sample_size=sample_size,
        architecture=architecture,
        hidden_dim=width,
        num_layers=2,
        num_heads=2,
        time_embedding_dim=width,
    )


def tiny_series_pipeline(architecture="transformer", normalization="minmax", scheduler="ddpm"):
    pre = TimeSeriesPreprocessor.fit(make_sines(64), sequence_length=24, normalization=normalization)
    torch.manual_seed(0)
    model = tiny_series_denoiser(5, 24, architecture, width=16).eval()
    pipe = TimeSeriesXAIPipeline.from_denoiser(model, pre, scheduler, num_train_timesteps=50)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.mark.parametrize("architecture", ["transformer", "conv"])
def test_denoiser_shapes_and_errors(architecture):
    model = tiny_series_denoiser(3, 12, architecture, width=8)
    assert model(torch.randn(2, 3, 12), torch.tensor([1, 7])).sample.shape == (2, 3, 12)
    with pytest.raises(ValueError, match=r"`sample` must have shape \[B, 3"):
        model(torch.randn(2, 12, 3), 1)
    with pytest.raises(ValueError, match="must be divisible by `num_heads`"):
        TimeSeriesDenoiser(hidden_dim=10, num_heads=4)


def test_series_are_in_the_original_scale_and_reproducible():
    pipe = tiny_series_pipeline()
    out = pipe(num_series=4, generator=gen(), num_inference_steps=5)
    assert out.series.shape == (4, 24, 5) and out.series.dtype == np.float64
    pt = pipe(num_series=4, generator=gen(), num_inference_steps=5, output_type="pt").series
    assert pt.shape == (4, 5, 24)
    np.testing.assert_allclose(out.series, pipe.preprocessor.inverse_transform(pt))
    # min-max data keeps DDPM's x0 clip to [-1, 1]: outputs stay inside the training range
    loc, scale = pipe.preprocessor.loc.numpy(), pipe.preprocessor.scale.numpy()
    assert (out.series >= loc - 1e-6).all() and (out.series <= loc + scale + 1e-6).all()
    frames = pipe(num_series=2, generator=gen(), num_inference_steps=5, output_type="pd").series
    assert list(frames[0].columns) == pipe.preprocessor.channels and frames[0].shape == (24, 5)
    series, trace = pipe(num_series=4, generator=gen(), num_inference_steps=5, return_dict=False)
    np.testing.assert_array_equal(series, out.series)
    torch.testing.assert_close(pt[0, 0, :4], torch.tensor([-1.0, -0.1076, 0.5760, -0.1773]), atol=1e-3, rtol=0)


def test_trace_records_attention_over_time_steps():
    pipe = tiny_series_pipeline()
    out = pipe(
        num_series=3, generator=gen(), num_inference_steps=4, trace=TraceConfig(attention=True), output_type="pt"
    )
    trace = out.trace
    assert trace.attention_layers == ["blocks.0.attn", "blocks.1.attn"]
    maps = trace.attention("blocks.0.attn")
    assert maps.shape == (4, 3, 24, 24)
    torch.testing.assert_close(maps.float().sum(-1), torch.ones(4, 3, 24), atol=5e-3, rtol=0)  # rows are softmaxes
    assert trace.stack("latents").shape == (4, 3, 5, 24)
    plain = pipe(num_series=3, generator=gen(), num_inference_steps=4, output_type="pt")
    assert torch.equal(plain.series, out.series)


def test_save_and_from_pretrained_round_trip(tmp_path):
    pipe = tiny_series_pipeline(architecture="conv", normalization="standard")
    bound = pipe.preprocessor.config.bound  # z-scores are clipped to the training range, not to [-1, 1]
    z = (make_sines(64) - pipe.preprocessor.loc.numpy()) / pipe.preprocessor.scale.numpy()
    assert bound == pytest.approx(np.abs(z).max()) and bound > 1
    assert pipe.scheduler.config.clip_sample_range == bound
    pipe.save_pretrained(tmp_path)
    index = json.loads((tmp_path / "model_index.json").read_text())
    assert index["preprocessor"] == ["diffusers_xai.modalities.timeseries.preprocessor", "TimeSeriesPreprocessor"]
    loaded = TimeSeriesXAIPipeline.from_pretrained(tmp_path)
    loaded.set_progress_bar_config(disable=True)
    a = pipe(num_series=2, generator=gen(1), num_inference_steps=3).series
    b = loaded(num_series=2, generator=gen(1), num_inference_steps=3).series
    np.testing.assert_array_equal(a, b)
    # pipelines saved before the modality folders, or before the preprocessor left data.py, name the old modules
    for module in ("diffusers_xai.data.timeseries", "diffusers_xai.modalities.timeseries.data"):
        (tmp_path / "model_index.json").write_text(
            json.dumps({**index, "preprocessor": [module, index["preprocessor"][1]]})
        )
        old = TimeSeriesXAIPipeline.from_pretrained(tmp_path)
        old.set_progress_bar_config(disable=True)
        np.testing.assert_array_equal(a, old(num_series=2, generator=gen(1), num_inference_steps=3).series)
    loaded.set_scheduler("dpmsolver")
    assert loaded.scheduler.config.thresholding is False
    assert loaded(num_series=2, generator=gen(1), num_inference_steps=3).series.shape == (2, 24, 5)


def test_stock_unet1d_is_a_valid_denoiser():
    pre = TimeSeriesPreprocessor.fit(make_sines(32), sequence_length=24)
    torch.manual_seed(0)
    unet = unet1d(in_channels=5, sample_size=24, hidden_dim=16, num_layers=2)  # a stock diffusers UNet1DModel
    assert type(unet) is UNet1DModel
    pipe = TimeSeriesXAIPipeline.from_denoiser(unet, pre, "ddim", num_train_timesteps=50)
    pipe.set_progress_bar_config(disable=True)
    assert pipe(num_series=2, generator=gen(), num_inference_steps=3).series.shape == (2, 24, 5)


def test_preprocessor_model_mismatch_and_bad_arguments():
    pipe = tiny_series_pipeline()
    co2 = TimeSeriesPreprocessor.fit(load_co2_frame(), sequence_length=24, nan_policy="interpolate")
    with pytest.raises(ValueError, match=r"in_channels=5 but the preprocessor has 1 channels \['co2'\]"):
        TimeSeriesXAIPipeline(pipe.denoiser, pipe.scheduler, co2)
    longer = TimeSeriesPreprocessor.fit(make_sines(32, sequence_length=30), sequence_length=30)
    with pytest.raises(ValueError, match="built for windows of length 24 but the preprocessor cuts 30"):
        TimeSeriesXAIPipeline(pipe.denoiser, pipe.scheduler, longer)
    with pytest.raises(ValueError, match="`num_series` must be a positive int"):
        pipe(num_series=-1)
    with pytest.raises(ValueError, match=r"expected \[N, C, L\] = \(2, 5, 24\)"):
        pipe(num_series=2, latents=torch.zeros(2, 24, 5), num_inference_steps=2)
    with pytest.raises(ValueError, match="`output_type` must be 'np', 'pd' or 'pt'"):
        pipe(num_series=1, num_inference_steps=2, output_type="pil")


def test_train_sines_and_co2_through_the_trainer(tmp_path):
    config = TrainingConfig.from_dict(
        {
            **TINY,
            "dataset_name": "sines",
            "num_series": 64,
            "validation_steps": 3,
            "validation_batch_size": 4,
            "validation_num_inference_steps": 3,
            "output_dir": str(tmp_path / "sines"),
        }
    )
    train(config)
    assert (tmp_path / "sines" / "samples" / "step_0000003.png").exists()
    pipe = TimeSeriesXAIPipeline.from_pretrained(tmp_path / "sines")
    pipe.set_progress_bar_config(disable=True)
    assert pipe.preprocessor.channels == [f"sine_{i}" for i in range(5)]
    assert pipe(num_series=3, num_inference_steps=3, generator=gen()).series.shape == (3, 24, 5)
    co2 = {**TINY, "dataset_name": "co2", "sequence_length": 52, "stride": 26, "output_dir": str(tmp_path / "co2")}
    with pytest.raises(ValueError, match=r"missing values in \{'co2': 59\}"):
        train(TrainingConfig.from_dict(co2))
    train(TrainingConfig.from_dict({**co2, "nan_policy": "interpolate", "architecture": "conv"}))
    series = TimeSeriesXAIPipeline.from_pretrained(tmp_path / "co2")(num_series=2, num_inference_steps=2).series
    assert series.shape == (2, 52, 1) and 300 < series.min() and series.max() < 400  # ppm
    with pytest.raises(ValueError, match=r"`normalization` must be one of \['minmax', 'standard'\]"):
        TrainingConfig.from_dict({**co2, "normalization": "zscore"})


def test_dpm_solver_on_the_bundled_sines_model_matches_ddim_instead_of_diverging():
    """The bundled sines model has no stored bound, so DPM-Solver runs without thresholding; started at t=999 of its
    cosine schedule (sigma/alpha = 20,291, "trailing" spacing) it produced |x| ~ 1.6e3 for data in [0, 1]. From t=950
    ("leading") its windows have DDIM-50's mean and spread."""
    from pathlib import Path

    pipe = TimeSeriesXAIPipeline.from_pretrained(Path(__file__).resolve().parents[1] / "spaces" / "sines-timeseries")
    pipe.set_progress_bar_config(disable=True)

    def draw(steps: int) -> np.ndarray:
        return pipe(num_series=32, generator=torch.Generator().manual_seed(0), num_inference_steps=steps).series

    pipe.set_scheduler("ddim")
    reference = draw(50)
    pipe.set_scheduler("dpmsolver")
    fast = draw(10)
    assert pipe.scheduler.timesteps[0].item() == 900
    assert abs(fast.mean() - reference.mean()) < 0.02 and abs(fast.std() - reference.std()) < 0.02
    assert np.abs(fast).max() < 1.1
    pipe.set_scheduler("dpmsolver", timestep_spacing="trailing")  # the pixel default: the fault this guards
    assert np.abs(draw(10)).max() > 100
