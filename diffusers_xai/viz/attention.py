"""Attention maps: layers x steps grids from a trace, and DAAM per-token heat maps."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch

from ..capture import Trace
from ..explain.attention import attention_maps
from ..explain.base import ExplanationResult
from ._io import image_for_imshow, label_row, new_figure, save_figure, to_display_images

__all__ = ["save_attention_maps", "save_token_maps"]


def save_attention_maps(
    trace: Trace | ExplanationResult,
    path: str | os.PathLike,
    sample_index: int = 0,
    layers: Sequence[str] | None = None,
    image_size: tuple[int, int] | None = None,
    max_steps: int = 6,
) -> Path:
    """
    Save the self-attention maps of a [`Trace`] (recorded with `TraceConfig(attention=True)`), upsampled to the image
    size: one row per layer plus a last row with their mean, one column per recorded step (at most `max_steps`,
    evenly spaced). Each map is the attention every position receives (see [`attention_maps`]).

    Also accepts the [`ExplanationResult`] of [`AttentionExplainer`] / [`attention_maps`].
    """
    result = trace if isinstance(trace, ExplanationResult) else attention_maps(trace, image_size, layers)
    per_layer = result.metadata["per_layer"]
    size = tuple(result.maps.shape[-2:])
    k = result.maps.shape[0]
    cols = sorted({round(i * (k - 1) / max(max_steps - 1, 1)) for i in range(min(k, max_steps))})
    rows = []
    for name, maps in per_layer.items():  # [K, B, heads, N, h, w]
        m = maps[cols, sample_index].mean(dim=1)[:, 0]  # heads averaged, first map
        rows.append((name, torch.nn.functional.interpolate(m[:, None], size=size, mode="bilinear")[:, 0]))
    rows.append(("mean", result.maps[cols, sample_index, 0]))
    fig = new_figure(1.5 * len(cols) + 2.5, 1.5 * len(rows) + 0.3)
    axes = fig.subplots(len(rows), len(cols), squeeze=False)
    for r, (name, maps) in enumerate(rows):
        for c in range(len(cols)):
            ax = axes[r, c]
            ax.imshow(maps[c].numpy(), cmap="inferno", interpolation="bilinear")
            ax.axis("off")
            if r == 0:
                ax.set_title(f"t={result.timesteps[cols[c]]}", fontsize=8)
            if c == 0:
                label_row(
                    ax, name.replace(".attentions", "\n.attn").replace(".transformer_blocks", "\n.tb"), fontsize=6
                )
    return save_figure(fig, path)


def save_token_maps(
    result: ExplanationResult,
    path: str | os.PathLike,
    tokens: Sequence[str] | None = None,
    image=None,
    sample_index: int = 0,
    alpha: float = 0.6,
) -> Path:
    """Save DAAM per-token heat maps (the cross-attention result aggregated over steps), over the image if given."""
    if result.metadata.get("kind") != "cross":
        raise ValueError("save_token_maps needs a cross-attention result (AttentionExplainer(kind='cross')).")
    maps = result.metadata["aggregated"][sample_index]  # [N, H, W]
    tokens = (
        list(tokens) if tokens is not None else result.metadata.get("tokens") or [str(i) for i in range(maps.shape[0])]
    )
    if len(tokens) != maps.shape[0]:
        raise ValueError(f"Got {len(tokens)} token names for {maps.shape[0]} maps.")
    img = None if image is None else to_display_images(image)[0]
    fig = new_figure(1.6 * len(tokens), 1.9)
    axes = fig.subplots(1, len(tokens), squeeze=False)[0]
    for ax, name, m in zip(axes, tokens, maps):
        if img is not None:
            arr, cmap = image_for_imshow(img)
            ax.imshow(arr, cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
        ax.imshow(m.numpy(), cmap="jet", alpha=alpha if img is not None else 1.0, interpolation="bilinear")
        ax.set_title(name, fontsize=8)
        ax.axis("off")
    return save_figure(fig, path)
