"""Per-time-step / per-channel explanations with the one explainer family: IG against hand-computed values, shap,
commit steps, plots."""

import pytest
import torch
from diffusers import DDPMScheduler
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils import BaseOutput

from diffusers_xai import Trace, TraceConfig, TraceStep
from diffusers_xai.explain import (
    DenoiserAttribution,
    DenoiserShap,
    ExplanationTarget,
    series_commit_steps,
    series_target,
)
from diffusers_xai.modalities.timeseries.data import make_sines
from diffusers_xai.modalities.timeseries.pipeline_timeseries import TimeSeriesXAIPipeline
from diffusers_xai.modalities.timeseries.preprocessor import TimeSeriesPreprocessor
from diffusers_xai.models import TimeSeriesDenoiser
from diffusers_xai.viz import plot_series_attributions, plot_series_commit_steps


def region(pipe, channel=None, time=None, output="pred_original_sample"):
    c, length = pipe.preprocessor.sample_shape
    return series_target(pipe.preprocessor.channels, length, channel, time, output)


class MixingDenoiser(ModelMixin, ConfigMixin):
    """$\\epsilon = x_t + 0.5\\,\\mathrm{shift}(x_t)$: each element also reads its left neighbour in time (linear)."""

    @register_to_config
    def __init__(self, in_channels: int = 2, sample_size: int = 6):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor(0.5))

    def forward(self, sample, timestep, return_dict=True):
        shifted = torch.nn.functional.pad(sample[..., :-1], (1, 0))
        out = sample + self.scale * shifted
        return BaseOutput(sample=out) if return_dict else (out,)


def linear_pipeline():
    pre = TimeSeriesPreprocessor.fit(make_sines(16, sequence_length=6, num_channels=2), sequence_length=6)
    pipe = TimeSeriesXAIPipeline(MixingDenoiser(), DDPMScheduler(num_train_timesteps=50), pre)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_integrated_gradients_match_hand_computed_values():
    pipe = linear_pipeline()
    t = 20
    ab = float(pipe.scheduler.alphas_cumprod[t])
    a, b = ab**0.5, (1 - ab) ** 0.5
    x = torch.randn(3, 2, 6, generator=torch.Generator().manual_seed(0))
    expl = DenoiserAttribution(pipe, target=region(pipe, 1, 3)).attribute(
        x, timesteps=t, n_steps=4, return_convergence_delta=True
    )
    # x0_hat[1, 3] = (x[1, 3] - b (x[1, 3] + 0.5 x[1, 2])) / a: only (1, 3) and (1, 2) contribute
    expected = torch.zeros(3, 2, 6)
    expected[:, 1, 3] = x[:, 1, 3] * (1 - b) / a
    expected[:, 1, 2] = x[:, 1, 2] * (-0.5 * b) / a
    torch.testing.assert_close(expl.attributions[0], expected, atol=1e-5, rtol=1e-4)
    assert expl.delta.abs().max() < 1e-5 and expl.feature_names == ["channel_0", "channel_1"]
    per_t = expl.attributions.abs().sum(dim=2)[0]  # per time step of x_t
    assert per_t.shape == (3, 6) and (per_t[:, [0, 1, 4, 5]] == 0).all()
    torch.testing.assert_close(expl.attributions.abs().sum(dim=3)[0, :, 0], torch.zeros(3))  # per channel
    assert expl.maps.shape == (1, 3, 1, 6)  # one value per time point
    # the whole window as the target: every element's own coefficient plus its right neighbour's
    full = DenoiserAttribution(pipe, target=region(pipe)).attribute(x, timesteps=t, n_steps=2).attributions[0]
    coeff = torch.full((6,), (1 - 1.5 * b) / a)
    coeff[-1] = (1 - b) / a  # the last step has no right neighbour reading it
    torch.testing.assert_close(full, x * coeff, atol=1e-5, rtol=1e-4)


def test_shap_agrees_with_integrated_gradients_on_a_linear_denoiser():
    pipe = linear_pipeline()
    x = 2 * torch.randn(1, 2, 6, generator=torch.Generator().manual_seed(1))
    ig = DenoiserAttribution(pipe, target=region(pipe, 0)).attribute(x, timesteps=20).attributions
    sh = DenoiserShap(pipe, target=region(pipe, 0)).attribute(x, timesteps=20, nsamples=200).attributions
    assert sh.shape == ig.shape == (1, 1, 2, 6)
    torch.testing.assert_close(sh, ig, atol=0.5, rtol=0.25)
    assert torch.corrcoef(torch.stack([sh.flatten(), ig.flatten()]))[0, 1] > 0.9


@pytest.fixture(scope="module")
def sines_run():
    pre = TimeSeriesPreprocessor.fit(make_sines(64), sequence_length=24, channels=[f"sine_{i}" for i in range(5)])
    torch.manual_seed(0)
    model = TimeSeriesDenoiser(hidden_dim=16, num_layers=1, num_heads=2, time_embedding_dim=16).eval()
    pipe = TimeSeriesXAIPipeline.from_denoiser(model, pre, "ddpm", num_train_timesteps=50)
    pipe.set_progress_bar_config(disable=True)
    return pipe, pipe(num_series=2, generator=torch.Generator().manual_seed(0), num_inference_steps=5, trace=True)


def test_attribution_from_a_trace_and_errors(sines_run, tmp_path):
    pipe, out = sines_run
    t = out.trace.steps[2].timestep
    expl = DenoiserAttribution(pipe, target=region(pipe, "sine_2", slice(5, 10))).attribute(out.trace, timesteps=t)
    assert expl.attributions.shape == (1, 2, 5, 24) and expl.step_indices == [2]
    assert all(p.requires_grad for p in pipe.denoiser.parameters())
    path = plot_series_attributions(expl, str(tmp_path / "ig.png"))
    with open(path, "rb") as f:
        assert f.read(4) == b"\x89PNG"
    explainer = DenoiserAttribution(pipe)
    with pytest.raises(ValueError, match=r"Unknown channel 'sine_9'"):
        region(pipe, "sine_9")
    with pytest.raises(ValueError, match="time index 30 is out of range for size 24"):
        region(pipe, time=30)
    with pytest.raises(ValueError, match=r"x_t must have shape \[B, 5, 24\]"):
        explainer.attribute(torch.zeros(1, 24, 5), timesteps=3)
    with pytest.raises(ValueError, match=r"Timestep 7 is not in the schedule of this run"):
        explainer.attribute(out.trace, timesteps=7)
    # bad input of the one family on windows: a region mask of the wrong shape, a condition the model cannot take
    with pytest.raises(
        ValueError, match=r"mask has shape \(24, 5\) but windows are \[B, 5, 24\]; pass a mask of shape"
    ):
        DenoiserAttribution(pipe, target=ExplanationTarget(mask=torch.ones(24, 5))).attribute(out.trace)
    with pytest.raises(ValueError, match="`class_labels` were given but TimeSeriesDenoiser is unconditional"):
        explainer.attribute(out.trace, class_labels=torch.zeros(2, dtype=torch.long))


def test_commit_steps_on_a_hand_made_trajectory(tmp_path):
    # one window, 1 channel, 3 time steps; x0_hat over 4 recorded steps
    values = [[0.0, 0.5, 1.0], [0.9, 0.5, 0.0], [0.98, 0.1, 0.0], [1.0, 0.5, 0.02]]
    steps = [TraceStep(i, 30 - 10 * i, pred_original_sample=torch.tensor([[v]])) for i, v in enumerate(values)]
    result = series_commit_steps(Trace(TraceConfig(), steps, num_inference_steps=4), ["level"], tolerance=0.05)
    assert result.step_indices.tolist() == [[[2, 3, 1]]]
    torch.testing.assert_close(result.per_time_step(), torch.tensor([2 / 3, 1.0, 1 / 3]))
    path = plot_series_commit_steps(result, str(tmp_path / "commit.png"))
    with open(path, "rb") as f:
        assert f.read(4) == b"\x89PNG"
    with pytest.raises(ValueError, match="`tolerance` must be > 0"):
        series_commit_steps(Trace(TraceConfig(), steps), tolerance=0)
