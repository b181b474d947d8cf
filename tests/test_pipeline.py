import logging

import numpy as np
import pytest
import torch
from diffusers import DDIMPipeline, DDIMScheduler, DDPMPipeline, DDPMScheduler, DPMSolverMultistepScheduler

from diffusers_xai import DiffusionXAIPipeline, DiffusionXAIPipelineOutput, TraceConfig, make_scheduler
from diffusers_xai.testing import seeded_generator as gen
from diffusers_xai.testing import tiny_pipeline, tiny_unet


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])  # the main job trains v-prediction
@pytest.mark.parametrize("beta_schedule", ["linear", "squaredcos_cap_v2"])
@pytest.mark.parametrize(
    "trace", [None, TraceConfig(), TraceConfig(attention=True, model_output=True, activations=["mid_block"])]
)
def test_ddpm_bit_identical_to_stock(beta_schedule, trace, prediction_type):
    unet = tiny_unet()
    scheduler = DDPMScheduler(num_train_timesteps=100, beta_schedule=beta_schedule, prediction_type=prediction_type)
    stock = DDPMPipeline(unet=unet, scheduler=scheduler)
    stock.set_progress_bar_config(disable=True)
    ref = stock(batch_size=2, generator=gen(), num_inference_steps=4, output_type="np").images
    pipe = DiffusionXAIPipeline(unet=unet, scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    out = pipe(batch_size=2, generator=gen(), num_inference_steps=4, output_type="np", trace=trace)
    assert out.images.shape == (2, 8, 8, 1)
    np.testing.assert_array_equal(out.images, ref)
    assert (out.trace is None) == (trace is None)


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
@pytest.mark.parametrize("trace", [None, TraceConfig(attention=True)])
@pytest.mark.parametrize("eta", [0.0, 0.5])
def test_ddim_bit_identical_to_stock(trace, eta, prediction_type):
    unet = tiny_unet(seed=1)
    scheduler = DDIMScheduler(
        num_train_timesteps=100, beta_schedule="squaredcos_cap_v2", prediction_type=prediction_type
    )
    stock = DDIMPipeline(unet=unet, scheduler=scheduler)
    stock.set_progress_bar_config(disable=True)
    ref = stock(batch_size=2, generator=gen(3), eta=eta, num_inference_steps=5, output_type="np").images
    pipe = DiffusionXAIPipeline(unet=unet, scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    out = pipe(batch_size=2, generator=gen(3), eta=eta, num_inference_steps=5, output_type="np", trace=trace)
    np.testing.assert_array_equal(out.images, ref)


def test_fixed_seed_slice_and_output_types():
    pipe = tiny_pipeline("ddpm")
    pt = pipe(batch_size=1, generator=gen(), num_inference_steps=2, output_type="pt").images
    np_img = pipe(batch_size=1, generator=gen(), num_inference_steps=2, output_type="np").images
    pil = pipe(batch_size=1, generator=gen(), num_inference_steps=2, output_type="pil").images
    assert pt.shape == (1, 1, 8, 8) and np_img.shape == (1, 8, 8, 1) and pil[0].size == (8, 8)
    np.testing.assert_allclose(pt.permute(0, 2, 3, 1).numpy(), np_img, atol=0)
    assert 0.0 <= np_img.min() and np_img.max() <= 1.0
    # determinism on a fixed seed: same call, same numbers; different seed, different numbers
    again = pipe(batch_size=1, generator=gen(), num_inference_steps=2, output_type="np").images
    other = pipe(batch_size=1, generator=gen(1), num_inference_steps=2, output_type="np").images
    np.testing.assert_array_equal(np_img, again)
    assert not np.array_equal(np_img, other)


def test_dict_and_tuple_outputs_match():
    pipe = tiny_pipeline("ddim")
    out = pipe(batch_size=1, generator=gen(), num_inference_steps=3, output_type="np", trace=True)
    images, trace = pipe(
        batch_size=1, generator=gen(), num_inference_steps=3, output_type="np", trace=True, return_dict=False
    )
    assert isinstance(out, DiffusionXAIPipelineOutput)
    np.testing.assert_array_equal(out.images, images)
    torch.testing.assert_close(out.trace.stack("latents"), trace.stack("latents"))


def test_progressive_matches_call():
    pipe = tiny_pipeline("ddpm")
    steps = list(pipe.progressive(batch_size=2, generator=gen(), num_inference_steps=3))
    assert [s.step_index for s in steps] == [0, 1, 2]
    assert [s.timestep for s in steps] == pipe.scheduler.timesteps.tolist()
    final = pipe(batch_size=2, generator=gen(), num_inference_steps=3, output_type="pt").images
    torch.testing.assert_close(pipe.postprocess(steps[-1].prev_sample, "pt"), final, rtol=0, atol=0)
    assert steps[0].pred_original_sample.shape == (2, 1, 8, 8)


@pytest.mark.parametrize(
    "name,cls", [("ddpm", DDPMScheduler), ("ddim", DDIMScheduler), ("dpmsolver", DPMSolverMultistepScheduler)]
)
def test_scheduler_swap_keeps_schedule(name, cls):
    pipe = tiny_pipeline("ddpm")
    pipe.scheduler = DDPMScheduler(num_train_timesteps=100, beta_schedule="squaredcos_cap_v2")
    pipe.set_scheduler(name)
    assert type(pipe.scheduler) is cls
    assert pipe.scheduler.config.beta_schedule == "squaredcos_cap_v2"
    assert pipe.scheduler.config.num_train_timesteps == 100
    # the diffusers idiom works too
    pipe.scheduler = cls.from_config(pipe.scheduler.config)
    out = pipe(batch_size=1, generator=gen(), num_inference_steps=3, output_type="np", trace=True)
    assert np.isfinite(out.images).all()
    assert out.trace.stack("pred_original_sample").shape == (3, 1, 1, 8, 8)


def test_scheduler_swap_keeps_the_noise_schedule_and_no_earlier_sampler_setting():
    """`set_scheduler` keeps what the denoiser was trained with (betas, prediction type) and drops every sampler
    choice of an earlier call: after the SDE solver, `set_scheduler("dpmsolver")` is the ODE solver again (building
    from the whole config, as `from_config` does, kept `algorithm_type`, `solver_order` and `lambda_min_clipped`)."""
    pipe = tiny_pipeline("ddpm")
    pipe.scheduler = DDPMScheduler(
        num_train_timesteps=100, beta_schedule="squaredcos_cap_v2", prediction_type="v_prediction"
    )
    pipe.set_scheduler("dpmsolver", algorithm_type="sde-dpmsolver++", solver_order=3, lambda_min_clipped=-3.5)
    assert pipe.scheduler.config.algorithm_type == "sde-dpmsolver++" and pipe.scheduler.config.solver_order == 3
    pipe.set_scheduler("dpmsolver")
    config = pipe.scheduler.config
    assert (config.algorithm_type, config.solver_order, config.lambda_min_clipped) == ("dpmsolver++", 2, -float("inf"))
    assert (config.num_train_timesteps, config.beta_schedule, config.prediction_type) == (
        100,
        "squaredcos_cap_v2",
        "v_prediction",
    )
    pipe.set_scheduler("ddim", clip_sample=False, timestep_spacing="trailing")
    pipe.set_scheduler("ddim")
    assert (pipe.scheduler.config.clip_sample, pipe.scheduler.config.timestep_spacing) == (True, "leading")
    assert pipe.scheduler.config.prediction_type == "v_prediction"


def test_ddim_copy_keeps_the_noise_schedule_and_no_sampler_setting_made_by_hand(caplog):
    """Validation, evaluation and explanations sample with `ddim_copy`: a DDIM of the pipeline's noise schedule. An
    SDE solver set by hand on the pipeline must not lend it DPM-Solver's thresholding or trailing spacing (building
    DDIM from the whole config, as before, kept both), nor make the copy warn about the unthresholded DPM-Solver it
    replaces (a copy built with the old scheduler, then swapped, did)."""
    from diffusers_xai.modalities.sampling import ddim_copy

    pipe = tiny_pipeline("ddpm")
    pipe.scheduler = DDPMScheduler(num_train_timesteps=100, prediction_type="v_prediction")
    pipe.set_scheduler("dpmsolver", algorithm_type="sde-dpmsolver++", thresholding=False)
    with caplog.at_level(logging.WARNING, logger="diffusers_xai"):
        config = ddim_copy(pipe).scheduler.config
    assert caplog.records == []
    assert (config.thresholding, config.timestep_spacing, config.clip_sample) == (False, "leading", True)
    assert (config.num_train_timesteps, config.prediction_type) == (100, "v_prediction")
    assert ddim_copy(pipe, clip_sample=False).scheduler.config.clip_sample is False
    assert type(pipe.scheduler) is DPMSolverMultistepScheduler  # the pipeline itself is left as it was


def test_with_scheduler_copies_the_settings_shares_the_weights_and_leaves_the_pipeline_alone():
    unet = tiny_unet(num_classes=3)
    pipe = DiffusionXAIPipeline(
        unet=unet, scheduler=DDIMScheduler(num_train_timesteps=50), class_names=["zero", "one", "two"]
    )
    fast = pipe.with_scheduler("dpmsolver", solver_order=3)
    assert type(fast) is type(pipe) and fast.unet is pipe.unet
    assert fast.class_names == pipe.class_names == ["zero", "one", "two"]
    assert (type(fast.scheduler), fast.scheduler.config.solver_order) == (DPMSolverMultistepScheduler, 3)
    assert fast.scheduler.config.thresholding is True  # DPM-Solver's pixel defaults, as `set_scheduler` gives
    assert type(pipe.scheduler) is DDIMScheduler


def test_dpmsolver_pixel_defaults_and_override():
    s = make_scheduler("dpmsolver")
    assert s.config.thresholding is True and s.config.sample_max_value == 1.0
    s = make_scheduler("dpmsolver", thresholding=False)
    assert s.config.thresholding is False


def test_dpmsolver_thresholding_keeps_pred_x0_in_range():
    # an untrained UNet predicts garbage; with the safe default the x0 the solver steps with (and the trace records)
    # stays within sample_max_value, while the unthresholded scheduler really leaves [-1, 1]
    pipe = tiny_pipeline("dpmsolver")
    trace = TraceConfig(steps="all", dtype=torch.float32)
    out = pipe(batch_size=4, generator=gen(), num_inference_steps=5, output_type="pt", trace=trace)
    x0 = out.trace.stack("pred_original_sample")
    assert x0.shape == (5, 4, 1, 8, 8) and x0.abs().max() <= 1.0
    pipe.scheduler = make_scheduler("dpmsolver", pipe.scheduler.config, thresholding=False)
    free = pipe(batch_size=4, generator=gen(), num_inference_steps=5, output_type="pt", trace=trace)
    assert free.trace.stack("pred_original_sample").abs().max() > 2.0


def test_save_load_round_trip(tmp_path):
    pipe = tiny_pipeline("ddim")
    pipe.save_pretrained(tmp_path)
    files = {p.name for p in tmp_path.rglob("*") if p.is_file()}
    assert "diffusion_pytorch_model.safetensors" in files
    assert not any(f.endswith((".bin", ".pt", ".pkl")) for f in files)
    loaded = DiffusionXAIPipeline.from_pretrained(tmp_path)
    loaded.set_progress_bar_config(disable=True)
    assert type(loaded.scheduler) is DDIMScheduler
    a = pipe(batch_size=2, generator=gen(), num_inference_steps=3, output_type="np").images
    b = loaded(batch_size=2, generator=gen(), num_inference_steps=3, output_type="np").images
    np.testing.assert_array_equal(a, b)


# ---- bad input ----
def test_unknown_scheduler():
    with pytest.raises(ValueError, match="Unknown scheduler type 'euler'.*ddim"):
        make_scheduler("euler")
    with pytest.raises(ValueError, match="Unknown beta_schedule 'cosine'.*squaredcos_cap_v2"):
        make_scheduler("ddpm", beta_schedule="cosine")
    with pytest.raises(TypeError, match="diffusers scheduler"):
        DiffusionXAIPipeline(unet=tiny_unet(), scheduler="ddpm")


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"batch_size": 0}, "`batch_size` must be a positive int, got 0"),
        ({"num_inference_steps": 0}, "between 1 and the scheduler's num_train_timesteps \\(100\\), got 0"),
        ({"num_inference_steps": 101}, "got 101"),
        ({"output_type": "jpg"}, "'pil', 'np' or 'pt', got 'jpg'"),
        ({"generator": [torch.Generator(), torch.Generator()]}, "list of generators of length 2"),
    ],
)
def test_bad_call_arguments(kwargs, match):
    pipe = tiny_pipeline("ddpm")
    with pytest.raises(ValueError, match=match):
        pipe(**{"batch_size": 1, "num_inference_steps": 2, **kwargs})


def test_wrong_in_channels_for_data():
    pipe = tiny_pipeline("ddpm")  # in_channels=1
    with pytest.raises(ValueError, match=r"in_channels=1.*expects \(1, 1, 8, 8\)"):
        pipe(batch_size=1, num_inference_steps=2, latents=torch.randn(1, 3, 8, 8))


def test_stock_unet_with_custom_sample_size_tuple():
    # no attention in the down/up blocks; the mid block keeps UNet2DModel's default attention (head dim 8)
    unet = tiny_unet(in_channels=3, sample_size=(8, 16), attention=False, mid_attention=True, attention_head_dim=8)
    pipe = DiffusionXAIPipeline(unet=unet, scheduler=DDPMScheduler(num_train_timesteps=10))
    pipe.set_progress_bar_config(disable=True)
    out = pipe(batch_size=1, num_inference_steps=2, output_type="np", trace=True)
    assert out.images.shape == (1, 8, 16, 3)
