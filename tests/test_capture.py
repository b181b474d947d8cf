import numpy as np
import pytest
import torch
from diffusers import DDPMPipeline, DDPMScheduler
from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

from diffusers_xai import (
    ActivationCapture,
    CapturingAttnProcessor,
    Trace,
    TraceConfig,
    TraceRecorder,
    find_attention_modules,
)
from diffusers_xai.capture import TraceStep
from diffusers_xai.testing import tiny_conditional_unet, tiny_pipeline, tiny_unet


def processors(model):
    return {name: m.get_processor() for name, m in find_attention_modules(model).items()}


def hook_counts(model):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def test_processors_and_hooks_restored_after_use():
    unet = tiny_unet()
    before = processors(unet)
    assert all(isinstance(p, AttnProcessor2_0) for p in before.values())
    cfg = TraceConfig(attention=True, activations=["down_blocks.*", "mid_block"])
    with TraceRecorder(unet, cfg) as rec:
        assert all(isinstance(p, CapturingAttnProcessor) for p in processors(unet).values())
        assert hook_counts(unet) > 0
        unet(torch.randn(1, 1, 8, 8), 5)
    assert processors(unet) == before  # the very same processor objects
    assert hook_counts(unet) == 0
    assert len(rec.trace) == 1


def test_processors_and_hooks_restored_when_sampling_raises():
    pipe = tiny_pipeline("ddpm")
    before = processors(pipe.unet)

    def boom(module, args, output):
        raise RuntimeError("boom in the middle of sampling")

    handle = pipe.unet.mid_block.register_forward_hook(boom)
    try:
        with pytest.raises(RuntimeError, match="boom"):
            pipe(batch_size=1, num_inference_steps=3, trace=TraceConfig(attention=True, activations=["mid_block"]))
    finally:
        handle.remove()
    assert processors(pipe.unet) == before
    assert hook_counts(pipe.unet) == 0


def test_capturing_processor_output_identical_to_default():
    unet = tiny_unet()
    x, t = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0)), 7
    with torch.no_grad():
        ref = unet(x, t).sample
        with TraceRecorder(unet, TraceConfig(attention=True, steps="all")):
            got = unet(x, t).sample
    torch.testing.assert_close(got, ref, rtol=0, atol=0)


@pytest.mark.parametrize("conditional", [False, True])
def test_attention_probabilities_match_classic_processor(conditional):
    """Our side computation reproduces diffusers' classic AttnProcessor, which materialises the probabilities."""
    model = tiny_conditional_unet() if conditional else tiny_unet()
    x = torch.randn(1, model.config.in_channels, 8, 8, generator=torch.Generator().manual_seed(1))
    kwargs = {"encoder_hidden_states": torch.randn(1, 5, 8)} if conditional else {}
    seen = {}
    for name, module in find_attention_modules(model).items():
        original = module.get_attention_scores

        def spy(q, k, mask=None, _name=name, _orig=original):
            probs = _orig(q, k, mask)
            seen[_name] = probs
            return probs

        module.get_attention_scores = spy
        module.set_processor(AttnProcessor())
    cfg = TraceConfig(attention=True, head_reduction="none", dtype=torch.float32)
    with torch.no_grad(), TraceRecorder(model, cfg) as rec:
        model(x, 3, **kwargs)
    step = rec.trace.steps[0]
    assert set(step.attentions) == set(seen)
    for name, probs in seen.items():
        heads = find_attention_modules(model)[name].heads
        ours = step.attentions[name]
        assert ours.shape == (1, heads, *probs.shape[-2:])
        torch.testing.assert_close(ours.reshape(probs.shape), probs, rtol=1e-5, atol=1e-6)
    if conditional:  # cross-attention has a token axis of length 5
        assert step.attentions["down_blocks.0.attentions.0.transformer_blocks.0.attn2"].shape[-1] == 5
        assert step.attentions["down_blocks.0.attentions.0.transformer_blocks.0.attn1"].shape[-1] == 64


def test_trace_shapes_steps_and_bytes():
    pipe = tiny_pipeline("ddpm")
    cfg = TraceConfig(steps=2, attention=True, model_output=True, attention_layers=["mid_block.*"])
    out = pipe(batch_size=3, num_inference_steps=5, trace=cfg, output_type="pt")
    trace = out.trace
    assert trace.step_indices == [0, 2, 4]
    assert trace.timesteps.tolist() == pipe.scheduler.timesteps[[0, 2, 4]].tolist()
    assert trace.stack("latents").shape == (3, 3, 1, 8, 8)
    assert trace.stack("latents").dtype == torch.float16
    assert trace.attention_layers == ["mid_block.attentions.0"]
    assert trace.attention("mid_block.attentions.0").shape == (3, 3, 16, 16)  # [S, B, Q, K] at the 4x4 mid block
    probs = trace.attention("mid_block.attentions.0").float()
    torch.testing.assert_close(probs.sum(-1), torch.ones(3, 3, 16), atol=2e-3, rtol=0)
    expected = sum(t.numel() * t.element_size() for s in trace.steps for t in s.tensors().values())
    assert trace.nbytes == expected
    # first recorded latents are x_T; the last step's prediction is the returned sample for DDPM (at t = 0 the
    # posterior mean is x0 itself and there is no noise), both up to the trace's float16
    assert trace.steps[0].latents.device.type == "cpu"
    x_T = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(5))
    out = pipe(batch_size=3, num_inference_steps=5, trace=cfg, output_type="pt", latents=x_T)
    torch.testing.assert_close(out.trace.steps[0].latents, x_T.half(), rtol=0, atol=0)
    final = (out.trace.steps[-1].pred_original_sample.float() / 2 + 0.5).clamp(0, 1)
    assert out.trace.steps[-1].step_index == 4 and not torch.equal(out.images, torch.zeros_like(out.images))
    torch.testing.assert_close(final, out.images, rtol=0, atol=1e-3)


def test_trace_latents_equal_loop_values():
    pipe = tiny_pipeline("ddim")
    steps = list(pipe.progressive(batch_size=2, generator=torch.Generator().manual_seed(0), num_inference_steps=4))
    out = pipe(
        batch_size=2,
        generator=torch.Generator().manual_seed(0),
        num_inference_steps=4,
        trace=TraceConfig(steps="all", dtype=torch.float32),
    )
    for s, rec in zip(steps, out.trace.steps):
        assert rec.timestep == s.timestep
        torch.testing.assert_close(rec.latents, s.sample, rtol=0, atol=0)
        torch.testing.assert_close(rec.pred_original_sample, s.pred_original_sample, rtol=0, atol=0)


class _Identity(torch.nn.Module):
    def forward(self, sample, timestep):
        return (sample,)


def test_default_trace_of_1000_steps_64_images_fits_64mb():
    model = _Identity()
    x = torch.randn(64, 1, 16, 16)
    with TraceRecorder(model, TraceConfig(), num_steps=1000) as rec:
        for t in range(999, -1, -1):
            model(x, t)
            rec.record_latents(pred_original_sample=x)
    assert rec.trace.nbytes <= 64 * 2**20
    assert len(rec.trace) == 100 and rec.trace.step_indices[0] == 0 and rec.trace.step_indices[-1] == 999
    assert not rec.trace.truncated
    # "all" steps with the same budget: recording stops at the budget with a warning, never beyond
    with TraceRecorder(model, TraceConfig(steps="all", model_output=True), num_steps=1000) as rec:
        for t in range(999, -1, -1):
            model(x, t)
            rec.record_latents(pred_original_sample=x)
    assert rec.trace.truncated and rec.trace.nbytes <= 64 * 2**20


def test_recording_never_re_reads_the_stored_steps(monkeypatch):
    # the budget is counted as tensors are stored: re-summing every stored step at each store made a trace of S steps
    # cost O(S^2) (`bench/trace_overhead.py --steps 1000`: the attention trace read 3.85x the stock run, now 1.02x)
    reads = []
    monkeypatch.setattr(TraceStep, "nbytes", property(lambda step: reads.append(step) or 0))
    model = _Identity()
    x = torch.randn(2, 1, 4, 4)
    with TraceRecorder(model, TraceConfig(steps="all", model_output=True), num_steps=200) as rec:
        for t in range(199, -1, -1):
            model(x, t)
            rec.record_latents(pred_original_sample=x, model_output=x)
    assert len(rec.trace) == 200 and not rec.trace.truncated
    assert reads == []


def test_a_pipeline_records_the_model_output_once_per_step_within_its_budget():
    # x_t, x̂0 and the model output of 4 steps of a [2, 1, 8, 8] float32 sample fill exactly this budget; the model
    # output the hook records is replaced by the one the scheduler stepped with, not held beside it
    per_step = 3 * 2 * 1 * 8 * 8 * 4
    config = TraceConfig(steps="all", model_output=True, dtype=torch.float32, max_bytes=4 * per_step)
    pipe = tiny_pipeline()
    out = pipe(batch_size=2, generator=torch.Generator().manual_seed(0), num_inference_steps=4, trace=config)
    assert not out.trace.truncated and len(out.trace) == 4 and out.trace.nbytes == 4 * per_step
    config.max_bytes -= 1  # one byte less: the last step's x̂0 no longer fits
    out = pipe(batch_size=2, generator=torch.Generator().manual_seed(0), num_inference_steps=4, trace=config)
    assert out.trace.truncated and out.trace.steps[-1].pred_original_sample is None
    assert out.trace.nbytes == 4 * per_step - per_step // 3


def test_stock_ddpm_pipeline_under_recorder():
    unet = tiny_unet()
    stock = DDPMPipeline(unet=unet, scheduler=DDPMScheduler(num_train_timesteps=50))
    stock.set_progress_bar_config(disable=True)
    ref = stock(
        batch_size=1, generator=torch.Generator().manual_seed(0), num_inference_steps=3, output_type="np"
    ).images
    with TraceRecorder(unet, TraceConfig(attention=True, model_output=True), num_steps=3) as rec:
        got = stock(
            batch_size=1, generator=torch.Generator().manual_seed(0), num_inference_steps=3, output_type="np"
        ).images
    np.testing.assert_array_equal(got, ref)
    assert len(rec.trace) == 3 and rec.trace.stack("model_output").shape == (3, 1, 1, 8, 8)
    assert len(rec.trace.attention_layers) == 4


def test_activation_capture_gradients_hand_computed():
    lin = torch.nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[2.0, -3.0]]))
    model = torch.nn.Sequential(torch.nn.Identity(), lin)
    x = torch.tensor([[1.0, 4.0]], requires_grad=True)
    with ActivationCapture(model, ["0"]) as cap:
        y = model(x)
        (y**2).sum().backward()
    # y = 2*1 - 3*4 = -10 ; d(y^2)/dA = 2y * w = -20 * [2, -3]
    torch.testing.assert_close(cap.activations["0"].detach(), torch.tensor([[1.0, 4.0]]))
    torch.testing.assert_close(cap.gradients["0"], torch.tensor([[-40.0, 60.0]]))
    assert not model[0]._forward_hooks


def test_trace_save_load_round_trip(tmp_path):
    pipe = tiny_pipeline("ddpm")
    trace = pipe(
        batch_size=2, num_inference_steps=3, trace=TraceConfig(attention=True, activations=["mid_block"])
    ).trace
    path = trace.save(tmp_path / "trace.safetensors")
    loaded = Trace.load(path)
    assert loaded.step_indices == trace.step_indices and loaded.timesteps.tolist() == trace.timesteps.tolist()
    assert loaded.config == trace.config
    torch.testing.assert_close(loaded.stack("latents"), trace.stack("latents"))
    for a, b in zip(loaded.steps, trace.steps):
        assert a.attentions.keys() == b.attentions.keys() and a.activations.keys() == b.activations.keys()
        torch.testing.assert_close(a.activations["mid_block"], b.activations["mid_block"])
    assert not list(tmp_path.glob("*.tmp"))


# ---- bad input ----
def test_layer_name_that_matches_nothing():
    with pytest.raises(ValueError, match="attention layer name 'mid_blok.*' matches nothing.*mid_block.attentions.0"):
        TraceRecorder(tiny_unet(), TraceConfig(attention=True, attention_layers=["mid_blok.*"]))
    with pytest.raises(ValueError, match="layer name 'encoder' matches nothing"):
        TraceRecorder(tiny_unet(), TraceConfig(activations=["encoder"]))
    with pytest.raises(ValueError, match="has no diffusers `Attention` modules"):
        TraceRecorder(tiny_unet(attention=False), TraceConfig(attention=True))


@pytest.mark.parametrize(
    "kwargs,err,match",
    [
        ({"steps": "some"}, ValueError, "'auto', 'all', an int stride"),
        ({"steps": 0}, ValueError, "stride must be >= 1"),
        ({"steps": [1, -2]}, ValueError, "non-negative"),
        ({"head_reduction": "max"}, ValueError, "'mean' or 'none', got 'max'"),
        ({"dtype": torch.int8}, TypeError, "floating torch.dtype"),
    ],
)
def test_bad_trace_config(kwargs, err, match):
    with pytest.raises(err, match=match):
        TraceConfig(**kwargs)


def test_trace_steps_out_of_range():
    pipe = tiny_pipeline("ddpm")
    with pytest.raises(ValueError, match=r"Trace steps \[7\] do not exist in a loop of 3 steps"):
        pipe(batch_size=1, num_inference_steps=3, trace=TraceConfig(steps=[0, 7]))
    with pytest.raises(TypeError, match="bool, a dict or a TraceConfig"):
        pipe(batch_size=1, num_inference_steps=3, trace="yes")
