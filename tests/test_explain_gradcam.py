"""GradCAM: hand-computed values on a toy conv net, captum agreement, UNet shapes, hook removal."""

import pytest
import torch
from captum.attr import LayerGradCam

from diffusers_xai.explain import (
    DenoiserGradCAM,
    ExplanationTarget,
    default_gradcam_layers,
    grad_cam,
    output_gradcam_layers,
    vanishing_gradcam_layers,
)
from diffusers_xai.testing import tiny_pipeline

# two channels per GroupNorm group: with one (tiny_pipeline's default, 4 channels over 4 groups) the last up block's
# GradCAM weights vanish (see test_gradcam_weights_vanish_before_a_per_channel_norm)
PAIRED_GROUPS = {"norm_num_groups": 2}


def toy_net(w2: tuple[float, float]) -> torch.nn.Sequential:
    """conv1: 1 -> 2 channels, 1x1, weights (1, 2); conv2: 2 -> 1 channel, 1x1, weights w2; no biases."""
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 1, bias=False), torch.nn.Conv2d(2, 1, 1, bias=False))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([1.0, 2.0]).view(2, 1, 1, 1))
        net[1].weight.copy_(torch.tensor(w2).view(1, 2, 1, 1))
    return net


X = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])


def forward_sum(net):
    return lambda x: net(x).sum(dim=(1, 2, 3))


def test_grad_cam_hand_computed():
    # A^1 = x, A^2 = 2x; y = sum(w2_1 A^1 + w2_2 A^2) so alpha_k = w2_k and L = w2_1 x + 2 w2_2 x
    net = toy_net((3.0, -1.0))
    cam = grad_cam(forward_sum(net), net, ["0"], X)["0"]
    torch.testing.assert_close(cam, X * (3.0 - 2.0))
    net = toy_net((1.0, -3.0))  # L = x - 6x = -5x: negative everywhere, zero after the paper's ReLU
    torch.testing.assert_close(grad_cam(forward_sum(net), net, ["0"], X)["0"], -5 * X)
    torch.testing.assert_close(
        grad_cam(forward_sum(net), net, ["0"], X, relu_attributions=True)["0"], torch.zeros_like(X)
    )


def test_grad_cam_matches_captum_layer_grad_cam():
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 3, 3, padding=1), torch.nn.Tanh(), torch.nn.Conv2d(3, 2, 3, padding=1), torch.nn.Softplus()
    )
    x = torch.randn(2, 1, 5, 5)
    ours = grad_cam(forward_sum(net), net, ["1", "2"], x)
    for name, layer in (("1", net[1]), ("2", net[2])):
        theirs = LayerGradCam(forward_sum(net), layer).attribute(x)
        torch.testing.assert_close(ours[name], theirs)


def _hooks(model: torch.nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in model.modules())


def test_unet_gradcam_shapes_and_captum_path_agree():
    pipe = tiny_pipeline(**PAIRED_GROUPS)
    out = pipe(
        batch_size=2, num_inference_steps=3, trace=True, output_type="pt", generator=torch.Generator().manual_seed(0)
    )
    assert default_gradcam_layers(pipe.unet) == [
        "down_blocks.0",
        "down_blocks.1",
        "mid_block",
        "up_blocks.0",
        "up_blocks.1",
    ]
    res = DenoiserGradCAM(pipe).attribute(out.trace)
    assert res.maps.shape == (3, 2, 1, 8, 8)
    assert res.timesteps == out.trace.timesteps.tolist()
    assert res.metadata["per_layer"]["mid_block"].shape == (3, 2, 1, 4, 4)
    assert res.metadata["per_layer"]["up_blocks.1"].shape == (3, 2, 1, 8, 8)
    assert res.maps.abs().amax(dim=(2, 3, 4)).le(1 + 1e-5).all()  # mean of max-normalised layer maps
    # one tensor-output layer goes through captum; the one-pass ActivationCapture path gives the same map
    t = int(out.trace.timesteps[1])
    single = DenoiserGradCAM(pipe, layer="mid_block").attribute(out.trace, timesteps=[t])
    cam = DenoiserGradCAM(pipe, layer="mid_block")
    x = out.trace.step(1).latents.float()
    manual = grad_cam(cam.forward_function().bind(["sample"], [], t), pipe.unet, ["mid_block"], x)["mid_block"]
    torch.testing.assert_close(single.metadata["per_layer"]["mid_block"][0], manual, rtol=1e-4, atol=1e-5)
    assert _hooks(pipe.unet) == 0
    assert all(p.requires_grad for p in pipe.unet.parameters())


def test_unknown_layer_raises():
    pipe = tiny_pipeline()
    with pytest.raises(ValueError, match="The layer name 'mid_blok' matches nothing"):
        DenoiserGradCAM(pipe, layer="mid_blok")


def test_no_hooks_left_after_an_exception():
    pipe = tiny_pipeline(**PAIRED_GROUPS)
    out = pipe(num_inference_steps=2, trace=True, output_type="pt")

    def boom(x0):
        raise RuntimeError("target failed")

    flags = [p.requires_grad for p in pipe.unet.parameters()]
    for layer in (None, "mid_block"):
        with pytest.raises(RuntimeError, match="target failed"):
            DenoiserGradCAM(pipe, layer=layer, target=ExplanationTarget(fn=boom)).attribute(out.trace)
        assert _hooks(pipe.unet) == 0
    assert [p.requires_grad for p in pipe.unet.parameters()] == flags


def test_output_layer_presets_resolve_to_the_last_up_blocks():
    pipe = tiny_pipeline(**PAIRED_GROUPS)  # up_blocks.1 is the last up block, at the sample's 8x8 resolution
    assert output_gradcam_layers(pipe.unet) == ["up_blocks.1"]
    assert output_gradcam_layers(pipe.unet, 2) == ["up_blocks.0", "up_blocks.1"]
    assert DenoiserGradCAM(pipe, layer="output_block").layers == ["up_blocks.1"]
    assert DenoiserGradCAM(pipe, layer="output_blocks").layers == ["up_blocks.0", "up_blocks.1"]
    assert DenoiserGradCAM(pipe, layer="all_blocks").layers == default_gradcam_layers(pipe.unet)
    out = pipe(
        batch_size=2, num_inference_steps=3, trace=True, output_type="pt", generator=torch.Generator().manual_seed(0)
    )
    t = int(out.trace.timesteps[1])
    res = DenoiserGradCAM(pipe, layer="output_block").attribute(out.trace, timesteps=[t])
    cam = res.metadata["per_layer"]["up_blocks.1"][0]  # [B, 1, 8, 8]: already at the sample's size
    torch.testing.assert_close(res.maps[0], cam / cam.abs().amax(dim=(1, 2, 3), keepdim=True))
    with pytest.raises(ValueError, match="`n` must be >= 1"):
        output_gradcam_layers(pipe.unet, 0)
    with pytest.raises(ValueError, match="has no `up_blocks`"):
        output_gradcam_layers(torch.nn.Sequential(torch.nn.Conv2d(1, 1, 1)))


def test_hirescam_keeps_the_gradient_per_position():
    # y = sum(z^2), z = 3 A^1 - A^2 = x (A^1 = x, A^2 = 2x): dy/dA^k = 2 z w_k varies over positions.
    # HiResCAM: sum_k dy/dA^k * A^k = 2 z (3x - 2x) = 2 x^2; GradCAM's spatial mean: 2 mean(x) x = 5 x (mean 2.5)
    net = toy_net((3.0, -1.0))

    def forward(x):
        return (net(x) ** 2).sum(dim=(1, 2, 3))

    torch.testing.assert_close(grad_cam(forward, net, ["0"], X, weighting="hirescam")["0"], 2 * X**2)
    torch.testing.assert_close(grad_cam(forward, net, ["0"], X)["0"], 5 * X)
    pipe = tiny_pipeline(**PAIRED_GROUPS)
    with pytest.raises(ValueError, match="`weighting` must be one of"):
        DenoiserGradCAM(pipe, weighting="gradcam++")
    out = pipe(
        batch_size=2, num_inference_steps=3, trace=True, output_type="pt", generator=torch.Generator().manual_seed(0)
    )
    t = int(out.trace.timesteps[1])
    hires = DenoiserGradCAM(pipe, layer="output_block", weighting="hirescam").attribute(out.trace, timesteps=[t])
    plain = DenoiserGradCAM(pipe, layer="output_block").attribute(out.trace, timesteps=[t])
    assert hires.metadata["weighting"] == "hirescam" and plain.metadata["weighting"] == "gradcam"
    assert not torch.allclose(hires.maps, plain.maps)


def test_gradcam_weights_vanish_before_a_per_channel_norm():
    # tiny_pipeline's UNet: up_blocks.1 (4 channels) feeds conv_norm_out = GroupNorm(4 groups, 4 channels), which is
    # unchanged by adding a constant to a channel, so every channel's mean gradient (its GradCAM weight) is 0
    pipe = tiny_pipeline()
    assert vanishing_gradcam_layers(pipe.unet) == ["up_blocks.1"]
    assert vanishing_gradcam_layers(tiny_pipeline(**PAIRED_GROUPS).unet) == []
    out = pipe(num_inference_steps=3, trace=True, output_type="pt", generator=torch.Generator().manual_seed(0))
    x, t = out.trace.step(1).latents.double(), int(out.trace.timesteps[1])
    pipe.unet.double()  # in float64 the vanished map is 1e-17, not float32's CPU-dependent 1e-8
    forward = DenoiserGradCAM(pipe, weighting="hirescam").forward_function().bind(["sample"], [], t)
    cams = grad_cam(forward, pipe.unet, ["up_blocks.0", "up_blocks.1"], x)
    hires = grad_cam(forward, pipe.unet, ["up_blocks.1"], x, weighting="hirescam")["up_blocks.1"]
    assert cams["up_blocks.1"].abs().max() < 1e-10 * cams["up_blocks.0"].abs().max()  # 1e-17 vs 1.6e-3
    assert hires.abs().max() > 10 * cams["up_blocks.0"].abs().max()  # HiResCAM keeps a map there (0.14)
    pipe.unet.float()
    with pytest.warns(UserWarning, match=r"The GradCAM weights of 'up_blocks.1' are identically 0 on this UNet"):
        cam = DenoiserGradCAM(pipe)
    assert cam.layers == ["down_blocks.0", "down_blocks.1", "mid_block", "up_blocks.0"]
    with pytest.warns(UserWarning, match="left out of the GradCAM layers"):
        assert DenoiserGradCAM(pipe, layer="output_blocks").layers == ["up_blocks.0"]
    message = (
        r"The GradCAM weights of 'up_blocks.1' are identically 0 on this UNet: its output feeds `conv_norm_out`, a "
        r"GroupNorm with one channel per group \(4 groups over 4 channels\), whose input gradient sums to 0 over "
        r"each channel; use `weighting=\"hirescam\"` or another layer."
    )
    for layer in ("output_block", "up_blocks.1", ["mid_block", "up_blocks.1"]):
        with pytest.raises(ValueError, match=message):
            DenoiserGradCAM(pipe, layer=layer)
    assert DenoiserGradCAM(pipe, layer="output_block", weighting="hirescam").layers == ["up_blocks.1"]


@pytest.mark.parametrize("layer", ["output_block", "all_blocks"])
def test_why_this_class_cam_is_the_conditional_minus_the_null_passes_cam(layer):
    # GradCAM is linear in the target, so the CAM of y_c - y_null (one stacked forward) must equal the CAM of y_c
    # minus the CAM of y_null, each computed on its own forward; the conditional pass alone would be CAM(y_c)
    from diffusers import DDIMScheduler

    from diffusers_xai.explain.condition import ConditionTarget
    from diffusers_xai.testing import tiny_class_conditional_unet

    # two channels per GroupNorm group (8 groups): with one channel per group, as channels=(8, 16) gave, the last up
    # block feeds conv_norm_out's per-channel normalisation, whose input gradient sums to 0 over each channel, so
    # every GradCAM weight of that layer is 0 and its CAM is float rounding noise (it differs between CPUs)
    unet = tiny_class_conditional_unet(4, seed=0, channels=(16, 32)).eval()
    scheduler = DDIMScheduler(num_train_timesteps=100)
    x = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    labels, nulls = torch.tensor([0, 2, 3]), torch.full((3,), 4)

    def per_layer(target, class_labels):
        cam = DenoiserGradCAM(unet, layer=layer, scheduler=scheduler, target=target)
        return cam.attribute(x, timesteps=[50], class_labels=class_labels).metadata["per_layer"]

    contrast = per_layer(ConditionTarget(null_class=4), labels)
    conditional, null = per_layer(ExplanationTarget(), labels), per_layer(ExplanationTarget(), nulls)
    for name in contrast:
        scale = conditional[name].abs().max()  # compare in units of the CAM's size
        assert scale > 1e-2  # a real map, not rounding noise (0.04 to 0.19 on this seed)
        c, y_c, y_null = (v / scale for v in (contrast[name], conditional[name], null[name]))
        torch.testing.assert_close(c, y_c - y_null, rtol=1e-4, atol=1e-4)
        assert (c - y_c).abs().max() > 0.05  # not the conditional pass alone
