"""TextToImageExplainer on tiny stock SD, SDXL, SD3, Flux and PixArt pipelines (offline, 2 steps)."""

import numpy as np
import pytest
import torch
from diffusers import DPMSolverMultistepScheduler

from diffusers_xai.capture import LatentTraceCallback, SchedulerStepTrace, TraceConfig
from diffusers_xai.explain.faithfulness import FaithfulnessResult
from diffusers_xai.explain.randomization import SanityCheckResult
from diffusers_xai.explain.text_to_image import TextToImageExplainer, explain_prompt
from diffusers_xai.testing_text_to_image import TEXT_TO_IMAGE_FAMILIES, tiny_call_kwargs, tiny_text_to_image_pipeline

PROMPT = "a red kitten"


@pytest.fixture(scope="module", params=TEXT_TO_IMAGE_FAMILIES)
def family_pipe(request):
    return request.param, tiny_text_to_image_pipeline(request.param)


def _denoiser(pipe):
    return pipe.unet if hasattr(pipe, "unet") else pipe.transformer


def _processors(model):
    return {n: m.get_processor() for n, m in model.named_modules() if hasattr(m, "get_processor")}


def test_word_maps_merge_subwords_and_keep_images_identical(family_pipe):
    family, pipe = family_pipe
    stock = pipe(PROMPT, **tiny_call_kwargs(family, guidance_scale=5.0)).images
    before = _processors(_denoiser(pipe))
    res = TextToImageExplainer(pipe).attribute(
        PROMPT, include_special=True, **tiny_call_kwargs(family, guidance_scale=5.0)
    )
    np.testing.assert_array_equal(res.images, stock)
    assert _processors(_denoiser(pipe)) == before
    specials = {"sd": ["<|startoftext|>", "<|endoftext|>"], "sdxl": ["<|startoftext|>", "<|endoftext|>"]}
    specials |= {"sd3": ["<|startoftext|>", "<|endoftext|>", "</s>"], "flux": ["</s>"], "pixart": ["</s>"]}
    assert res.words == ["a", "red", "kitten", *specials[family]]
    assert res.word_maps.shape == (len(res.words), 16, 16) and res.step_indices == [0, 1]
    # "kitten" is ki + t + ten</w> in CLIP and ▁kit + ten in T5; its word map is the sum of those token maps
    subwords = {"sd": ["ki", "t", "ten</w>"], "sdxl": ["ki", "t", "ten</w>"], "flux": ["▁kit", "ten"]}
    subwords |= {"pixart": ["▁kit", "ten"], "sd3": ["ki", "t", "ten</w>", "▁kit", "ten"]}
    idx = [i for i, tok in enumerate(res.tokens) if tok in subwords[family]]
    assert [res.tokens[i] for i in idx] == subwords[family]
    torch.testing.assert_close(res.word_map("kitten"), res.token_maps[idx].sum(0), rtol=1e-5, atol=1e-7)
    if family in ("sd", "sdxl", "pixart"):  # cross-attention: a softmax over the text keys alone
        assert float(res.token_maps.sum(0).max()) <= 1 + 1e-5
    else:  # joint attention: the image→text share of a softmax over [image, text]
        assert float(res.token_maps.sum(0).max()) < 1
    # PixArt's pipeline has no callback_on_step_end: its trace comes from SchedulerStepTrace (DDIM gives x̂0);
    # flow matching's x̂0 is solved from two consecutive latents (step 1 on), SD's PNDM exposes none
    assert len(res.trace) == 2 and res.trace.steps[0].latents is not None
    assert (res.trace.steps[1].pred_original_sample is not None) == (family in ("sd3", "flux", "pixart"))


def test_unconditional_half_never_leaks(family_pipe):
    family, pipe = family_pipe
    if family == "flux":  # only true CFG has a negative pass
        a = dict(true_cfg_scale=3.0, negative_prompt="a dog")
        b = dict(true_cfg_scale=3.0, negative_prompt="blue grass")
    else:
        a, b = (
            dict(guidance_scale=5.0, negative_prompt="a dog"),
            dict(guidance_scale=5.0, negative_prompt="blue grass"),
        )
    explainer = TextToImageExplainer(pipe)
    # step 0 sees the same x_T whatever the negative prompt: its conditional maps must not depend on it
    first = explainer.attribute(PROMPT, steps=[0], trace=False, **tiny_call_kwargs(family, **a))
    second = explainer.attribute(PROMPT, steps=[0], trace=False, **tiny_call_kwargs(family, **b))
    assert not np.array_equal(first.images, second.images)  # the negative prompt did change the generation
    torch.testing.assert_close(first.word_maps, second.word_maps, rtol=0, atol=0)
    no_cfg = explainer.attribute(PROMPT, steps=[0], trace=False, **tiny_call_kwargs(family, guidance_scale=1.0))
    torch.testing.assert_close(first.word_maps, no_cfg.word_maps, rtol=1e-5, atol=1e-7)


def _embeddings(pipe, family):
    """The pipeline's own conditioning for PROMPT, as keyword arguments of its __call__ (no CFG)."""
    with torch.no_grad():
        if family == "sd":
            pe, _ = pipe.encode_prompt(PROMPT, "cpu", 1, False)
            return {"prompt_embeds": pe}
        if family in ("sdxl", "sd3"):
            extra = {"prompt_3": None, "max_sequence_length": 12} if family == "sd3" else {}
            out = pipe.encode_prompt(
                PROMPT, None, device="cpu", num_images_per_prompt=1, do_classifier_free_guidance=False, **extra
            )
            return {"prompt_embeds": out[0], "pooled_prompt_embeds": out[2]}
        if family == "flux":
            pe, pooled, _ = pipe.encode_prompt(PROMPT, None, max_sequence_length=12)
            return {"prompt_embeds": pe, "pooled_prompt_embeds": pooled}
        pe, mask, _, _ = pipe.encode_prompt(PROMPT, False, max_sequence_length=12)
        return {"prompt_embeds": pe, "prompt_attention_mask": mask}


def test_zeroed_word_loses_its_map_and_its_attribution(family_pipe):
    family, pipe = family_pipe
    explainer = TextToImageExplainer(pipe)
    kwargs = tiny_call_kwargs(family, guidance_scale=1.0)
    normal = explainer.attribute(PROMPT, integrated_gradients=True, check_step=1, trace=False, **kwargs)
    embeds = _embeddings(pipe, family)
    kitten = normal.layout.word_positions(normal.layout.words.index("kitten"))
    embeds["prompt_embeds"] = embeds["prompt_embeds"].clone()
    embeds["prompt_embeds"][:, kitten] = 0
    zeroed = explainer.attribute(
        PROMPT,
        integrated_gradients=True,
        check_step=1,
        trace=False,
        **tiny_call_kwargs(family, guidance_scale=1.0),
        **embeds,
    )
    ig = zeroed.attributions["integrated_gradients"]
    assert float(ig["tokens"][kitten].abs().max()) == 0.0  # IG with a zero baseline: x - x' = 0
    assert float(ig["words"][2]) == 0.0 and float(normal.attributions["integrated_gradients"]["words"][2]) != 0.0
    # every zeroed position has the same key: its tokens' maps collapse onto one content-free map
    maps = zeroed.token_maps[[zeroed.token_positions.index(p) for p in kitten]]
    torch.testing.assert_close(maps, maps[:1].expand_as(maps), rtol=1e-5, atol=1e-7)
    before = normal.token_maps[[normal.token_positions.index(p) for p in kitten]]
    assert float((before - before[:1]).abs().max()) > 1e-4


def test_integrated_gradients_complete_and_region(family_pipe):
    family, pipe = family_pipe
    res = explain_prompt(
        pipe,
        PROMPT,
        integrated_gradients=True,
        check_step=0,
        region=(0.0, 0.0, 0.5, 0.5),
        n_ig_steps=32,
        trace=False,
        **tiny_call_kwargs(family, guidance_scale=1.0),
    )
    ig = res.attributions["integrated_gradients"]
    assert ig["tokens"].shape == (len(res.layout.tokens),) and ig["words"].shape == (3,)
    # completeness: the attributions add up to f(embeddings) - f(0) up to the Riemann error
    assert float(ig["delta"].abs()) < 0.05 * float(ig["tokens"].abs().sum())


def test_faithfulness_and_sanity_checks_on_word_maps():
    pipe = tiny_text_to_image_pipeline("sd3")
    res = explain_prompt(
        pipe, PROMPT, faithfulness=True, sanity=True, trace=False, **tiny_call_kwargs("sd3", num_inference_steps=3)
    )
    faith = res.attributions["faithfulness"]
    assert list(faith) == ["a", "red", "kitten"] and all(isinstance(r, FaithfulnessResult) for r in faith.values())
    r = faith["kitten"]
    assert r.deletion.shape == (1, 9) and torch.allclose(r.deletion_raw[:, 0], torch.ones(1), atol=1e-4)  # f(x_t) = 1
    sanity = res.attributions["sanity"]
    assert isinstance(sanity, SanityCheckResult) and sanity.ssim_per_map.shape == (3,)
    assert sanity.spearman < 0.9  # a re-initialised transformer gives different word maps
    # the randomised denoiser was swapped back
    again = explain_prompt(pipe, PROMPT, trace=False, **tiny_call_kwargs("sd3", num_inference_steps=3))
    torch.testing.assert_close(again.word_maps, res.word_maps)


def test_processors_restored_after_an_error_and_bad_input():
    pipe = tiny_text_to_image_pipeline("sd")
    before = _processors(pipe.unet)
    explainer = TextToImageExplainer(pipe)
    with pytest.raises(ValueError, match="divisible by 8"):
        explainer.attribute(PROMPT, **tiny_call_kwargs("sd", height=15))
    assert _processors(pipe.unet) == before and not pipe.unet._forward_pre_hooks and not pipe.unet._forward_hooks
    assert "encode_prompt" not in vars(pipe)  # the embeddings reader is removed too
    with pytest.raises(ValueError, match="one string"):
        explainer.attribute(["a", "b"])
    with pytest.raises(ValueError, match="`steps` must be"):
        explainer.attribute(PROMPT, steps=3)
    with pytest.raises(ValueError, match="check_step=5"):
        explainer.attribute(PROMPT, integrated_gradients=True, check_step=5, **tiny_call_kwargs("sd"))
    with pytest.raises(ValueError, match="callback_on_step_end"):
        explainer.attribute(PROMPT, callback_on_step_end=lambda *a: a[-1], **tiny_call_kwargs("sd"))
    with pytest.raises(ValueError, match="not a text-to-image pipeline"):
        TextToImageExplainer(object())


def test_latent_trace_callback_flow_matching_x0():
    pipe = tiny_text_to_image_pipeline("sd3")
    seen = []
    handle = pipe.transformer.register_forward_hook(
        lambda m, a, k, out: seen.append((k["hidden_states"].clone(), out[0].clone())), with_kwargs=True
    )
    latents = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(3))
    callback = LatentTraceCallback(TraceConfig(steps="all", dtype=torch.float32), initial_latents=latents)
    try:
        pipe(
            PROMPT,
            latents=latents,
            callback_on_step_end=callback,
            **tiny_call_kwargs("sd3", num_inference_steps=3, guidance_scale=1.0),
        )
    finally:
        handle.remove()
    trace = callback.trace
    assert trace.step_indices == [0, 1, 2] and trace.stack("latents").shape == (3, 1, 4, 8, 8)
    for i, (x, v) in enumerate(seen):  # x̂0 = x_t - sigma_t v
        torch.testing.assert_close(
            trace.steps[i].pred_original_sample, x - pipe.scheduler.sigmas[i] * v, rtol=1e-4, atol=1e-4
        )
    torch.testing.assert_close(trace.steps[1].latents, seen[2][0])  # step i records x_{t_{i+1}}


def test_latent_trace_callback_dpm_solver_x0_and_budget(caplog):
    pipe = tiny_text_to_image_pipeline("sd")
    pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config)  # dpmsolver++: data prediction
    seen = []
    handle = pipe.unet.register_forward_hook(
        lambda m, a, k, out: seen.append((a[0].clone(), a[1], out[0].clone())), with_kwargs=True
    )
    callback = LatentTraceCallback(TraceConfig(steps="all", dtype=torch.float32))
    try:
        pipe(
            PROMPT, callback_on_step_end=callback, **tiny_call_kwargs("sd", num_inference_steps=3, guidance_scale=1.0)
        )
    finally:
        handle.remove()
    alphas = pipe.scheduler.alphas_cumprod
    for step, (x, t, eps) in zip(callback.trace.steps, seen):
        a = alphas[int(t)]
        torch.testing.assert_close(
            step.pred_original_sample, (x - (1 - a).sqrt() * eps) / a.sqrt(), rtol=1e-4, atol=1e-4
        )
    small = LatentTraceCallback(TraceConfig(steps="all", dtype=torch.float32, max_bytes=2100))
    pipe(PROMPT, callback_on_step_end=small, **tiny_call_kwargs("sd", num_inference_steps=3))
    assert (
        small.trace.truncated and len(small.trace) == 1 and small.trace.nbytes == 2048
    )  # x_t and x̂0 of step 0 and "max_bytes=2100" in caplog.text


@pytest.mark.parametrize("family", ["sd3", "sd"])
def test_scheduler_step_trace_equals_the_callback_route(family):
    pipe = tiny_text_to_image_pipeline(family)
    if family == "sd":  # DPM-Solver++ keeps x̂0 as its converted model output: both routes can read it
        pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config)
    latents = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(3))
    config = TraceConfig(steps="all", dtype=torch.float32)
    kwargs = dict(latents=latents, **tiny_call_kwargs(family, num_inference_steps=3, guidance_scale=3.0))
    callback = LatentTraceCallback(config, initial_latents=latents)
    by_callback = pipe(PROMPT, callback_on_step_end=callback, **kwargs).images
    with SchedulerStepTrace(pipe, config) as stepped:
        by_step = pipe(PROMPT, **kwargs).images
    np.testing.assert_array_equal(by_step, by_callback)
    assert "step" not in vars(pipe.scheduler)  # the class's own step is back
    a, b = callback.trace, stepped.trace
    assert a.step_indices == b.step_indices == [0, 1, 2] and [s.timestep for s in a.steps] == [
        s.timestep for s in b.steps
    ]
    torch.testing.assert_close(b.stack("latents"), a.stack("latents"), rtol=0, atol=0)
    torch.testing.assert_close(b.stack("pred_original_sample"), a.stack("pred_original_sample"), rtol=1e-5, atol=1e-5)


def test_scheduler_step_trace_on_pixart_and_restored_after_an_exception():
    pipe = tiny_text_to_image_pipeline("pixart")
    seen = []
    handle = pipe.transformer.register_forward_hook(
        lambda m, a, k, out: seen.append((a[0].clone(), k["timestep"], out[0].clone())), with_kwargs=True
    )
    kwargs = tiny_call_kwargs("pixart", num_inference_steps=3, guidance_scale=1.0, output_type="latent")
    try:
        stock = pipe(PROMPT, **kwargs).images
        seen.clear()
        with SchedulerStepTrace(pipe, TraceConfig(steps="all", dtype=torch.float32)) as stepped:
            traced = pipe(PROMPT, **tiny_call_kwargs("pixart", 3, guidance_scale=1.0, output_type="latent")).images
    finally:
        handle.remove()
    torch.testing.assert_close(traced, stock, rtol=0, atol=0)
    trace = stepped.trace
    torch.testing.assert_close(trace.steps[-1].latents, traced, rtol=0, atol=0)  # step i holds x_{t_{i+1}}
    torch.testing.assert_close(trace.steps[0].latents, seen[1][0], rtol=0, atol=0)
    alphas = pipe.scheduler.alphas_cumprod
    for step, (x, t, out) in zip(trace.steps, seen, strict=True):  # DDIM's own x̂0 = (x - sqrt(1 - a) eps) / sqrt(a)
        a, eps = alphas[int(t.flatten()[0])], out.chunk(2, dim=1)[0]  # learned sigma: the first half is eps
        assert step.timestep == int(t.flatten()[0])
        x0 = ((x - (1 - a).sqrt() * eps) / a.sqrt()).clamp(-1, 1)  # DDIMScheduler's default clip_sample=True
        torch.testing.assert_close(step.pred_original_sample, x0)

    calls = []

    def fail_second_call(module, args):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("boom")

    handle = pipe.transformer.register_forward_pre_hook(fail_second_call)
    recorder = SchedulerStepTrace(pipe)
    try:
        with pytest.raises(RuntimeError, match="boom"), recorder:
            pipe(PROMPT, **tiny_call_kwargs("pixart", num_inference_steps=3))
    finally:
        handle.remove()
    assert "step" not in vars(pipe.scheduler) and len(recorder.trace) == 1
    with SchedulerStepTrace(pipe), pytest.raises(ValueError, match="already traced by another SchedulerStepTrace"):
        SchedulerStepTrace(pipe).__enter__()
    assert "step" not in vars(pipe.scheduler)
    with pytest.raises(ValueError, match="str has no scheduler with a `step` method"):
        SchedulerStepTrace("not a pipeline")


def test_save_word_maps_png(tmp_path):
    from PIL import Image

    from diffusers_xai.viz import save_word_maps

    pipe = tiny_text_to_image_pipeline("flux")
    res = explain_prompt(
        pipe, PROMPT, integrated_gradients=True, check_step=0, **tiny_call_kwargs("flux", output_type="pil")
    )
    path = save_word_maps(res, tmp_path / "words.png")
    with Image.open(path) as img:
        assert img.format == "PNG" and img.size == (int(1.8 * 4 * 100), int(2.1 * 100))  # image + 3 words
    assert not list(tmp_path.glob(".*.tmp"))  # written atomically


def test_sd3_without_t5_and_a_non_square_image():
    pipe = tiny_text_to_image_pipeline("sd3")
    pipe.text_encoder_3 = None  # SD3 then feeds zeros in place of the T5 tokens
    res = explain_prompt(pipe, PROMPT, trace=False, **tiny_call_kwargs("sd3", height=16, width=32))
    assert res.words == ["a", "red", "kitten"] and res.word_maps.shape == (3, 16, 32)
    assert res.per_step_word_maps.shape[-2:] == (8, 16)  # 8 x 16 latent tokens (patch size 1)
    assert res.layout.tokens[12:] == ["<pad>"] * (len(res.layout.tokens) - 12)
