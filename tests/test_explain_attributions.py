"""captum attributions of the denoiser: closed-form values on a linear denoiser, UNet shapes, conditioning inputs."""

import pytest
import torch
from diffusers.models.unets.unet_2d import UNet2DOutput

from diffusers_xai import DiffusionXAIPipeline
from diffusers_xai.explain import ATTRIBUTION_METHODS, DenoiserAttribution, ExplanationTarget
from diffusers_xai.testing import tiny_conditional_unet, tiny_pipeline, tiny_traced_run, tiny_unet

W = torch.tensor([[[[1.0, -2.0], [0.5, 3.0]]]])
X = torch.tensor([[[[2.0, 1.0], [-4.0, 0.5]]]])


class LinearDenoiser(torch.nn.Module):
    """model output = W * x, so the target sum(W * x) has gradient W."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(W.clone())

    def forward(self, sample, timestep, **kwargs):
        return UNet2DOutput(sample=self.w * sample)


class FakeScheduler:
    timesteps = torch.tensor([10, 0])


@pytest.mark.parametrize(
    "method, expected, kwargs",
    [
        ("integrated_gradients", W * X, {"n_steps": 8}),
        ("gradient_shap", W * X, {"baselines": torch.zeros(3, 1, 2, 2), "n_samples": 4}),
        ("saliency", W.abs(), {}),
        ("input_x_gradient", W * X, {}),
        ("occlusion", W * X, {"sliding_window_shapes": (1, 1, 1)}),
    ],
)
def test_closed_form_attributions_of_a_linear_denoiser(method, expected, kwargs):
    explainer = DenoiserAttribution(
        LinearDenoiser(), method, scheduler=FakeScheduler(), target=ExplanationTarget(output="model_output")
    )
    res = explainer.attribute(X, timesteps=10, **kwargs)
    assert res.attributions.shape == (1, 1, 1, 2, 2)
    torch.testing.assert_close(res.attributions[0], expected)
    torch.testing.assert_close(res.maps[0], expected.sum(dim=1, keepdim=True))


@pytest.mark.slow
def test_unet_attributions_shapes_and_completeness():
    pipe, out = tiny_traced_run()
    t = out.trace.timesteps[1:].tolist()
    for method in ATTRIBUTION_METHODS:
        res = (
            DenoiserAttribution(pipe, method).attribute(out.trace, timesteps=t, n_steps=4)
            if method == "integrated_gradients"
            else DenoiserAttribution(pipe, method).attribute(out.trace, timesteps=t)
        )
        assert res.attributions.shape == (2, 2, 1, 8, 8), method
        assert res.maps.shape == (2, 2, 1, 8, 8), method
        assert torch.isfinite(res.maps).all(), method
    # IG completeness: sum of attributions - captum's delta = f(x) - f(0); the delta, which shrinks with n_steps
    ig = DenoiserAttribution(pipe, "integrated_gradients")
    coarse = ig.attribute(
        out.trace, timesteps=t[:1], n_steps=2, method="riemann_trapezoid", return_convergence_delta=True
    )
    fine = ig.attribute(out.trace, timesteps=t[:1], n_steps=64, return_convergence_delta=True)
    assert fine.delta.shape == (1, 2)
    assert fine.delta.abs().max() < coarse.delta.abs().max()
    x = out.trace.step(1).latents.float()
    f = ig.forward_function().bind(["sample"], [], t[0])
    with torch.no_grad():
        gap = f(x) - f(torch.zeros_like(x))
    torch.testing.assert_close(fine.attributions[0].sum(dim=(1, 2, 3)) - fine.delta[0], gap, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="Unknown attribution method 'lime'"):
        DenoiserAttribution(pipe, "lime")
    with pytest.raises(ValueError, match="only defined for"):
        DenoiserAttribution(pipe, "saliency").attribute(out.trace, timesteps=t, return_convergence_delta=True)


@pytest.mark.slow
def test_text_conditioning_attributions():
    unet = tiny_conditional_unet()
    pipe = DiffusionXAIPipeline.from_unet(unet, "ddim", num_train_timesteps=100)
    pipe.scheduler.set_timesteps(4)
    t = int(pipe.scheduler.timesteps[1])
    x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    text = torch.randn(1, 5, 8, generator=torch.Generator().manual_seed(1))
    ig = DenoiserAttribution(pipe, "integrated_gradients")
    res = ig.attribute(
        x,
        timesteps=t,
        encoder_hidden_states=text,
        include_conditioning=True,
        n_steps=16,
        return_convergence_delta=True,
    )
    sample_attr, text_attr = res.attributions
    assert sample_attr.shape == (1, 1, 4, 8, 8) and text_attr.shape == (1, 1, 5, 8)
    assert res.metadata["conditioning"] == "encoder_hidden_states"
    assert res.metadata["conditioning_scores"].shape == (1, 1, 5)
    # completeness over both inputs: f(x, c) - f(0, 0)
    f = ig.forward_function().bind(["sample", "encoder_hidden_states"], [], t)
    with torch.no_grad():
        gap = f(x, text) - f(torch.zeros_like(x), torch.zeros_like(text))
    total = sample_attr[0].sum(dim=(1, 2, 3)) + text_attr[0].sum(dim=(1, 2)) - res.delta[0]
    torch.testing.assert_close(total, gap, rtol=1e-4, atol=1e-4)
    occ = DenoiserAttribution(pipe, "occlusion").attribute(
        x, timesteps=t, encoder_hidden_states=text, include_conditioning=True
    )
    assert occ.attributions[1].shape == (1, 1, 5, 8)
    with pytest.raises(ValueError, match="got no conditioning"):
        DenoiserAttribution(tiny_pipeline(), "saliency").attribute(
            torch.randn(1, 1, 8, 8), timesteps=[0], include_conditioning=True
        )


def test_class_label_attributions_go_through_the_class_embedding():
    # no attention in the down/up blocks; the mid block keeps UNet2DModel's default attention (head dim 8)
    unet = tiny_unet(attention=False, mid_attention=True, attention_head_dim=8, num_classes=2)
    pipe = DiffusionXAIPipeline.from_unet(unet, "ddpm", num_train_timesteps=100)
    x = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 2])
    ig = DenoiserAttribution(pipe, "integrated_gradients")
    res = ig.attribute(
        x, timesteps=50, class_labels=labels, include_conditioning=True, n_steps=16, return_convergence_delta=True
    )
    sample_attr, class_attr = res.attributions
    assert class_attr.shape == (1, 2, 16)  # time_embed_dim = 4 * 4
    assert res.metadata["conditioning"] == "class_embedding"
    f = ig.forward_function().bind(["sample", "class_embedding"], ["class_labels"], 50)
    with torch.no_grad():
        emb = unet.class_embedding(labels)
        gap = f(x, emb, labels) - f(torch.zeros_like(x), torch.zeros_like(emb), labels)
    total = sample_attr[0].sum(dim=(1, 2, 3)) + class_attr[0].sum(dim=1) - res.delta[0]
    torch.testing.assert_close(total, gap, rtol=1e-4, atol=1e-4)
    assert sum(len(m._forward_hooks) for m in unet.modules()) == 0
    with pytest.raises(ValueError, match="needs `class_labels=`"):
        ig.attribute(x, timesteps=50, include_conditioning=True)


class QuadraticDenoiser(torch.nn.Module):
    """model output = W * x**2, so the target sum(W * x**2) has gradient 2 W x."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(W.clone())

    def forward(self, sample, timestep, **kwargs):
        return UNet2DOutput(sample=self.w * sample**2)


class ScheduleScheduler(FakeScheduler):
    alphas_cumprod = torch.full((11,), 0.75)  # alpha_bar_10 = 0.75: the step's noise std sqrt(1 - 0.75) = 0.5


def _quadratic(method: str) -> DenoiserAttribution:
    return DenoiserAttribution(
        QuadraticDenoiser(), method, scheduler=ScheduleScheduler(), target=ExplanationTarget(output="model_output")
    )


def test_smoothgrad_uses_the_steps_noise_level():
    # SmoothGrad-squared of g(x) = 2 W x under x + sigma * eps: E[g^2] = 4 W^2 (x^2 + sigma^2), sigma = 0.5 here;
    # sigma = 1 (or no noise) would give a different answer, so the default std must be sqrt(1 - alpha_bar_t)
    torch.manual_seed(0)  # captum's NoiseTunnel draws with the global generator
    res = _quadratic("smoothgrad").attribute(X, timesteps=10, nt_type="smoothgrad_sq", nt_samples=20000,
                                             nt_samples_batch_size=20000)  # fmt: skip
    expected = 4 * W**2 * (X**2 + 0.25)
    torch.testing.assert_close(res.attributions[0], expected, rtol=0.05, atol=0.05)
    assert not torch.allclose(res.attributions[0], 4 * W**2 * (X**2 + 1.0), rtol=0.05, atol=0.05)
    assert res.signed is False
    assert res.metadata["smoothgrad"] == {
        "nt_type": "smoothgrad_sq", "nt_samples": 20000, "nt_samples_batch_size": 20000,
        "stdevs": "sqrt(1 - alpha_bar_t)",
    }  # fmt: skip
    # no noise: exactly the squared gradient; SmoothGrad of the signed gradient: E[2 W (x + sigma eps)] = 2 W x
    exact = _quadratic("smoothgrad").attribute(X, timesteps=10, nt_type="smoothgrad_sq", stdevs=0.0, nt_samples=3)
    torch.testing.assert_close(exact.attributions[0], 4 * W**2 * X**2)
    signed = _quadratic("smoothgrad").attribute(X, timesteps=10, abs=False, nt_samples=20000,
                                                nt_samples_batch_size=20000)  # fmt: skip
    torch.testing.assert_close(signed.attributions[0], 2 * W * X, rtol=0.05, atol=0.05)
    assert signed.signed is True
    assert _quadratic("smoothgrad").signed_maps({}) is False  # default: mean |gradient|, a magnitude


def test_integrated_gradients_noise_baseline_is_a_seeded_draw_at_the_steps_level():
    from diffusers_xai.explain import noise_level_baselines

    explainer = DenoiserAttribution(
        LinearDenoiser(), "integrated_gradients", scheduler=ScheduleScheduler(),
        target=ExplanationTarget(output="model_output"),
    )  # fmt: skip
    res = explainer.attribute(X, timesteps=10, baselines="noise", n_steps=8, seed=3)
    draw = noise_level_baselines(X, 0.75, 1, torch.Generator().manual_seed(3))
    assert draw.abs().max() > 0  # a real draw, not zeros
    torch.testing.assert_close(res.attributions[0], W * (X - draw))  # IG of a linear map: W (x - x')
    assert res.metadata["baselines"] == "noise"
    bound = DenoiserAttribution(
        LinearDenoiser(), "integrated_gradients", scheduler=ScheduleScheduler(),
        target=ExplanationTarget(output="model_output"), baselines="noise",
    )  # fmt: skip
    torch.testing.assert_close(bound.attribute(X, timesteps=10, n_steps=8, seed=3).attributions, res.attributions)
    zero = bound.attribute(X, timesteps=10, n_steps=8, baselines=0.0)  # a call's own baselines win
    torch.testing.assert_close(zero.attributions[0], W * X)
    with pytest.raises(ValueError, match="`baselines` as a string must be 'noise'"):
        DenoiserAttribution(LinearDenoiser(), "integrated_gradients", baselines="blur")
    with pytest.raises(ValueError, match="`baselines` as a string must be 'noise'"):
        explainer.attribute(X, timesteps=10, baselines="zeros")


class LaggedSeriesDenoiser(torch.nn.Module):
    """Windows `[B, 2, L]`: out[1, τ] = 3 x[0, τ - 2] + 0.5 x[1, τ] (a driver and its follower), out[0] = x[0]."""

    def __init__(self):
        super().__init__()
        self.a = torch.nn.Parameter(torch.tensor(3.0))

    def forward(self, sample, timestep, **kwargs):
        follower = self.a * torch.roll(sample[:, :1], shifts=2, dims=-1) + 0.5 * sample[:, 1:]
        return UNet2DOutput(sample=torch.cat([sample[:, :1], follower], dim=1))


def test_series_occlusion_occludes_one_channel_at_one_time_point_by_default():
    # a window over both channels would also occlude the follower's own point x[1, τ - 2] with its cause x[0, τ - 2]
    # and credit both; one point at a time gives exactly w * x at the cause and at the output's own point
    x = torch.tensor([[[1.0, -2.0, 0.5, 4.0, 1.5, -1.0], [2.0, 1.0, -3.0, 0.25, 1.0, 2.0]]])
    mask = torch.zeros(2, 6)
    mask[1, 4] = 1.0
    target = ExplanationTarget(output="model_output", mask=mask)
    explainer = DenoiserAttribution(LaggedSeriesDenoiser(), "occlusion", scheduler=FakeScheduler(), target=target)
    res = explainer.attribute(x, timesteps=10)
    expected = torch.zeros(1, 2, 6)
    expected[0, 0, 2] = 3.0 * 0.5
    expected[0, 1, 4] = 0.5 * 1.0
    torch.testing.assert_close(res.attributions[0], expected)
