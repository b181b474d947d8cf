"""Checks over samples x steps: noise-replacement deletion on known toys, seeded bootstrap CIs, cascades."""

import numpy as np
import pytest
import torch
from diffusers import DDPMScheduler
from diffusers.models.unets.unet_2d import UNet2DOutput

from diffusers_xai.explain import (
    DenoiserAttribution,
    ExplanationResult,
    ExplanationTarget,
    bootstrap_ci,
    cascade_stages,
    cascading_randomization,
    diffused_baseline,
    faithfulness_check,
    perturbation_curve,
    randomize_model,
    run_checks,
)
from diffusers_xai.testing import tiny_pipeline, tiny_traced_run, tiny_unet


class RegionDenoiser(torch.nn.Module):
    """f(x) = w * region * x with fixed weights: only the top-left 4x4 pixels reach the output."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor(2.0))
        region = torch.zeros(1, 1, 8, 8)
        region[..., :4, :4] = 1
        self.register_buffer("region", region)

    def forward(self, sample, timestep, **kwargs):
        return UNet2DOutput(sample=self.w * self.region * sample)


def test_noise_replacement_curve_by_hand():
    # f = sum of pixels; deleted pixels take the values of a fixed baseline draw, most important pixel first
    x = torch.tensor([[[[4.0, 3.0], [2.0, 1.0]]]])
    importance = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    base = torch.tensor([[[[0.5, -1.0], [0.25, 2.0]]]])
    f = lambda inputs: inputs.sum(dim=(1, 2, 3))  # noqa: E731
    deletion = perturbation_curve(f, x, importance, "deletion", baseline=base, n_steps=4)
    insertion = perturbation_curve(f, x, importance, "insertion", baseline=base, n_steps=4)
    torch.testing.assert_close(deletion, torch.tensor([[10.0, 11.0, 9.25, 5.25, 1.75]]))
    torch.testing.assert_close(insertion, torch.tensor([[1.75, 0.75, 2.5, 6.5, 10.0]]))
    # the baseline is q(x_t | x_0 = 0): sqrt(1 - alpha_bar) * eps, seeded
    draw = diffused_baseline(x, 0.36, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(draw, 0.8 * torch.randn(1, 1, 2, 2, generator=torch.Generator().manual_seed(3)))
    shifted = diffused_baseline(x, 0.36, x0=1.0, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(shifted, draw + 0.6)


def test_rows_and_windows_perturb_features_and_time_points():
    f = lambda inputs: inputs.flatten(1).sum(dim=1)  # noqa: E731
    rows = torch.tensor([[1.0, 2.0, 3.0]])
    curve = perturbation_curve(f, rows, torch.tensor([[0.0, 5.0, 1.0]]), "deletion", n_steps=3)
    torch.testing.assert_close(curve, torch.tensor([[6.0, 4.0, 1.0, 0.0]]))  # feature 1, then 2, then 0
    windows = torch.ones(1, 2, 4)  # a time point is deleted in both channels at once
    curve = perturbation_curve(f, windows, torch.tensor([[[0.0, 3.0, 2.0, 1.0]]]), "deletion", n_steps=4)
    torch.testing.assert_close(curve, torch.tensor([[8.0, 6.0, 4.0, 2.0, 0.0]]))
    with pytest.raises(ValueError, match=r"pass one map \[1, 3\] per input"):
        perturbation_curve(f, rows, torch.ones(1, 1, 3))


def region_setup(batch=8):
    scheduler = DDPMScheduler(num_train_timesteps=100)
    scheduler.set_timesteps(10)
    x = torch.rand(batch, 1, 8, 8, generator=torch.Generator().manual_seed(0)) + 0.5
    explainer = DenoiserAttribution(
        RegionDenoiser(), "input_x_gradient", scheduler=scheduler, target=ExplanationTarget(output="model_output")
    )
    return explainer, x


def test_noise_deletion_ranks_the_true_region_first_and_a_reversed_map_fails():
    explainer, x = region_setup()
    check = faithfulness_check(explainer, x, timesteps=[50], n_random=4)
    assert check.deletion_gain.shape == (1, 8) and check.deletion_ci.n == 8
    assert check.passed and check.deletion_ci.low > 0.3 and check.insertion_ci.low > 0.3
    # deleting the region (a quarter of the pixels) first leaves only noise in the region: the rest does not count
    first = check.per_step[0]
    region_gone = first.deletion_raw[:, 4]
    torch.testing.assert_close(region_gone, first.deletion_raw[:, -1])
    # the same maps, reversed, delete irrelevant pixels first: worse than random, the check fails
    good = explainer.attribute(x, timesteps=[50])
    reversed_result = ExplanationResult("reversed", -good.attributions, -good.maps, [50], [None])
    bad = faithfulness_check(explainer, x, timesteps=[50], result=reversed_result, n_random=4)
    assert not bad.passed and bad.deletion_ci.high < 0 and bad.insertion_ci.high < 0
    assert bad.summary()["deletion_gain"]["passed"] is False


def test_too_few_samples_for_a_ci_raise():
    explainer, x = region_setup(batch=3)
    with pytest.raises(ValueError, match=r"at least 8 samples x steps.*got 3 sample\(s\) x 2 step\(s\) = 6"):
        faithfulness_check(explainer, x, timesteps=[50, 40])
    with pytest.raises(ValueError, match=r"needs at least 8 values, got 7; pass more samples"):
        bootstrap_ci(torch.arange(7.0))


def test_bootstrap_ci_on_a_fixed_seed():
    values = torch.tensor([0.3, -0.1, 0.8, 0.5, 0.2, 0.9, 0.4, 0.0, 0.6, 0.7])
    ci = bootstrap_ci(values, n_boot=4000, seed=0)
    assert ci.estimate == pytest.approx(0.43) and ci.n == 10
    assert bootstrap_ci(values, n_boot=4000, seed=0) == ci  # seeded
    assert bootstrap_ci(values, n_boot=4000, seed=1).low != ci.low
    # the percentile interval of the mean: close to the normal approximation mean +- 1.96 s / sqrt(n)
    half = 1.96 * float(values.std(unbiased=False)) / np.sqrt(10)
    assert ci.low == pytest.approx(0.43 - half, abs=0.03) and ci.high == pytest.approx(0.43 + half, abs=0.03)
    assert ci.excludes_zero
    constant = bootstrap_ci(torch.full((8,), 0.25))
    assert (constant.low, constant.high) == pytest.approx((0.25, 0.25))
    assert not bootstrap_ci(torch.tensor([-1.0, 1.0] * 4)).excludes_zero


def test_cascade_stages_go_from_the_output_layers_inwards():
    unet = tiny_unet()
    order = cascade_stages(unet, unet, torch.zeros(1, 1, 8, 8), 10)
    assert order == [
        "conv_out",
        "conv_norm_out",
        "up_blocks.1",
        "up_blocks.0",
        "mid_block",
        "down_blocks.1",
        "down_blocks.0",
        "conv_in",
        "time_embedding",
    ]
    partial = randomize_model(unet, seed=0, modules=["conv_out", "up_blocks.1"])
    before, after = unet.state_dict(), partial.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert {k for k in changed if k.endswith("weight") and before[k].ndim > 1} == {
        k
        for k in before
        if k.startswith(("conv_out.", "up_blocks.1.")) and k.endswith("weight") and before[k].ndim > 1
    }
    assert all(k.startswith(("conv_out.", "up_blocks.1.")) for k in changed)
    with pytest.raises(ValueError, match=r"Modules \['nope'\] are not in UNet2DModel"):
        randomize_model(unet, modules=["nope"])


@pytest.fixture(scope="module")
def traced():
    return tiny_traced_run(batch_size=4, num_inference_steps=10)


def test_cascading_randomisation_changes_model_dependent_maps(traced):
    pipe, out = traced
    saliency = DenoiserAttribution(pipe, "saliency")  # default target: the model's contribution to x0
    check = cascading_randomization(saliency, out.trace, timesteps=[70, 40], max_stages=4)
    assert check.stages == ["conv_out", "up_blocks.0", "down_blocks.1", "full"]
    assert check.spearman_per_map.shape == (4, 8) and check.timesteps == [70, 40]
    assert check.passed and check.spearman_full < 0.2 and not check.model_independent and check.warning is None
    assert check.blocks["up_blocks.0"] == ["conv_out", "conv_norm_out", "up_blocks.1", "up_blocks.0"]


def test_cascading_randomisation_flags_the_x0_sum_target(traced, caplog):
    pipe, out = traced
    # the sum of x0_hat is dominated by x_t / sqrt(alpha_bar): input x gradient maps barely change with the weights
    explainer = DenoiserAttribution(pipe, "input_x_gradient", target=ExplanationTarget(output="pred_original_sample"))
    check = cascading_randomization(explainer, out.trace, timesteps=[70, 40], max_stages=2)
    assert check.stages == ["conv_out", "full"]
    assert check.spearman_full > 0.9 and not check.passed and check.model_independent
    assert "does not depend on the model's weights" in check.warning
    assert check.summary()["model_independent"] is True and check.warning in caplog.text


def test_run_checks_summary(traced):
    pipe, out = traced
    checks = run_checks(
        DenoiserAttribution(pipe, "saliency"),
        out.trace,
        timesteps=[70, 40],
        randomization_timesteps=[40],
        max_stages=2,
        faithfulness_kwargs={"n_random": 2, "curve_steps": 8},
    )
    summary = checks.summary()
    assert summary["method"] == "saliency" and summary["randomization"]["stages"] == ["conv_out", "full"]
    assert summary["faithfulness"]["deletion_gain"]["n"] == 8 and summary["faithfulness"]["baseline"] == "noise"
    assert set(summary["seconds"]) == {"attribute", "faithfulness", "randomization"}
    assert checks.passed == (checks.faithfulness.passed and checks.randomization.passed)
    with pytest.raises(ValueError, match=r"`randomization_timesteps` \[10\] are not among"):
        run_checks(DenoiserAttribution(pipe, "saliency"), out.trace, timesteps=[70, 40], randomization_timesteps=[10])


class MaskDenoiser(torch.nn.Module):
    """f(x) = 2 * mask * x for rows [B, F] or windows [B, C, L]: only the masked features / time points count."""

    def __init__(self, mask: torch.Tensor):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor(2.0))
        self.register_buffer("mask", mask)

    def forward(self, sample, timestep, **kwargs):
        return UNet2DOutput(sample=self.w * self.mask * sample)


@pytest.mark.parametrize(
    "shape, mask, map_shape",
    [
        ((6,), torch.tensor([1.0, 1.0, 0, 0, 0, 0]), (1, 8, 6)),
        ((2, 8), torch.tensor([0.0] * 6 + [1.0] * 2), (1, 8, 1, 8)),
    ],
    ids=["rows", "windows"],
)
def test_one_family_checks_rows_and_windows(shape, mask, map_shape):
    scheduler = DDPMScheduler(num_train_timesteps=100)
    scheduler.set_timesteps(10)
    x = torch.rand(8, *shape, generator=torch.Generator().manual_seed(0)) + 0.5
    target = ExplanationTarget(output="model_output")  # positive weights: the masked units raise the target
    explainer = DenoiserAttribution(MaskDenoiser(mask), "input_x_gradient", scheduler=scheduler, target=target)
    result = explainer.attribute(x, timesteps=[50])
    assert result.maps.shape == map_shape  # rows keep one value per feature, windows one per time point
    check = faithfulness_check(explainer, x, timesteps=[50], result=result, n_random=4, curve_steps=len(mask))
    assert check.passed and check.deletion_gain.shape == (1, 8)
    # deleting the masked units first (the first 2 of 6 features, the last 2 of 8 time points) leaves only noise there
    first = check.per_step[0]
    units = int(mask.sum())
    torch.testing.assert_close(first.deletion_raw[:, units], first.deletion_raw[:, -1])
    randomized = cascading_randomization(explainer, x, timesteps=[50])
    assert randomized.stages == ["full"]  # one weight, no blocks: the cascade is the full randomisation


def test_signedness_is_declared_by_the_method_and_picks_the_protocol():
    explainer, x = region_setup()
    saliency = DenoiserAttribution(explainer.unet, "saliency", scheduler=explainer.scheduler, target=explainer.target)
    assert saliency.attribute(x, timesteps=[50]).signed is False  # |gradient|: a magnitude
    assert saliency.attribute(x, timesteps=[50], abs=False).signed is True  # the raw gradient has a sign
    assert explainer.attribute(x, timesteps=[50]).signed is True  # input x gradient
    check = faithfulness_check(saliency, x, timesteps=[50], n_random=4)
    summary = check.summary()
    assert not check.signed and summary["protocol"] == "magnitude"
    assert all(not r.signed and r.signed_result is not None for r in check.per_step)
    # the verdict is the magnitude protocol's; the signed protocol's numbers are reported next to it
    assert summary["deletion_gain"]["mean"] == pytest.approx(float(check.per_step[0].deletion_gain.mean()), abs=1e-6)
    signed_mean = float(check.per_step[0].signed_result.deletion_gain.mean())
    assert summary["signed"]["deletion_gain"]["mean"] == pytest.approx(signed_mean, abs=1e-6)
    assert check.passed and check.deletion_ci.low > 0.3  # the region moves f, everything else does not
    signed = faithfulness_check(explainer, x, timesteps=[50], n_random=4).summary()
    assert signed["protocol"] == "signed" and "signed" not in signed


def test_attention_maps_are_unsigned():
    from diffusers_xai.explain import AttentionExplainer

    pipe = tiny_pipeline()
    x = torch.randn(1, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    assert AttentionExplainer(pipe).attribute(x, timesteps=[50]).signed is False
