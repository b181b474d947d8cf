"""An attention processor that records attention probabilities without changing the layer's output."""

from __future__ import annotations

from collections.abc import Callable

import torch
from diffusers.models.attention_processor import Attention

__all__ = ["CapturingAttnProcessor", "attention_probabilities", "find_attention_modules", "restore_processors"]


def find_attention_modules(model: torch.nn.Module) -> dict[str, Attention]:
    """All diffusers `Attention` modules of `model`, by dotted name.

    `UNet2DModel` has no `attn_processors`/`set_attn_processor` in diffusers 0.42, so we walk `named_modules()`
    and use each module's own `get_processor`/`set_processor`, which works for every diffusers UNet.
    """
    return {name: m for name, m in model.named_modules() if isinstance(m, Attention)}


def prepare_attention_inputs(
    attn: Attention,
    hidden_states: torch.Tensor,
    encoder_hidden_states: torch.Tensor | None,
    attention_mask: torch.Tensor | None,
    temb: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """
    The input preparation of diffusers' `AttnProcessor2_0` before its projections: spatial norm, 4-D → token layout,
    the attention mask as `[B, heads, Q, K]`, group norm. Returns `(hidden_states, attention_mask)`.
    """
    if attn.spatial_norm is not None:
        hidden_states = attn.spatial_norm(hidden_states, temb)
    if hidden_states.ndim == 4:
        b, c, h, w = hidden_states.shape
        hidden_states = hidden_states.view(b, c, h * w).transpose(1, 2)
    batch_size, sequence_length, _ = (
        hidden_states.shape if encoder_hidden_states is None else encoder_hidden_states.shape
    )
    if attention_mask is not None:
        attention_mask = attn.prepare_attention_mask(attention_mask, sequence_length, batch_size)
        attention_mask = attention_mask.view(batch_size, attn.heads, -1, attention_mask.shape[-1])
    if attn.group_norm is not None:
        hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
    return hidden_states, attention_mask


def apply_qk_norms(attn: Attention, query: torch.Tensor, key: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The q/k norms of diffusers' attention processors (`attn.norm_q`/`attn.norm_k` where set) on per-head Q, K."""
    if attn.norm_q is not None:
        query = attn.norm_q(query)
    if attn.norm_k is not None:
        key = attn.norm_k(key)
    return query, key


def attention_probabilities(
    attn: Attention,
    hidden_states: torch.Tensor,
    encoder_hidden_states: torch.Tensor | None = None,
    attention_mask: torch.Tensor | None = None,
    temb: torch.Tensor | None = None,
) -> torch.Tensor:
    r"""
    $\mathrm{softmax}(QK^\top \cdot \text{scale} + M)$ of one diffusers `Attention` call, `[B, heads, Q, K]`,
    in float32.

    Repeats the input preparation of diffusers' `AttnProcessor2_0` (spatial norm, 4-D → token layout, group
    norm, cross-attention norm, q/k norms) so the probabilities are those the layer actually uses. Written by
    hand because `F.scaled_dot_product_attention` (the default processor) never materialises them.
    """
    hidden_states, attention_mask = prepare_attention_inputs(
        attn, hidden_states, encoder_hidden_states, attention_mask, temb
    )
    batch_size = hidden_states.shape[0]
    query = attn.to_q(hidden_states)
    if encoder_hidden_states is None:
        encoder_hidden_states = hidden_states
    elif attn.norm_cross:
        encoder_hidden_states = attn.norm_encoder_hidden_states(encoder_hidden_states)
    key = attn.to_k(encoder_hidden_states)
    head_dim = key.shape[-1] // attn.heads
    query = query.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
    key = key.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
    query, key = apply_qk_norms(attn, query, key)
    scores = (query.float() @ key.float().transpose(-1, -2)) * attn.scale
    if attention_mask is not None:
        scores = scores + attention_mask.float()
    return scores.softmax(dim=-1)


class CapturingAttnProcessor:
    r"""
    Wraps the processor an `Attention` module had and records its attention probabilities.

    The layer's output is always computed by the wrapped (original) processor, so installing this processor
    never changes what the model computes, bit for bit. When `should_record()` is true the probabilities are
    computed once more on the side (see [`attention_probabilities`]) and handed to `sink(name, probs)`.

    Has the exact call signature of diffusers' `AttnProcessor`.
    """

    def __init__(
        self,
        original,
        name: str,
        sink: Callable[[str, torch.Tensor], None],
        should_record: Callable[[], bool],
    ):
        self.original = original
        self.name = name
        self.sink = sink
        self.should_record = should_record

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        *args,
        **kwargs,
    ) -> torch.Tensor:
        if self.should_record():
            with torch.no_grad():
                probs = attention_probabilities(attn, hidden_states, encoder_hidden_states, attention_mask, temb)
            self.sink(self.name, probs)
        return self.original(attn, hidden_states, encoder_hidden_states, attention_mask, temb, *args, **kwargs)


def restore_processors(modules: dict[str, torch.nn.Module], originals: dict[str, object], handles: list) -> None:
    """Put every original processor of `originals` back on its module of `modules` and remove every hook handle of
    `handles`, emptying both (what a capture's `restore` does; calling it twice is harmless)."""
    for name, original in originals.items():
        modules[name].set_processor(original)
    originals.clear()
    for handle in handles:
        handle.remove()
    handles.clear()
