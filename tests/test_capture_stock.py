"""Attention-probability capture on stock text-to-image denoisers (SD, SDXL, SD3, Flux, PixArt), tiny and offline."""

import logging

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import AttnProcessor, XFormersAttnProcessor

from diffusers_xai.capture import TraceConfig
from diffusers_xai.capture.probability_capture import AttentionProbabilityCapture
from diffusers_xai.capture.query_key import UnsupportedAttentionProcessorError
from diffusers_xai.testing_text_to_image import TEXT_TO_IMAGE_FAMILIES, tiny_call_kwargs, tiny_text_to_image_pipeline

PROMPT = "a red kitten"


def _denoiser(pipe):
    return pipe.unet if hasattr(pipe, "unet") else pipe.transformer


def _processors(model):
    return {n: m.get_processor() for n, m in model.named_modules() if hasattr(m, "get_processor")}


@pytest.fixture(scope="module", params=TEXT_TO_IMAGE_FAMILIES)
def family_pipe(request):
    return request.param, tiny_text_to_image_pipeline(request.param)


class _SdpaSpy:
    """Reference: softmax(QKᵀ/√d + mask) of the very tensors the processors hand to SDPA, inside the denoiser only."""

    def __init__(self, denoiser):
        self.denoiser, self.probs, self.inside = denoiser, [], False

    def __call__(self, query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, **kw):
        if self.inside:
            s = (query.double() @ key.double().transpose(-1, -2)) / query.shape[-1] ** 0.5
            if attn_mask is not None:
                s = s + attn_mask.double()
            self.probs.append(s.softmax(-1))
        return self.sdpa(query, key, value, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal, scale=scale)

    def __enter__(self):
        self.sdpa = F.scaled_dot_product_attention
        F.scaled_dot_product_attention = self
        self.handles = [
            self.denoiser.register_forward_pre_hook(lambda *a: setattr(self, "inside", True)),
            self.denoiser.register_forward_hook(lambda *a: setattr(self, "inside", False)),
        ]
        return self

    def __exit__(self, *exc):
        F.scaled_dot_product_attention = self.sdpa
        for h in self.handles:
            h.remove()


def _expected_blocks(family, ref, text_len):
    """The image→text block and the image self-attention block of one full reference probability matrix."""
    n = ref.shape[-2]
    if family == "sd3":
        image = slice(0, n - text_len)
        return ref[:, :, image, n - text_len :], ref[:, :, image, image]
    if family == "flux":
        image = slice(text_len, None)
        return ref[:, :, image, :text_len], ref[:, :, image, image]
    return ref, ref  # cross-attention (attn2) or self-attention (attn1) of a UNet/PixArt block


def _assert_calls_equal_reference(family: str, calls: list, probs: list, queries: list[int]) -> None:
    """Each captured call equals the softmax SDPA computed (image->text block, self-attention rows `queries`), and
    the calls carry the blocks the family's attention layout gives."""
    assert len(calls) == len(probs) and len(calls) > 0
    text_len = 24 if family == "sd3" else 12  # SD3 concatenates 12 CLIP and 12 T5 tokens
    for call, ref in zip(calls, probs):
        to_text, to_self = _expected_blocks(family, ref.float(), text_len)
        if call.image_to_text is not None:
            assert call.image_to_text.shape[-1] == text_len
            torch.testing.assert_close(call.image_to_text, to_text, rtol=1e-4, atol=1e-6)
        if call.self_attention is not None:
            torch.testing.assert_close(call.self_attention, to_self[:, :, queries], rtol=1e-4, atol=1e-6)
    kinds = {(c.image_to_text is not None, c.self_attention is not None) for c in calls}
    # joint attention gives both blocks in one call; UNet/PixArt split them over attn1 (self) and attn2 (cross)
    assert kinds == ({(True, True)} if family in ("sd3", "flux") else {(False, True), (True, False)})


def test_images_bit_identical_and_probabilities_equal_reference(family_pipe):
    family, pipe = family_pipe
    denoiser = _denoiser(pipe)
    before = _processors(denoiser)
    stock = pipe(PROMPT, **tiny_call_kwargs(family)).images
    calls = []
    with _SdpaSpy(denoiser) as spy, AttentionProbabilityCapture(denoiser, calls.append, self_attention_queries=[0, 5]):
        captured = pipe(PROMPT, **tiny_call_kwargs(family)).images
    np.testing.assert_array_equal(captured, stock)  # bit-identical
    assert _processors(denoiser) == before and not denoiser._forward_pre_hooks and not denoiser._forward_hooks
    _assert_calls_equal_reference(family, calls, spy.probs, queries=[0, 5])


def test_flux_both_stream_kinds_and_rotary():
    family, pipe = "flux", tiny_text_to_image_pipeline("flux")
    calls = []
    with AttentionProbabilityCapture(pipe.transformer, calls.append):
        pipe(PROMPT, **tiny_call_kwargs(family))
    assert [c.layer for c in calls[:2]] == ["transformer_blocks.0.attn", "single_transformer_blocks.0.attn"]
    # image rows sum to less than one over the text columns: the softmax runs over the whole [text, image] sequence
    sums = calls[1].image_to_text.sum(-1)
    assert bool((sums < 1).all()) and bool((sums > 0).all())


def test_cfg_rows_condition_selects_only_the_conditional_half(family_pipe):
    family, pipe = family_pipe
    if family == "flux":  # guidance-distilled: one call per step; true CFG runs a separate negative call
        extra = dict(true_cfg_scale=2.0, negative_prompt="a dog")
        cond = pipe.encode_prompt(prompt=PROMPT, prompt_2=None, max_sequence_length=12)[0]
    else:
        extra = dict(guidance_scale=5.0, negative_prompt="a dog")
        cond = _conditional_embeddings(pipe, family)
    everything, conditional = [], []
    with AttentionProbabilityCapture(_denoiser(pipe), everything.append):
        pipe(PROMPT, **tiny_call_kwargs(family, **extra))
    with AttentionProbabilityCapture(_denoiser(pipe), conditional.append, condition=cond):
        pipe(PROMPT, **tiny_call_kwargs(family, **extra))
    if family == "flux":
        assert len(everything) == 2 * len(conditional)  # the negative calls are skipped entirely
        assert all(c.rows.tolist() == [0] for c in conditional)
        torch.testing.assert_close(conditional[0].image_to_text, everything[0].image_to_text)
    else:
        assert len(everything) == len(conditional)
        assert all(c.rows.tolist() == [1] for c in conditional)  # diffusers concatenates [negative, positive]
        for full, cond_call in zip(everything, conditional):
            if full.image_to_text is not None:
                torch.testing.assert_close(cond_call.image_to_text, full.image_to_text[1:])
                assert not torch.allclose(full.image_to_text[0], full.image_to_text[1])


def test_sdpa_processors_q_k_are_read_where_sdpa_gets_them_not_rebuilt(family_pipe, monkeypatch):
    import diffusers_xai.capture.probability_capture as capture_module

    def rebuilt(*args, **kwargs):
        raise AssertionError("Q and K were rebuilt instead of read from the processor's attention call")

    monkeypatch.setattr(capture_module, "attention_query_key", rebuilt)
    family, pipe = family_pipe
    denoiser = _denoiser(pipe)
    stock = pipe(PROMPT, **tiny_call_kwargs(family)).images
    calls = []
    with _SdpaSpy(denoiser) as spy, AttentionProbabilityCapture(denoiser, calls.append, self_attention_queries=[1, 3]):
        captured = pipe(PROMPT, **tiny_call_kwargs(family)).images
    np.testing.assert_array_equal(captured, stock)
    _assert_calls_equal_reference(family, calls, spy.probs, queries=[1, 3])


def test_conditional_rows_are_matched_again_after_the_embeddings_change_in_place():
    pipe = tiny_text_to_image_pipeline("sd")
    cond, other = torch.randn(1, 12, 16), torch.randn(1, 12, 16)
    capture = AttentionProbabilityCapture(pipe.unet, condition=cond)
    context = torch.cat([other, cond])
    assert capture._conditional_rows(context, None).tolist() == [1]
    assert capture._conditional_rows(context, None).tolist() == [1]  # the cached match
    context[0], context[1] = cond[0], other[0]  # same tensor object, new contents
    assert capture._conditional_rows(context, None).tolist() == [0]
    assert capture._conditional_rows(torch.cat([other, other]), None) is None


def _conditional_embeddings(pipe, family):
    if family == "pixart":
        return pipe.encode_prompt(PROMPT, do_classifier_free_guidance=False, max_sequence_length=12)[0]
    kwargs = {"max_sequence_length": 12} if family == "sd3" else {}
    return pipe.encode_prompt(
        prompt=PROMPT,
        device="cpu",
        num_images_per_prompt=1,
        do_classifier_free_guidance=False,
        **({"prompt_2": None} if family in ("sdxl", "sd3") else {}),
        **({"prompt_3": None} if family == "sd3" else {}),
        **kwargs,
    )[0]


def test_processors_restored_after_an_exception(family_pipe):
    family, pipe = family_pipe
    denoiser = _denoiser(pipe)
    before = _processors(denoiser)

    def boom(call):
        raise RuntimeError("sink failed")

    with pytest.raises(RuntimeError, match="sink failed"):
        with AttentionProbabilityCapture(denoiser, boom):
            pipe(PROMPT, **tiny_call_kwargs(family))
    assert _processors(denoiser) == before
    assert not denoiser._forward_pre_hooks and not denoiser._forward_hooks


def test_unsupported_processor_is_named_and_nothing_is_installed():
    pipe = tiny_text_to_image_pipeline("sd")
    name = "mid_block.attentions.0.transformer_blocks.0.attn2"
    pipe.unet.get_submodule(name).set_processor(XFormersAttnProcessor())
    before = _processors(pipe.unet)
    with pytest.raises(UnsupportedAttentionProcessorError, match=rf"module '{name}' \(Attention\) with processor "):
        with AttentionProbabilityCapture(pipe.unet):
            pass
    assert _processors(pipe.unet) == before and not pipe.unet._forward_pre_hooks


def test_classic_processor_and_backend_setting_are_respected():
    pipe = tiny_text_to_image_pipeline("sd")
    pipe.unet.set_attn_processor(AttnProcessor())  # materialises softmax with attn.scale
    stock = pipe(PROMPT, **tiny_call_kwargs("sd")).images
    calls = []
    with AttentionProbabilityCapture(pipe.unet, calls.append):
        captured = pipe(PROMPT, **tiny_call_kwargs("sd")).images
    np.testing.assert_array_equal(captured, stock)
    torch.testing.assert_close(calls[0].image_to_text.sum(-1), torch.ones_like(calls[0].image_to_text[..., 0]))
    flux = tiny_text_to_image_pipeline("flux")
    attn = flux.transformer.get_submodule("transformer_blocks.0.attn")
    with AttentionProbabilityCapture(flux.transformer):
        attn.set_attention_backend("native")  # written on the installed wrapper, forwarded to the original
        assert attn.get_processor().original._attention_backend.value == "native"
    assert type(attn.get_processor()).__name__ == "FluxAttnProcessor"
    assert attn.get_processor()._attention_backend.value == "native"


@pytest.mark.parametrize("family", ["sd", "sd3", "flux"])
def test_fused_projections_follow_the_fused_processor(family):
    pipe = tiny_text_to_image_pipeline(family)
    denoiser = _denoiser(pipe)
    denoiser.fuse_qkv_projections()  # to_qkv / to_kv / to_added_qkv
    calls = []
    with _SdpaSpy(denoiser) as spy, AttentionProbabilityCapture(denoiser, calls.append):
        pipe(PROMPT, **tiny_call_kwargs(family))
    checked = 0
    for call, ref in zip([c for c in calls], [p for p in spy.probs if p.shape[-1] in (12, 24 + 64, 12 + 16)]):
        to_text, _ = _expected_blocks(family, ref.float(), 24 if family == "sd3" else 12)
        torch.testing.assert_close(call.image_to_text, to_text, rtol=1e-4, atol=1e-6)
        checked += 1
    assert checked == len(calls) > 0


def test_chunking_and_trace_budget(caplog):
    pipe = tiny_text_to_image_pipeline("sd")
    whole, chunked = [], []
    with AttentionProbabilityCapture(pipe.unet, whole.append):
        pipe(PROMPT, **tiny_call_kwargs("sd"))
    with AttentionProbabilityCapture(pipe.unet, chunked.append, max_chunk_bytes=1):  # one query per chunk
        pipe(PROMPT, **tiny_call_kwargs("sd"))
    for a, b in zip(whole, chunked):
        torch.testing.assert_close(a.image_to_text, b.image_to_text, rtol=1e-5, atol=1e-7)
    config = TraceConfig(max_bytes=8192, dtype=torch.float32)
    with (
        caplog.at_level(logging.WARNING),
        AttentionProbabilityCapture(pipe.unet, trace_config=config, num_steps=2) as cap,
    ):
        pipe(PROMPT, **tiny_call_kwargs("sd"))
    assert cap.trace.truncated and "max_bytes=8192" in caplog.text
    assert cap.trace.nbytes == 6144 + 1536  # [2, 64, 12] + [2, 16, 12] float32, the third map would overflow
    # the first stored map: heads averaged, [batch, image tokens, text tokens]
    first = cap.trace.steps[0].attentions["down_blocks.0.attentions.0.transformer_blocks.0.attn2"]
    torch.testing.assert_close(first, whole[0].image_to_text.mean(1))
    with pytest.raises(ValueError, match="Nothing to record"):
        AttentionProbabilityCapture(pipe.unet, image_to_text=False)
    with pytest.raises(ValueError, match="matches nothing"):
        AttentionProbabilityCapture(pipe.unet, layers=["nope.*"])


def test_dit_self_attention_for_chosen_queries_only():
    from diffusers import DiTTransformer2DModel

    torch.manual_seed(0)
    dit = DiTTransformer2DModel(
        num_attention_heads=2, attention_head_dim=8, in_channels=4, out_channels=8, num_layers=2, sample_size=8,
        patch_size=2, num_embeds_ada_norm=1000,
    ).eval()  # fmt: skip
    x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    args = dict(hidden_states=x, timestep=torch.tensor([10, 10]), class_labels=torch.tensor([1, 3]))
    with torch.no_grad():
        stock = dit(**args).sample
        calls = []
        with _SdpaSpy(dit) as spy, AttentionProbabilityCapture(dit, calls.append, self_attention_queries=[2, 7]):
            captured = dit(**args).sample
    torch.testing.assert_close(captured, stock, rtol=0, atol=0)
    assert [c.layer for c in calls] == ["transformer_blocks.0.attn1", "transformer_blocks.1.attn1"]
    for call, ref in zip(calls, spy.probs):  # class-conditional: no text, only the asked rows [b, heads, 2, 16]
        assert call.image_to_text is None and call.self_attention.shape == (2, 2, 2, 16)
        torch.testing.assert_close(call.self_attention, ref.float()[:, :, [2, 7]], rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="Nothing to record"):
        AttentionProbabilityCapture(dit, image_to_text=False)
