"""SHAP behind `attribute()`: GradientExplainer (exact on a linear denoiser), Partition explainer (additive, slow)."""

import numpy as np
import pytest
import torch

from diffusers_xai.explain import DenoiserShap, ExplanationTarget
from diffusers_xai.testing import tiny_pipeline, tiny_traced_run
from tests.test_explain_attributions import FakeScheduler, LinearDenoiser, W, X


def test_gradient_shap_of_a_linear_denoiser_is_w_times_x_minus_background():
    # expected gradients of a linear function: phi = W * (x - x'); one background sample x' makes it exact
    explainer = DenoiserShap(LinearDenoiser(), "gradient", FakeScheduler(), ExplanationTarget(output="model_output"))
    background = torch.full((1, 1, 2, 2), 0.5)
    res = explainer.attribute(X, timesteps=10, background=background, nsamples=8)
    torch.testing.assert_close(res.attributions[0], W * (X - 0.5))
    torch.testing.assert_close(res.metadata["expected_value"], torch.tensor([[(W * 0.5).sum().item()]]))
    with pytest.raises(ValueError, match="`background` must be"):
        explainer.attribute(X, timesteps=10, background=torch.zeros(2, 1, 3, 3))
    with pytest.raises(ValueError, match="`algorithm` must be"):
        DenoiserShap(LinearDenoiser(), "deep")


def test_gradient_shap_on_the_unet():
    pipe, out = tiny_traced_run()
    res = DenoiserShap(pipe).attribute(out.trace, timesteps=out.trace.timesteps[:2].tolist(), nsamples=16)
    assert res.method == "shap"
    assert res.attributions.shape == (2, 2, 1, 8, 8) and res.maps.shape == (2, 2, 1, 8, 8)
    assert res.metadata["expected_value"].shape == (2, 2)
    # seeded; and neither numpy's global RNG nor the UNet's mode and gradients are touched by shap
    np.random.seed(123)
    expected_draw = np.random.rand()
    np.random.seed(123)
    pipe.unet.train()
    marker = torch.ones_like(pipe.unet.conv_in.weight)
    pipe.unet.conv_in.weight.grad = marker
    again = DenoiserShap(pipe).attribute(out.trace, timesteps=out.trace.timesteps[:2].tolist(), nsamples=16)
    torch.testing.assert_close(again.attributions, res.attributions)
    assert np.random.rand() == expected_draw
    assert pipe.unet.training and pipe.unet.conv_in.weight.grad is marker
    pipe.unet.eval()


def test_default_background_has_at_most_nsamples_rows():
    # shap's constructor runs the whole background through the model: with nsamples=4 it is 4 noise draws, not 16,
    # and the expected value is the mean target over exactly those draws
    pipe, out = tiny_traced_run()
    t = int(out.trace.timesteps[1])
    rows = []
    handle = pipe.unet.register_forward_pre_hook(lambda module, args: rows.append(args[0].shape[0]))
    try:
        res = DenoiserShap(pipe).attribute(out.trace, timesteps=[t], nsamples=4)
    finally:
        handle.remove()
    assert rows == [4, 4, 4, 4]  # sample 0: background, gradients; sample 1: the same
    background = torch.randn((4, 1, 8, 8), generator=torch.Generator().manual_seed(0))
    background = background * (1 - float(pipe.scheduler.alphas_cumprod[t])) ** 0.5
    f = DenoiserShap(pipe).forward_function(DenoiserShap(pipe).target).bind(["sample"], [], t)
    with torch.no_grad():
        torch.testing.assert_close(res.metadata["expected_value"][0, 0], f(background).mean(), rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_partition_shap_is_additive():
    # Owen values are efficient: sum(phi) + f(masked everywhere) = f(x). (slow: shap JIT-compiles numba code)
    pipe = tiny_pipeline()
    x = torch.randn(1, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    t = int(pipe.scheduler.timesteps[50])
    shap_ = DenoiserShap(pipe, "partition")
    res = shap_.attribute(x, timesteps=t, max_evals=128)
    f = shap_.forward_function().bind(["sample"], [], t)
    with torch.no_grad():
        fx, f0 = f(x), f(torch.zeros_like(x))
    torch.testing.assert_close(res.metadata["expected_value"][0], f0, rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(res.attributions[0].sum(dim=(1, 2, 3)) + f0, fx, rtol=1e-3, atol=1e-3)
