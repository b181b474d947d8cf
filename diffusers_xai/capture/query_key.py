r"""Q and K of one diffusers attention call, exactly as its processor builds them, and chunked softmax(QKᵀ/√d).

diffusers' processors hand Q, K and V to `F.scaled_dot_product_attention` or to the attention dispatcher, whose
backends never return the attention weights. To read them we rebuild Q and K the way each supported processor does
(fused `to_qkv`/`to_kv`/`to_added_qkv` projections, q/k norms, Flux's rotary embeddings, the joint text+image
sequence of SD3 and Flux) and compute the softmax on the side, a chunk of queries at a time so memory stays bounded.
For the SDPA processors (`SEEN_LAYOUTS`: SD3's and Flux's joint ones, `(Fused)AttnProcessor2_0`) capture does not
rebuild them: it reads the very Q and K handed to the attention function (`capture.attention_spy`) and
[`seen_query_key`] lays them out; the rebuild is the fallback. This is written by hand because no diffusers or torch
API exposes the probabilities of these processors.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from diffusers.models.attention_processor import (
    AttnProcessor,
    AttnProcessor2_0,
    FusedAttnProcessor2_0,
    FusedJointAttnProcessor2_0,
    JointAttnProcessor2_0,
)
from diffusers.models.embeddings import apply_rotary_emb
from diffusers.models.transformers.transformer_flux import FluxAttnProcessor

from .processor import apply_qk_norms, prepare_attention_inputs

__all__ = [
    "SUPPORTED_PROCESSORS",
    "QueryKey",
    "SEEN_LAYOUTS",
    "UnsupportedAttentionProcessorError",
    "attention_query_key",
    "check_processor_supported",
    "chunked_attention_probabilities",
    "seen_query_key",
]


class UnsupportedAttentionProcessorError(ValueError):
    """The attention probabilities of a module cannot be recomputed for its processor."""


@dataclass
class QueryKey:
    r"""
    Q and K of one attention call, per head, with the token layout of the joint sequence.

    Args:
        query (`torch.Tensor`): `[B, heads, N, d]`.
        key (`torch.Tensor`): `[B, heads, M, d]`.
        scale (`float`): the softmax temperature the processor uses ($1/\sqrt{d}$ for SDPA-based processors).
        mask (`torch.Tensor`, *optional*): additive (float) or keep (bool) mask broadcastable to `[B, heads, N, M]`.
        image_queries (`slice`): positions of the image tokens among the queries.
        image_keys (`slice`): positions of the image tokens among the keys.
        text_keys (`slice`, *optional*): positions of the text tokens among the keys (`None`: no text in this call).
    """

    query: torch.Tensor
    key: torch.Tensor
    scale: float
    mask: torch.Tensor | None
    image_queries: slice
    image_keys: slice
    text_keys: slice | None


def _heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    return x.view(x.shape[0], -1, heads, x.shape[-1] // heads).transpose(1, 2)


def _project_query_key(attn, hidden_states: torch.Tensor, fused: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Q and K of `hidden_states` through the fused `to_qkv` projection, or through `to_q` and `to_k`."""
    if fused:
        query, key, _ = attn.to_qkv(hidden_states).chunk(3, dim=-1)
        return query, key
    return attn.to_q(hidden_states), attn.to_k(hidden_states)


def _project_added_key(attn, encoder_hidden_states: torch.Tensor, fused: bool) -> torch.Tensor:
    """K of the context (text) tokens of a joint attention: through the fused `to_added_qkv`, or `add_k_proj`."""
    if fused:
        return attn.to_added_qkv(encoder_hidden_states).chunk(3, dim=-1)[1]
    return attn.add_k_proj(encoder_hidden_states)


def _attn_qk(attn, processor, hidden_states, encoder_hidden_states, attention_mask, temb=None, **_) -> QueryKey:
    """`AttnProcessor`, `AttnProcessor2_0`, `FusedAttnProcessor2_0` (UNet2DConditionModel, PixArt, DiT)."""
    hidden_states, attention_mask = prepare_attention_inputs(
        attn, hidden_states, encoder_hidden_states, attention_mask, temb
    )
    is_cross = encoder_hidden_states is not None
    fused = isinstance(processor, FusedAttnProcessor2_0)
    if fused and not is_cross:
        query, key, _ = attn.to_qkv(hidden_states).chunk(3, dim=-1)
    else:
        query = attn.to_q(hidden_states)
        context = hidden_states if not is_cross else encoder_hidden_states
        if is_cross and attn.norm_cross:
            context = attn.norm_encoder_hidden_states(context)
        key = attn.to_kv(context).chunk(2, dim=-1)[0] if fused else attn.to_k(context)
    query, key = apply_qk_norms(attn, _heads(query, attn.heads), _heads(key, attn.heads))
    # AttnProcessor multiplies by attn.scale; the SDPA processors leave SDPA's default 1/sqrt(d) in place.
    scale = attn.scale if type(processor) is AttnProcessor else 1.0 / math.sqrt(query.shape[-1])
    everything = slice(0, None)
    return QueryKey(
        query,
        key,
        scale,
        attention_mask,
        everything,
        slice(0, 0) if is_cross else everything,
        everything if is_cross else None,
    )


def _joint_qk(attn, processor, hidden_states, encoder_hidden_states, attention_mask=None, **_) -> QueryKey:
    """`JointAttnProcessor2_0`/`FusedJointAttnProcessor2_0` (SD3): the sequence is [image tokens, text tokens].

    Only image queries are built (text queries are never read), keys over the whole joint sequence.
    """
    fused = isinstance(processor, FusedJointAttnProcessor2_0)
    query, key = _project_query_key(attn, hidden_states, fused)
    query, key = _heads(query, attn.heads), _heads(key, attn.heads)
    # diffusers 0.42's FusedJointAttnProcessor2_0 applies no q/k norms (the unfused one does): mirror what it computes
    if not fused:
        query, key = apply_qk_norms(attn, query, key)
    n, everything = query.shape[2], slice(0, None)
    if encoder_hidden_states is None:
        return QueryKey(query, key, 1.0 / math.sqrt(query.shape[-1]), None, everything, everything, None)
    ctx_k = _heads(_project_added_key(attn, encoder_hidden_states, fused), attn.heads)
    if not fused and attn.norm_added_k is not None:
        ctx_k = attn.norm_added_k(ctx_k)
    key = torch.cat([key, ctx_k], dim=2)
    return QueryKey(query, key, 1.0 / math.sqrt(query.shape[-1]), None, everything, slice(0, n), slice(n, None))


def _flux_text_length(context: torch.Tensor | None, text_length: int | None) -> int:
    """The text tokens of a Flux joint sequence: the context's length in a double-stream call; a single-stream call
    gets the sequence already joined, so `text_length` must say it."""
    if context is not None:
        return context.shape[1]
    if text_length is None:
        raise UnsupportedAttentionProcessorError(
            "A Flux single-stream attention call needs the text length of the joint sequence; capture it through "
            "the transformer's forward (AttentionProbabilityCapture does) rather than calling the module alone."
        )
    return text_length


def _flux_qk(
    attn, processor, hidden_states, encoder_hidden_states, attention_mask, image_rotary_emb=None, text_length=None, **_
):
    """`FluxAttnProcessor`: double-stream blocks see [text, image]; single-stream blocks get it pre-concatenated.

    Only image queries are built (with their rows of the rotary embedding), keys over the whole [text, image] sequence.
    """
    double = attn.added_kv_proj_dim is not None and encoder_hidden_states is not None
    text_length = _flux_text_length(encoder_hidden_states if double else None, text_length)
    query, key = _project_query_key(attn, hidden_states, attn.fused_projections)
    if not double:  # single stream: the sequence already is [text, image]; keep the image queries
        query = query[:, text_length:]
    query = attn.norm_q(query.unflatten(-1, (-1, attn.head_dim)))
    key = attn.norm_k(key.unflatten(-1, (-1, attn.head_dim)))
    if double:
        ctx_k = _project_added_key(attn, encoder_hidden_states, attn.fused_projections)
        key = torch.cat([attn.norm_added_k(ctx_k.unflatten(-1, (-1, attn.head_dim))), key], dim=1)
    if image_rotary_emb is not None:
        image_rows = tuple(f[text_length:] for f in image_rotary_emb)
        query = apply_rotary_emb(query, image_rows, sequence_dim=1)
        key = apply_rotary_emb(key, image_rotary_emb, sequence_dim=1)
    query, key = query.transpose(1, 2), key.transpose(1, 2)  # the dispatcher's native layout is [B, S, H, d]
    if attention_mask is not None and attention_mask.ndim == 4 and attention_mask.shape[2] == key.shape[2]:
        attention_mask = attention_mask[:, :, text_length:]
    image = slice(text_length, None)
    return QueryKey(
        query, key, 1.0 / math.sqrt(query.shape[-1]), attention_mask, slice(0, None), image, slice(0, text_length)
    )


SUPPORTED_PROCESSORS: dict[type, Callable[..., QueryKey]] = {
    AttnProcessor: _attn_qk,
    AttnProcessor2_0: _attn_qk,
    FusedAttnProcessor2_0: _attn_qk,
    JointAttnProcessor2_0: _joint_qk,
    FusedJointAttnProcessor2_0: _joint_qk,
    FluxAttnProcessor: _flux_qk,
}


def _attn_seen(seen, context, text_length) -> QueryKey:
    """`AttnProcessor2_0`/`FusedAttnProcessor2_0`: SDPA gets image queries and text (cross) or image (self) keys."""
    everything = slice(0, None)
    if context is None:
        return QueryKey(seen.query, seen.key, _scale(seen), seen.mask, everything, everything, None)
    return QueryKey(seen.query, seen.key, _scale(seen), seen.mask, everything, slice(0, 0), everything)


def _joint_seen(seen, context, text_length) -> QueryKey:
    """SD3's joint processors: SDPA gets `[B, heads, image + text, d]`, image tokens first."""
    query, key, everything = seen.query, seen.key, slice(0, None)
    if context is None:  # an image-only (dual-attention) call
        return QueryKey(query, key, _scale(seen), seen.mask, everything, everything, None)
    n = query.shape[2] - context.shape[1]
    return QueryKey(query[:, :, :n], key, _scale(seen), seen.mask, everything, slice(0, n), slice(n, None))


def _flux_seen(seen, context, text_length) -> QueryKey:
    """`FluxAttnProcessor`: the dispatcher gets `[B, text + image, heads, d]` (rotary embeddings applied)."""
    text_length = _flux_text_length(context, text_length)
    query, key, mask = seen.query[:, text_length:].transpose(1, 2), seen.key.transpose(1, 2), seen.mask
    if mask is not None and mask.ndim == 4 and mask.shape[2] == key.shape[2]:
        mask = mask[:, :, text_length:]
    image = slice(text_length, None)
    return QueryKey(query, key, _scale(seen), mask, slice(0, None), image, slice(0, text_length))


def _scale(seen) -> float:
    return seen.scale if seen.scale is not None else 1.0 / math.sqrt(seen.query.shape[-1])


# processors whose Q and K are read where they reach the attention function (capture.attention_spy), by layout
SEEN_LAYOUTS: dict[type, Callable[..., QueryKey]] = {
    AttnProcessor2_0: _attn_seen,
    FusedAttnProcessor2_0: _attn_seen,
    JointAttnProcessor2_0: _joint_seen,
    FusedJointAttnProcessor2_0: _joint_seen,
    FluxAttnProcessor: _flux_seen,
}


def seen_query_key(processor, seen, context: torch.Tensor | None, text_length: int | None, rows) -> QueryKey:
    r"""
    [`QueryKey`] of the batch `rows` from the query and key a processor handed to SDPA / the dispatcher.

    Args:
        processor: the original processor (one of `SEEN_LAYOUTS`).
        seen ([`SeenAttention`]): the noted call.
        context (`torch.Tensor`, *optional*): the processor's `encoder_hidden_states`.
        text_length (`int`, *optional*): text tokens of a Flux single-stream sequence.
        rows (`torch.Tensor`): the batch rows to keep.
    """
    qk = SEEN_LAYOUTS[type(processor)](seen, context, text_length)
    rows = rows.to(qk.query.device)
    keep_all = len(rows) == qk.query.shape[0] and bool((rows == torch.arange(len(rows), device=rows.device)).all())
    if keep_all:
        return qk
    mask = qk.mask if qk.mask is None or qk.mask.shape[0] == 1 else qk.mask[rows]
    return QueryKey(qk.query[rows], qk.key[rows], qk.scale, mask, qk.image_queries, qk.image_keys, qk.text_keys)


def check_processor_supported(name: str, module: torch.nn.Module, processor) -> None:
    """Raise [`UnsupportedAttentionProcessorError`] naming the module and processor if we cannot recompute it."""
    if type(processor) not in SUPPORTED_PROCESSORS:
        supported = ", ".join(sorted(c.__name__ for c in SUPPORTED_PROCESSORS))
        raise UnsupportedAttentionProcessorError(
            f"Cannot recompute the attention probabilities of module {name!r} ({type(module).__name__}) with "
            f"processor {type(processor).__name__}: supported processors are {supported}. Restore the default with "
            "`model.set_default_attn_processor()` or leave this module out of `layers=`."
        )
    if getattr(processor, "_parallel_config", None) is not None:
        raise UnsupportedAttentionProcessorError(
            f"Module {name!r} runs context-parallel attention (processor {type(processor).__name__} has a "
            "`_parallel_config`): its sequence is sharded, so probabilities cannot be recomputed on one device."
        )


def attention_query_key(
    attn, processor, hidden_states, encoder_hidden_states=None, attention_mask=None, **kwargs
) -> QueryKey:
    r"""
    Rebuild Q and K of one attention call the way `processor` does (see [`QueryKey`]).

    Args:
        attn: the diffusers `Attention` or `FluxAttention` module.
        processor: its (original) processor; its type selects the recipe.
        hidden_states, encoder_hidden_states, attention_mask: the processor's inputs.
        kwargs: `temb`, `image_rotary_emb`, and `text_length` (the text tokens in a Flux single-stream sequence).
    """
    recipe = SUPPORTED_PROCESSORS.get(type(processor))
    if recipe is None:
        check_processor_supported(type(attn).__name__, attn, processor)
    return recipe(attn, processor, hidden_states, encoder_hidden_states, attention_mask, **kwargs)


def chunked_attention_probabilities(
    qk: QueryKey,
    queries: Literal["image"] | torch.Tensor = "image",
    keys: Literal["text", "image", "all"] = "text",
    max_chunk_bytes: int = 2**26,
) -> torch.Tensor:
    r"""
    $P = \mathrm{softmax}(QK^\top \cdot \text{scale} + M)$ over *all* keys, restricted to the chosen query rows and key
    columns, `[B, heads, n_q, n_k]` in float32.

    The softmax is normalised over the whole joint sequence (as the layer does), then sliced: for joint attention the
    image→text block does not sum to one. Queries are processed in chunks so the `[B, heads, chunk, M]` score tensor
    stays under `max_chunk_bytes`.

    Args:
        queries (`"image"` or `torch.Tensor`): every image query, or indices *among the image tokens*
            (self-attention of chosen pixels).
        keys (`"text"`, `"image"` or `"all"`): which key columns to keep.
    """
    q, k = qk.query, qk.key.float()
    b, heads, n, d = q.shape
    if keys == "text" and qk.text_keys is None:
        raise ValueError("This attention call has no text keys (self-attention); ask for keys='image' or 'all'.")
    cols = {"text": qk.text_keys, "image": qk.image_keys, "all": slice(0, None)}[keys]
    if isinstance(queries, torch.Tensor):
        q = q[:, :, qk.image_queries][:, :, queries.to(q.device)]
    elif queries == "image":
        q = q[:, :, qk.image_queries]
    m, n_q = k.shape[2], q.shape[2]
    mask = qk.mask
    if mask is not None and mask.shape[2] != 1:
        mask = mask.expand(b, heads, n, m)[:, :, qk.image_queries]
        mask = mask[:, :, queries.to(q.device)] if isinstance(queries, torch.Tensor) else mask
    out = torch.empty(b, heads, n_q, len(range(m)[cols]), dtype=torch.float32, device=q.device)
    chunk = max(1, max_chunk_bytes // max(1, b * heads * m * 4))
    k_t = k.transpose(-1, -2)
    for start in range(0, n_q, chunk):
        stop = min(start + chunk, n_q)
        scores = (q[:, :, start:stop].float() * qk.scale) @ k_t  # scaling the queries: one pass fewer over scores
        if mask is not None:
            part = mask if mask.shape[2] == 1 else mask[:, :, start:stop]
            scores = scores.masked_fill(~part, float("-inf")) if part.dtype == torch.bool else scores + part.float()
        out[:, :, start:stop] = scores.softmax(dim=-1)[..., cols]
    return out
