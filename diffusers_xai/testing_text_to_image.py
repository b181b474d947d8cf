"""Tiny seeded stock text-to-image pipelines (SD, SDXL, SD3, Flux, PixArt) built from config in code; no downloads.

As diffusers' own `get_dummy_components()`: every denoiser, VAE and text encoder is a few-channel model from its
config, and the tokenizers are built in memory (a CLIP BPE over a tiny vocabulary, a T5 Unigram model over a few
pieces). Used by the tests, the benchmark and the README examples.
"""

from __future__ import annotations

from typing import Literal

import torch

__all__ = [
    "TEXT_TO_IMAGE_FAMILIES",
    "tiny_call_kwargs",
    "tiny_clip_tokenizer",
    "tiny_t5_tokenizer",
    "tiny_text_to_image_pipeline",
]

TEXT_TO_IMAGE_FAMILIES = ("sd", "sdxl", "sd3", "flux", "pixart")
_WORDS = ("a", "photo", "of", "red", "blue", "cat", "dog", "on", "the", "grass", "kit", "ten", "and")
_MAX_TOKENS = 12
# Sizes every tiny transformer shares: two heads of eight; SD3 and PixArt also read the tiny VAE's 4-channel 8 x 8
# latents with two blocks.
_HEADS = dict(attention_head_dim=8, num_attention_heads=2)
_LATENT_DIT = dict(sample_size=8, in_channels=4, num_layers=2, **_HEADS)


def tiny_clip_tokenizer(max_length: int = _MAX_TOKENS):
    """A CLIP BPE tokenizer over a 13-word vocabulary; "kitten" splits into the sub-words "kit" + "ten</w>"."""
    from transformers import CLIPTokenizer

    vocab, merges = {"<|startoftext|>": 0, "<|endoftext|>": 1}, []
    for c in sorted(set("".join(_WORDS))):
        vocab.setdefault(c, len(vocab))
        vocab.setdefault(c + "</w>", len(vocab))
    for w in _WORDS:
        cur = w[0]
        for i, c in enumerate(w[1:], 1):
            nxt = c + ("</w>" if i == len(w) - 1 else "")
            merges.append((cur, nxt))
            cur += nxt
            vocab.setdefault(cur, len(vocab))
        vocab.setdefault(w + "</w>", len(vocab))
        if len(w) == 1:
            vocab.setdefault(w + "</w>", len(vocab))
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=max_length)


def tiny_t5_tokenizer(max_length: int = _MAX_TOKENS):
    """A T5 (SentencePiece-Unigram) tokenizer over the same words; "kitten" splits into "▁kit" + "ten"."""
    from transformers import T5Tokenizer

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -5.0)]
    pieces += [(f"▁{w}", -1.0) for w in _WORDS if w not in ("ten",)] + [("ten", -1.0)]
    pieces += [(c, -8.0) for c in sorted(set("".join(_WORDS)))]
    return T5Tokenizer(vocab=pieces, extra_ids=0, model_max_length=max_length)


def _clip_text_encoder(tokenizer, seed: int, with_projection: bool = False, hidden_size: int = 16):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(seed)
    config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=tokenizer.model_max_length,
        projection_dim=hidden_size,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
    )
    cls = CLIPTextModelWithProjection if with_projection else CLIPTextModel
    return cls(config).eval()


def _t5_text_encoder(tokenizer, seed: int, d_model: int = 16):
    from transformers import T5Config, T5EncoderModel

    torch.manual_seed(seed)
    config = T5Config(
        vocab_size=len(tokenizer),
        d_model=d_model,
        d_kv=8,
        d_ff=2 * d_model,
        num_layers=1,
        num_heads=2,
        relative_attention_num_buckets=8,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
    )
    return T5EncoderModel(config).eval()


def _vae(seed: int, latent_channels: int = 4, **kwargs):
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    return AutoencoderKL(
        block_out_channels=(4, 8),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        latent_channels=latent_channels,
        norm_num_groups=4,
        sample_size=16,
        **kwargs,
    ).eval()


def _sd(seed: int, xl: bool):
    from diffusers import DDIMScheduler, StableDiffusionPipeline, StableDiffusionXLPipeline

    from .testing import tiny_conditional_unet

    tokenizer = tiny_clip_tokenizer()
    text_encoder = _clip_text_encoder(tokenizer, seed + 1)
    extra = {}
    if xl:
        extra = dict(
            addition_embed_type="text_time",
            addition_time_embed_dim=4,
            projection_class_embeddings_input_dim=6 * 4 + 16,
            use_linear_projection=True,
            transformer_layers_per_block=(1, 2),
        )
    unet = tiny_conditional_unet(
        seed,
        cross_attention_dim=32 if xl else 16,
        block_out_channels=(8, 16),
        attention_head_dim=4,
        cross_attention_blocks=(True, True),
        **extra,
    )
    scheduler = DDIMScheduler(
        num_train_timesteps=1000,
        beta_schedule="scaled_linear",
        beta_start=0.00085,
        beta_end=0.012,
        clip_sample=False,
        steps_offset=1,
    )
    components = dict(
        vae=_vae(seed + 2), text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler
    )
    if xl:
        return StableDiffusionXLPipeline(
            **components,
            text_encoder_2=_clip_text_encoder(tokenizer, seed + 3, with_projection=True),
            tokenizer_2=tiny_clip_tokenizer(),
            force_zeros_for_empty_prompt=False,
        )
    return StableDiffusionPipeline(
        **components, safety_checker=None, feature_extractor=None, requires_safety_checker=False
    )


def _flow_pipeline(pipeline_cls, transformer, scheduler, seed: int, encoders: list[tuple]):
    """SD3 and Flux: a flow-matching transformer, the VAE with SD3's latent shift and scale, and the text encoders with
    their tokenizers in diffusers' numbering (`text_encoder`, `text_encoder_2`, ...)."""
    components = {}
    for i, (encoder, tokenizer) in enumerate(encoders, 1):
        suffix = "" if i == 1 else f"_{i}"
        components[f"text_encoder{suffix}"], components[f"tokenizer{suffix}"] = encoder, tokenizer
    return pipeline_cls(
        transformer=transformer,
        scheduler=scheduler,
        vae=_vae(seed + 2, shift_factor=0.0609, scaling_factor=1.5035),
        **components,
    )


def _sd3(seed: int):
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline

    torch.manual_seed(seed)
    transformer = SD3Transformer2DModel(
        **_LATENT_DIT,
        patch_size=1,
        caption_projection_dim=16,
        joint_attention_dim=32,
        pooled_projection_dim=32,
        out_channels=4,
        qk_norm="rms_norm",
    ).eval()
    clip, t5 = tiny_clip_tokenizer(), tiny_t5_tokenizer()
    encoders = [  # two CLIP text encoders with projection, then T5
        (_clip_text_encoder(clip, seed + 1, with_projection=True), clip),
        (_clip_text_encoder(clip, seed + 3, with_projection=True), tiny_clip_tokenizer()),
        (_t5_text_encoder(t5, seed + 4, d_model=32), t5),
    ]
    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0)
    return _flow_pipeline(StableDiffusion3Pipeline, transformer, scheduler, seed, encoders)


def _flux(seed: int):
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel

    torch.manual_seed(seed)
    transformer = FluxTransformer2DModel(
        patch_size=1,
        in_channels=16,
        num_layers=1,
        num_single_layers=1,
        **_HEADS,
        joint_attention_dim=16,
        pooled_projection_dim=16,
        axes_dims_rope=(2, 2, 4),
    ).eval()
    clip, t5 = tiny_clip_tokenizer(), tiny_t5_tokenizer()
    encoders = [(_clip_text_encoder(clip, seed + 1), clip), (_t5_text_encoder(t5, seed + 4, d_model=16), t5)]
    return _flow_pipeline(FluxPipeline, transformer, FlowMatchEulerDiscreteScheduler(), seed, encoders)


def _pixart(seed: int):
    from diffusers import DDIMScheduler, PixArtAlphaPipeline, PixArtTransformer2DModel

    torch.manual_seed(seed)
    transformer = PixArtTransformer2DModel(
        **_LATENT_DIT,
        patch_size=2,
        caption_channels=16,
        cross_attention_dim=16,
        out_channels=8,
        attention_bias=True,
        activation_fn="gelu-approximate",
        num_embeds_ada_norm=1000,
        norm_type="ada_norm_single",
        norm_elementwise_affine=False,
        norm_eps=1e-6,
    ).eval()
    t5_tokenizer = tiny_t5_tokenizer()
    return PixArtAlphaPipeline(
        tokenizer=t5_tokenizer,
        text_encoder=_t5_text_encoder(t5_tokenizer, seed + 4, d_model=16),
        vae=_vae(seed + 2),
        transformer=transformer,
        scheduler=DDIMScheduler(steps_offset=1),
    )


def tiny_text_to_image_pipeline(family: Literal["sd", "sdxl", "sd3", "flux", "pixart"], seed: int = 0):
    r"""
    A stock diffusers text-to-image pipeline of the given family with tiny seeded components (16×16 images).

    Args:
        family (`"sd"`, `"sdxl"`, `"sd3"`, `"flux"` or `"pixart"`): [`StableDiffusionPipeline`],
            [`StableDiffusionXLPipeline`], [`StableDiffusion3Pipeline`], [`FluxPipeline`] or [`PixArtAlphaPipeline`].
        seed (`int`, *optional*, defaults to 0): seeds every component.

    Example:

    ```py
    >>> pipe = tiny_text_to_image_pipeline("flux")
    >>> pipe("a red cat", num_inference_steps=2, height=16, width=16, max_sequence_length=12).images[0].size
    (16, 16)
    ```
    """
    builders = {
        "sd": lambda: _sd(seed, xl=False),
        "sdxl": lambda: _sd(seed, xl=True),
        "sd3": lambda: _sd3(seed),
        "flux": lambda: _flux(seed),
        "pixart": lambda: _pixart(seed),
    }
    if family not in builders:
        raise ValueError(f"Unknown text-to-image family {family!r}; choose one of {TEXT_TO_IMAGE_FAMILIES}.")
    pipe = builders[family]()
    pipe.set_progress_bar_config(disable=True)
    return pipe


def tiny_call_kwargs(family: str, num_inference_steps: int = 2, seed: int = 0, **overrides) -> dict:
    """Keyword arguments of a 16×16, `num_inference_steps`-step call of [`tiny_text_to_image_pipeline`]`(family)`."""
    kwargs = dict(
        num_inference_steps=num_inference_steps,
        height=16,
        width=16,
        output_type="np",
        generator=torch.Generator().manual_seed(seed),
    )
    if family in ("sd3", "flux", "pixart"):
        kwargs["max_sequence_length"] = _MAX_TOKENS
    if family == "pixart":
        kwargs["use_resolution_binning"] = False  # the tiny transformer has no aspect-ratio bins
    kwargs.update(overrides)
    return kwargs
