"""Explaining a guided run explains the function that sampled it: classifier-free guidance's
f_null + s (f_y - f_null), in the attributions and in the checks run on them."""

import pytest
import torch
from diffusers import DDIMScheduler

from diffusers_xai import DiffusionXAIPipeline, Trace, TraceConfig
from diffusers_xai.explain import (
    DenoiserAttribution,
    DenoiserGradCAM,
    Explainer,
    ExplanationTarget,
    column_attributions,
)
from diffusers_xai.testing import seeded_generator as gen
from diffusers_xai.testing import tiny_tabular_pipeline, tiny_unet

pytestmark = pytest.mark.usefixtures("one_thread")

SCALE = 3.0
NO_NULL_CLASS = (
    r"`guidance_scale`=2.0 needs a class-conditional model trained with label dropout; no null class is known to "
    r"explain the guided run with\. Use guidance_scale=1, or explain with the pipeline that sampled it"
)


@pytest.fixture(scope="module")
def guided_run():
    pipe, _ = tiny_tabular_pipeline(null_class=True, scheduler="ddim")
    pipe.set_progress_bar_config(disable=True)
    labels = torch.tensor([0, 1, 2, 1])
    out = pipe(
        num_rows=4,
        class_labels=labels,
        guidance_scale=SCALE,
        generator=gen(),
        num_inference_steps=4,
        trace=TraceConfig(model_output=True, dtype=torch.float32),
    )
    return pipe, out, labels


def test_the_guided_forward_is_the_model_output_the_pipeline_recorded(guided_run):
    pipe, out, labels = guided_run
    raw = ExplanationTarget(output="model_output")
    guided = DenoiserAttribution(pipe).guided(SCALE).forward_function(raw)
    plain = DenoiserAttribution(pipe).forward_function(raw)
    for step in out.trace.steps:
        with torch.no_grad():
            mix = guided.model_output(step.latents, step.timestep, class_labels=labels)
            cond = plain.model_output(step.latents, step.timestep, class_labels=labels)
        torch.testing.assert_close(mix, step.model_output, rtol=1e-5, atol=1e-5)
        assert (cond - step.model_output).abs().max() > 1e-2  # the conditional model alone is another function


def test_guided_attributions_are_complete_for_the_guided_mix(guided_run):
    """Integrated gradients sum to F(x) - F(0) for F the guided mix (completeness), so they explain the mix, not f_y
    (whose difference they would sum to unguided)."""
    pipe, out, labels = guided_run
    step = out.trace.steps[1]
    x = step.latents
    guided = DenoiserAttribution(pipe).guided(SCALE)
    result = guided.attribute(x, timesteps=[step.timestep], class_labels=labels, n_steps=128)
    total = result.attributions[0].sum(dim=1)
    f_mix = guided.forward_function().bind(["sample"], ["class_labels"], step.timestep)
    f_cond = DenoiserAttribution(pipe).forward_function().bind(["sample"], ["class_labels"], step.timestep)
    with torch.no_grad():
        mix_gap = f_mix(x, labels) - f_mix(torch.zeros_like(x), labels)
        cond_gap = f_cond(x, labels) - f_cond(torch.zeros_like(x), labels)
    torch.testing.assert_close(total, mix_gap, rtol=1e-2, atol=1e-3)
    assert (total - cond_gap).abs().max() > 1e-2


def test_column_attributions_and_checks_follow_the_guided_explainer(guided_run):
    pipe, out, labels = guided_run
    t = [int(out.trace.steps[1].timestep)]
    plain = column_attributions(DenoiserAttribution(pipe, "saliency"), out.trace, timesteps=t, class_labels=labels)
    mixed = column_attributions(
        DenoiserAttribution(pipe, "saliency").guided(SCALE), out.trace, timesteps=t, class_labels=labels
    )
    assert plain.matrix(0).shape == mixed.matrix(0).shape
    assert (plain.matrix(0) - mixed.matrix(0)).abs().max() > 1e-3
    guided_once = DenoiserAttribution(pipe).guided(SCALE)
    assert guided_once.with_model(pipe.denoiser).guidance_scale == SCALE  # the randomisation check's copy keeps it


def test_guidance_without_a_null_class_or_below_one_is_refused():
    pipe, _ = tiny_tabular_pipeline(null_class=False)
    with pytest.raises(
        ValueError,
        match=NO_NULL_CLASS,
    ):
        DenoiserAttribution(pipe).guided(2.0)
    with pytest.raises(
        ValueError,
        match=NO_NULL_CLASS,
    ):
        DenoiserAttribution(tiny_tabular_pipeline(null_class=True)[0].denoiser).guided(2.0)  # a bare denoiser
    with pytest.raises(
        ValueError, match=r"`guidance_scale` must be a number >= 1 \(1 = no guidance, 3 is a good start\), got 0.5"
    ):
        DenoiserAttribution(pipe).guided(0.5)
    assert DenoiserAttribution(pipe).guided(1).guidance_scale == 1.0


def test_image_explainer_with_guidance_explains_the_guided_mix():
    unet = tiny_unet(seed=0, num_classes=3)
    pipe = DiffusionXAIPipeline(unet=unet, scheduler=DDIMScheduler(num_train_timesteps=50))
    pipe.set_progress_bar_config(disable=True)
    config = TraceConfig(model_output=True, attention=True, dtype=torch.float32)
    run = dict(batch_size=2, class_labels=[1, 2], num_inference_steps=3, output_type="pt", trace=config)
    out = pipe(**run, guidance_scale=SCALE, generator=gen())
    plain = pipe(**run, generator=gen())
    # one row per sample, and at x_T (the same in both runs) the attention of the class's pass, not the null pass's
    first, unguided = out.trace.steps[0], plain.trace.steps[0]
    assert first.latents.shape[0] == 2 and first.model_output.shape[0] == 2 and first.attentions
    for name, probs in first.attentions.items():
        assert probs.shape[0] == 2
        torch.testing.assert_close(probs, unguided.attentions[name])
    step = out.trace.steps[1]
    explainer = Explainer(pipe, methods=["saliency"], faithfulness=False, sanity_check=False, guidance_scale=SCALE)
    forward = explainer.explainer_for("saliency").forward_function(ExplanationTarget(output="model_output"))
    with torch.no_grad():
        mix = forward.model_output(step.latents, step.timestep, class_labels=out.class_labels)
    torch.testing.assert_close(mix, step.model_output, rtol=1e-5, atol=1e-5)
    with pytest.raises(
        ValueError,
        match=NO_NULL_CLASS,
    ):
        Explainer(DiffusionXAIPipeline(unet=tiny_unet(), scheduler=DDIMScheduler()), guidance_scale=2.0)


def test_guided_hirescam_is_the_mix_of_the_two_passes_cams():
    """HiResCAM is linear in the gradient and the guided target is (1 - s) f_null + s f_y, each pass with its own
    activations: the guided map is s CAM_y + (1 - s) CAM_null, which needs both passes in the one hooked call."""
    pipe = DiffusionXAIPipeline(unet=tiny_unet(seed=0, num_classes=3), scheduler=DDIMScheduler(num_train_timesteps=50))
    x = torch.randn(2, 1, 8, 8, generator=gen())
    labels, null = torch.tensor([1, 2]), torch.tensor([3, 3])
    cam = DenoiserGradCAM(pipe, layer="output_block", weighting="hirescam")

    def maps(explainer, y):  # the layer's CAM before the per-sample scaling of `maps`
        return explainer.attribute(x, timesteps=[25], class_labels=y).metadata["per_layer"][cam.layers[0]]

    mixed = maps(cam.guided(SCALE), labels)
    torch.testing.assert_close(mixed, SCALE * maps(cam, labels) + (1 - SCALE) * maps(cam, null), rtol=1e-4, atol=1e-5)


def test_guided_class_attributions_leave_the_null_pass_its_own_embedding(guided_run):
    """Attributing to the class embedding under guidance: integrated gradients from a zero embedding still sum to
    the mix's change, with the null half of the batch keeping the null class's embedding."""
    pipe, out, labels = guided_run
    step = out.trace.steps[1]
    guided = DenoiserAttribution(pipe).guided(SCALE)
    result = guided.attribute(
        step.latents, timesteps=[step.timestep], class_labels=labels, include_conditioning=True, n_steps=128,
        return_convergence_delta=True,
    )  # fmt: skip
    assert result.delta.abs().max() < 1e-2
    # the class part is the mix's change from a zero class embedding (the null pass unchanged) at the same x_t
    forward = guided.forward_function()
    emb = pipe.denoiser.embedder.class_embedding(labels)
    zero = torch.zeros_like(emb)
    x = step.latents.float()
    f = forward.bind(["sample"], ["class_labels", "class_embedding"], step.timestep)
    with torch.no_grad():
        total = f(x, labels, emb) - f(torch.zeros_like(x), labels, zero)
    sums = result.attributions[0][0].sum(dim=1) + result.attributions[1][0].sum(dim=1)
    torch.testing.assert_close(sums, total, rtol=1e-2, atol=2e-3)


def test_the_trace_records_the_scale_and_the_explainer_follows_it(guided_run, tmp_path, caplog):
    """A guided run's trace says how it was sampled (also after save/load); `Explainer` explains that mix by default,
    and a bare explainer left at the conditional model warns instead of explaining another function silently."""
    pipe, out, labels = guided_run
    assert out.trace.guidance_scale == SCALE
    loaded = Trace.load(out.trace.save(tmp_path / "trace.safetensors"))
    assert loaded.guidance_scale == SCALE
    t = [int(out.trace.steps[1].timestep)]
    with caplog.at_level("WARNING", logger="diffusers_xai.explain.base"):
        plain = DenoiserAttribution(pipe, "saliency").attribute(out.trace, timesteps=t, class_labels=labels)
    assert f"This trace was sampled with guidance_scale={SCALE:g}" in caplog.text
    caplog.clear()
    saliency = DenoiserAttribution(pipe, "saliency")
    with caplog.at_level("WARNING", logger="diffusers_xai.explain.base"):
        mixed = saliency.guided(SCALE).attribute(out.trace, timesteps=t, class_labels=labels)
        saliency.guided(1).attribute(out.trace, timesteps=t, class_labels=labels)
    assert caplog.text == ""  # an explicit choice, either way, is not warned about
    assert not torch.allclose(plain.maps, mixed.maps)
    unguided = pipe(num_rows=2, class_labels=[0, 1], generator=gen(), num_inference_steps=2, trace=True).trace
    assert unguided.guidance_scale == 1.0


def test_explainer_defaults_to_the_traces_scale():
    unet = tiny_unet(seed=0, num_classes=3)
    pipe = DiffusionXAIPipeline(unet=unet, scheduler=DDIMScheduler(num_train_timesteps=50))
    pipe.set_progress_bar_config(disable=True)
    out = pipe(batch_size=1, class_labels=[1], guidance_scale=SCALE, generator=gen(), num_inference_steps=3,
               output_type="pt", trace=True)  # fmt: skip
    kwargs = {"methods": ["saliency"], "faithfulness": False, "sanity_check": False}
    t = [int(out.trace.steps[1].timestep)]

    def maps(**kw):
        report = Explainer(pipe, **kwargs, **kw).explain(out, timesteps=t, class_labels=out.class_labels)
        return report, report.results["saliency"].maps

    (default, a), (_, b), (_, c) = maps(), maps(guidance_scale=SCALE), maps(guidance_scale=1.0)
    assert default.guidance_scale == SCALE and default.summary()["guidance_scale"] == SCALE
    assert torch.equal(a, b) and not torch.allclose(a, c)
