"""The explained target: default x0 sum, region masks, user callables, and the bad-input errors."""

import pytest
import torch
from diffusers import DDPMScheduler
from diffusers.models.unets.unet_2d import UNet2DOutput

from diffusers_xai.explain import (
    DenoiserAttribution,
    DenoiserForward,
    ExplanationTarget,
    resolve_target,
    x0_coefficients,
)
from diffusers_xai.pipelines.schedulers import predict_original_sample
from diffusers_xai.testing import tiny_pipeline


class ScaleDenoiser(torch.nn.Module):
    """epsilon_theta(x, t) = w * x: a denoiser whose x0 prediction is known in closed form."""

    def __init__(self, w: float = 0.5):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor(w))

    def forward(self, sample, timestep, **kwargs):
        return UNet2DOutput(sample=self.w * sample)


def test_pred_original_sample_target_is_sum_of_predicted_x0():
    scheduler = DDPMScheduler(num_train_timesteps=100)
    x = torch.arange(8.0).reshape(2, 1, 2, 2)
    t = 40
    ab = scheduler.alphas_cumprod[t]
    y = DenoiserForward(ScaleDenoiser(0.5), scheduler, ExplanationTarget(output="pred_original_sample"))(x, t)
    expected = ((x - (1 - ab).sqrt() * 0.5 * x) / ab.sqrt()).sum(dim=(1, 2, 3))
    torch.testing.assert_close(y, expected)


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
def test_default_target_is_the_models_contribution_to_x0(prediction_type):
    # f(x) = 0.5 x; by hand: x0 = a x + b f with (a, b) = (1/sqrt(ab), -sqrt(1-ab)/sqrt(ab)) for epsilon,
    # (sqrt(ab), -sqrt(1-ab)) for v and (0, 1) for sample prediction; the default target is sum(b f) = sum(x0 - a x)
    scheduler = DDPMScheduler(num_train_timesteps=100, prediction_type=prediction_type)
    x = torch.arange(8.0).reshape(2, 1, 2, 2) - 3.0
    t = 40
    ab = float(scheduler.alphas_cumprod[t])
    a, b = {
        "epsilon": (1 / ab**0.5, -((1 - ab) ** 0.5) / ab**0.5),
        "v_prediction": (ab**0.5, -((1 - ab) ** 0.5)),
        "sample": (0.0, 1.0),
    }[prediction_type]
    assert x0_coefficients(scheduler, t) == pytest.approx((a, b))
    y = DenoiserForward(ScaleDenoiser(0.5), scheduler, ExplanationTarget())(x, t)
    torch.testing.assert_close(y, (b * 0.5 * x).sum(dim=(1, 2, 3)))
    # the same as the pipelines' x0 minus the scheduler's a_t x_t
    x0 = predict_original_sample(scheduler, 0.5 * x, t, x)
    torch.testing.assert_close(y, (x0 - a * x).sum(dim=(1, 2, 3)), atol=1e-5, rtol=1e-5)
    # a constant map for the gradient of this linear toy: d y / d x = 0.5 b everywhere (scheduler term gone)
    saliency = DenoiserAttribution(ScaleDenoiser(0.5), "input_x_gradient", scheduler=scheduler)
    scheduler.set_timesteps(100)
    res = saliency.attribute(x, timesteps=t)
    torch.testing.assert_close(res.attributions[0], 0.5 * b * x)


def test_masked_mean_and_model_output_target():
    x = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    mask = torch.tensor([[1.0, 0.0], [1.0, 0.0]])  # left column
    target = ExplanationTarget(output="model_output", mask=mask, reduction="mean")
    y = DenoiserForward(ScaleDenoiser(2.0), None, target)(x, 0)
    torch.testing.assert_close(y, torch.tensor([(2.0 + 6.0) / 2]))


def test_callable_target_receives_masked_output():
    x = torch.ones(3, 1, 2, 2)
    target = resolve_target(lambda out: out.amax(dim=(1, 2, 3)) * 10)
    y = DenoiserForward(ScaleDenoiser(3.0), None, ExplanationTarget(output="model_output", fn=target.fn))(x, 0)
    torch.testing.assert_close(y, torch.full((3,), 30.0))


def test_bad_targets_raise():
    with pytest.raises(ValueError, match="`output` must be one of"):
        ExplanationTarget(output="noise")
    with pytest.raises(ValueError, match="`reduction`"):
        ExplanationTarget(reduction="max")
    with pytest.raises(TypeError, match="`target` must be"):
        resolve_target(3)
    with pytest.raises(ValueError, match="needs the noise schedule"):
        DenoiserForward(ScaleDenoiser(), None, ExplanationTarget())
    with pytest.raises(ValueError, match="'pred_original_sample' needs the noise schedule"):
        DenoiserForward(ScaleDenoiser(), None, ExplanationTarget(output="pred_original_sample"))
    bad_fn = ExplanationTarget(output="model_output", fn=lambda out: out.sum())
    with pytest.raises(ValueError, match="batch size 2"):
        DenoiserForward(ScaleDenoiser(), None, bad_fn)(torch.ones(2, 1, 2, 2), 0)


def test_mask_of_wrong_shape_raises_before_any_forward():
    pipe = tiny_pipeline()
    out = pipe(num_inference_steps=2, trace=True, output_type="pt", generator=torch.Generator().manual_seed(0))
    explainer = DenoiserAttribution(pipe, "saliency", target=ExplanationTarget(mask=torch.ones(4, 4)))
    with pytest.raises(ValueError, match=r"mask has shape \(4, 4\) but samples are \[B, 1, 8, 8\]"):
        explainer.attribute(out.trace)
    per_sample = ExplanationTarget(mask=torch.ones(2, 1, 8, 8))
    with pytest.raises(ValueError, match="one region for every sample"):
        DenoiserAttribution(pipe, "saliency", target=per_sample).attribute(out.trace)


def test_timestep_not_in_schedule_or_not_recorded():
    pipe = tiny_pipeline()
    out = pipe(num_inference_steps=4, trace={"steps": [0, 3]}, output_type="pt")
    saliency = DenoiserAttribution(pipe, "saliency")
    assert out.trace.timesteps.tolist() == [75, 0]
    with pytest.raises(ValueError, match="Timestep 7 is not in the schedule"):
        saliency.attribute(out.trace, timesteps=[7])
    with pytest.raises(ValueError, match="Timestep 50 was not recorded"):
        saliency.attribute(out.trace, timesteps=[50])
    x = torch.randn(1, 1, 8, 8)
    with pytest.raises(ValueError, match=r"Timesteps \[13\] are not in the scheduler's schedule"):
        saliency.attribute(x, timesteps=13)
    with pytest.raises(ValueError, match="needs `timesteps=`"):
        saliency.attribute(x)
