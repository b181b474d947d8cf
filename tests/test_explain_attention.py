"""Attention maps: probabilities vs a manual softmax, layout, trace vs recompute, DAAM on a tiny text-to-image UNet."""

import json

import pytest
import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler
from diffusers.models.attention_processor import Attention
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from diffusers_xai import TraceConfig, TraceRecorder, find_attention_modules
from diffusers_xai.capture import attention_probabilities
from diffusers_xai.explain import AttentionExplainer, attention_maps, probabilities_to_maps
from diffusers_xai.testing import tiny_conditional_unet, tiny_pipeline


def test_attention_probabilities_match_a_manual_softmax():
    torch.manual_seed(0)
    attn = Attention(query_dim=4, heads=2, dim_head=2, bias=False).eval()
    x = torch.randn(1, 3, 4)
    probs = attention_probabilities(attn, x)  # [B, heads, Q, K]
    q = (x @ attn.to_q.weight.T).view(1, 3, 2, 2).transpose(1, 2)
    k = (x @ attn.to_k.weight.T).view(1, 3, 2, 2).transpose(1, 2)
    manual = torch.softmax(q @ k.transpose(-1, -2) / 2**0.5, dim=-1)
    torch.testing.assert_close(probs, manual)


def test_probabilities_to_maps_layout():
    # 2x2 grid (Q = 4) in a 4x4 image: received attention = mean over queries, reshaped row-major
    probs = torch.tensor([[[0.7, 0.1, 0.1, 0.1], [0.1, 0.7, 0.1, 0.1], [0.4, 0.2, 0.3, 0.1], [0.2, 0.2, 0.2, 0.4]]])
    received = probabilities_to_maps(probs, "self", (4, 4))
    torch.testing.assert_close(received, torch.tensor([0.35, 0.3, 0.175, 0.175]).view(1, 1, 1, 2, 2))
    where = probabilities_to_maps(probs, "self", (4, 4), query=(3, 0))  # pixel (3, 0) is grid cell (1, 0) = query 2
    torch.testing.assert_close(where, torch.tensor([0.4, 0.2, 0.3, 0.1]).view(1, 1, 1, 2, 2))
    cross = probabilities_to_maps(probs[:, :, :2], "cross", (4, 4), token_indices=[1])  # 4 queries x 2 tokens
    torch.testing.assert_close(cross, torch.tensor([0.1, 0.7, 0.2, 0.2]).view(1, 1, 1, 2, 2))
    with pytest.raises(ValueError, match="not a downscaled 4x4 grid"):
        probabilities_to_maps(torch.rand(1, 3, 3), "self", (4, 4))


def _processors(model):
    return {n: type(m.get_processor()) for n, m in find_attention_modules(model).items()}


def test_self_attention_from_trace_equals_recomputed():
    pipe = tiny_pipeline()
    gen = torch.Generator().manual_seed(0)
    traced = pipe(
        batch_size=2,
        num_inference_steps=3,
        output_type="pt",
        generator=gen,
        trace=TraceConfig(attention=True, dtype=torch.float32, head_reduction="none"),
    )
    from_trace = attention_maps(traced.trace)
    assert from_trace.maps.shape == (3, 2, 1, 8, 8)
    assert len(from_trace.metadata["layers"]) == 4
    before = _processors(pipe.unet)
    explainer = AttentionExplainer(pipe)
    recomputed = explainer.with_model(pipe.unet).attribute(traced.trace, heads=None)  # forces a recompute
    assert _processors(pipe.unet) == before
    torch.testing.assert_close(recomputed.maps, from_trace.maps, rtol=1e-4, atol=1e-6)
    assert recomputed.metadata["per_layer"]["mid_block.attentions.0"].shape == (3, 2, 2, 1, 4, 4)  # 2 heads kept
    with pytest.raises(ValueError, match="no cross-attention layers"):
        AttentionExplainer(pipe, kind="cross")
    with pytest.raises(ValueError, match="matches nothing"):
        AttentionExplainer(pipe, layers="mid_block.attn9")


def _tiny_text_stack(tmp_path):
    """An offline CLIP tokenizer over a 6-word vocabulary and a 1-layer CLIP text encoder with hidden size 8."""
    words = ["a", "cat", "dog", "red", "photo", "of"]
    vocab, merges = {}, []
    for c in sorted(set("".join(words))):
        vocab[c], vocab[c + "</w>"] = len(vocab), len(vocab) + 1
    for w in words:
        cur = w[0]
        for i, c in enumerate(w[1:], 1):
            nxt = c + ("</w>" if i == len(w) - 1 else "")
            merges.append(f"{cur} {nxt}")
            cur += nxt
            vocab.setdefault(cur, len(vocab))
    for special in ("<|startoftext|>", "<|endoftext|>"):
        vocab[special] = len(vocab)
    (tmp_path / "vocab.json").write_text(json.dumps(vocab))
    (tmp_path / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    tokenizer = CLIPTokenizer(str(tmp_path / "vocab.json"), str(tmp_path / "merges.txt"), model_max_length=8)
    config = CLIPTextConfig(
        vocab_size=len(vocab),
        hidden_size=8,
        intermediate_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        max_position_embeddings=8,
        bos_token_id=vocab["<|startoftext|>"],
        eos_token_id=vocab["<|endoftext|>"],
        pad_token_id=vocab["<|endoftext|>"],
    )
    torch.manual_seed(0)
    return tokenizer, CLIPTextModel(config).eval()


def test_daam_per_token_maps_on_a_tiny_text_to_image_unet(tmp_path):
    tokenizer, text_encoder = _tiny_text_stack(tmp_path)
    ids = tokenizer(["a red cat"], padding="max_length", max_length=8, return_tensors="pt").input_ids
    tokens = tokenizer.convert_ids_to_tokens(ids[0])
    assert tokens[:5] == ["<|startoftext|>", "a</w>", "red</w>", "cat</w>", "<|endoftext|>"]
    with torch.no_grad():
        text = text_encoder(ids).last_hidden_state  # [1, 8, 8]
    unet = tiny_conditional_unet()
    scheduler = DDIMScheduler(num_train_timesteps=100)
    scheduler.set_timesteps(3)
    latents = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    config = TraceConfig(attention=True, dtype=torch.float32, head_reduction="none")
    with TraceRecorder(unet, config, num_steps=3) as recorder, torch.no_grad():
        for t in scheduler.timesteps:
            eps = unet(latents, t, encoder_hidden_states=text).sample
            latents = scheduler.step(eps, t, latents).prev_sample
    trace = recorder.trace
    before = _processors(unet)
    daam = AttentionExplainer(unet, kind="cross", scheduler=scheduler)
    res = daam.attribute(trace, tokens=tokens)
    assert res.maps.shape == (3, 1, 8, 8, 8)  # [K, B, tokens, H, W]
    assert res.metadata["aggregated"].shape == (1, 8, 8, 8)
    assert all(n.endswith("attn2") for n in res.metadata["layers"]) and len(res.metadata["layers"]) == 4
    # cross-attention is a softmax over tokens, and bilinear upsampling preserves a constant sum
    torch.testing.assert_close(res.maps.sum(dim=2), torch.ones(3, 1, 8, 8))
    # one layer, heads averaged, token "cat": the recorded probabilities, reshaped and upsampled
    layer = "mid_block.attentions.0.transformer_blocks.0.attn2"
    one = AttentionExplainer(unet, layers=layer, kind="cross").attribute(trace, token_indices=[3], tokens=tokens)
    assert one.metadata["tokens"] == ["cat</w>"]
    p = trace.steps[1].attentions[layer].mean(dim=1)[0, :, 3].view(1, 1, 4, 4)
    torch.testing.assert_close(one.maps[1, 0, 0], F.interpolate(p, size=(8, 8), mode="bilinear")[0, 0])
    # recomputing from x_t with the text embeddings gives the recorded maps
    x_t = trace.steps[1].latents
    again = daam.attribute(x_t, timesteps=[int(trace.steps[1].timestep)], encoder_hidden_states=text)
    torch.testing.assert_close(again.maps[0], res.maps[1], rtol=1e-4, atol=1e-6)
    assert _processors(unet) == before
    with pytest.raises(ValueError, match="need `encoder_hidden_states=`"):
        daam.attribute(x_t, timesteps=[int(trace.steps[1].timestep)])


def test_processors_restored_after_an_exception():
    pipe = tiny_pipeline()
    before = _processors(pipe.unet)
    explainer = AttentionExplainer(pipe)
    with pytest.raises(ValueError):
        explainer.attribute(torch.randn(1, 1, 8, 8), timesteps=[0], class_labels=torch.tensor([1, 2]))
    with pytest.raises(RuntimeError):
        explainer.attribute(torch.randn(1, 3, 8, 8), timesteps=[0])  # wrong channel count fails inside the UNet
    assert _processors(pipe.unet) == before
    assert sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in pipe.unet.modules()) == 0
