"""`TimeSeriesDenoiser`: a 1-D denoiser over `[B, C, L]` windows (transformer or dilated conv), a diffusers model."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.attention_processor import Attention
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils import BaseOutput
from torch import nn

from ...models.denoiser import TimestepDenoiserMixin
from ...models.embeddings import TimestepEmbedder

__all__ = ["TimeSeriesDenoiser", "TimeSeriesDenoiserOutput"]


@dataclass
class TimeSeriesDenoiserOutput(BaseOutput):
    """
    Output of [`TimeSeriesDenoiser`].

    Args:
        sample (`torch.Tensor` `[B, C, L]`): the prediction ($\\epsilon$, $v$ or $x_0$), channels first like
            `UNet1DModel`.
    """

    sample: torch.Tensor


def _sinusoidal_positions(length: int, dim: int) -> torch.Tensor:
    """The fixed positional encoding of Vaswani et al. (2017), `[L, dim]`."""
    position = torch.arange(length, dtype=torch.float32)[:, None]
    div = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    pe = torch.zeros(length, dim)
    pe[:, 0::2] = torch.sin(position * div)
    pe[:, 1::2] = torch.cos(position * div)[:, : dim // 2]
    return pe


class _TransformerBlock(nn.Module):
    r"""Pre-norm self-attention + MLP, both modulated by $e_t$ with adaLN-zero (DiT, Peebles & Xie 2023).

    Attention is diffusers' `Attention`, so [`TraceRecorder`] records its maps over time steps."""

    def __init__(self, dim: int, heads: int, emb_dim: int, dropout: float):
        super().__init__()
        self.norm_1 = nn.LayerNorm(dim, elementwise_affine=False)
        self.attn = Attention(query_dim=dim, heads=heads, dim_head=dim // heads, dropout=dropout, bias=True)
        self.norm_2 = nn.LayerNorm(dim, elementwise_affine=False)
        self.ff = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(4 * dim, dim))
        self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(emb_dim, 6 * dim))
        nn.init.zeros_(self.modulation[1].weight)
        nn.init.zeros_(self.modulation[1].bias)

    def forward(self, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        shift_a, scale_a, gate_a, shift_f, scale_f, gate_f = self.modulation(emb)[:, None].chunk(6, dim=-1)
        h = h + gate_a * self.attn(self.norm_1(h) * (1 + scale_a) + shift_a)
        return h + gate_f * self.ff(self.norm_2(h) * (1 + scale_f) + shift_f)


class _ConvBlock(nn.Module):
    r"""GroupNorm-SiLU-Conv1d (dilated) twice, with $e_t$ added in between (the DDPM ResNet block, in 1-D)."""

    def __init__(self, dim: int, emb_dim: int, dilation: int, dropout: float, groups: int):
        super().__init__()
        self.norm_1 = nn.GroupNorm(groups, dim)
        self.conv_1 = nn.Conv1d(dim, dim, 3, padding=dilation, dilation=dilation)
        self.emb_proj = nn.Linear(emb_dim, dim)
        self.norm_2 = nn.GroupNorm(groups, dim)
        self.dropout = nn.Dropout(dropout)
        self.conv_2 = nn.Conv1d(dim, dim, 3, padding=1)
        self.act = nn.SiLU()

    def forward(self, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        z = self.conv_1(self.act(self.norm_1(h))) + self.emb_proj(self.act(emb))[:, :, None]
        return h + self.conv_2(self.dropout(self.act(self.norm_2(z))))


class TimeSeriesDenoiser(TimestepDenoiserMixin, ModelMixin, ConfigMixin):
    r"""
    A denoiser for fixed-length multivariate windows $x_t \in \mathbb{R}^{C \times L}$, with the calling convention
    of diffusers' `UNet1DModel` (`model(sample [B, C, L], timestep).sample`).

    `architecture="transformer"` (default) embeds each time step with a linear map plus a sinusoidal position
    encoding and runs `num_layers` DiT blocks (adaLN-zero conditioning on $t$) over the `L` tokens, as the
    transformer backbone of Diffusion-TS ([Yuan & Qiao, 2024](https://arxiv.org/abs/2403.01742)) without its
    trend/season heads. `architecture="conv"` is a stack of dilated residual Conv1d blocks (dilations 1, 2, 4, ...),
    the WaveNet/DiffWave pattern. `bench/timeseries_quality.py --architecture {transformer,conv}` measures both.

    Args:
        in_channels (`int`, *optional*, defaults to 5): $C$.
        sample_size (`int`, *optional*, defaults to 24): $L$ (the transformer's positions; conv works for any L).
        architecture (`"transformer"` or `"conv"`, *optional*, defaults to `"transformer"`).
        hidden_dim (`int`, *optional*, defaults to 64): token / channel width.
        num_layers (`int`, *optional*, defaults to 3): blocks.
        num_heads (`int`, *optional*, defaults to 4): attention heads (transformer only).
        time_embedding_dim (`int`, *optional*, defaults to 128): width of $e_t$.
        num_class_embeds (`int`, *optional*): classes for conditional generation; `None` is unconditional.
        dropout (`float`, *optional*, defaults to 0.0).

    Example:

    ```py
    >>> model = TimeSeriesDenoiser(in_channels=5, sample_size=24)
    >>> model(torch.randn(2, 5, 24), 10).sample.shape
    torch.Size([2, 5, 24])
    ```
    """

    output_class = TimeSeriesDenoiserOutput

    @register_to_config
    def __init__(
        self,
        in_channels: int = 5,
        sample_size: int = 24,
        architecture: Literal["transformer", "conv"] = "transformer",
        hidden_dim: int = 64,
        num_layers: int = 3,
        num_heads: int = 4,
        time_embedding_dim: int = 128,
        num_class_embeds: int | None = None,
        dropout: float = 0.0,
    ):
        super().__init__()
        if architecture not in ("transformer", "conv"):
            raise ValueError(f"`architecture` must be 'transformer' or 'conv', got {architecture!r}.")
        if in_channels < 1 or sample_size < 1 or num_layers < 1:
            raise ValueError(
                f"`in_channels`, `sample_size` and `num_layers` must be >= 1, got {in_channels}, {sample_size}, "
                f"{num_layers}."
            )
        if architecture == "transformer" and hidden_dim % num_heads:
            raise ValueError(f"`hidden_dim` ({hidden_dim}) must be divisible by `num_heads` ({num_heads}).")
        self.embedder = TimestepEmbedder(time_embedding_dim, num_class_embeds)
        if architecture == "transformer":
            self.proj_in = nn.Linear(in_channels, hidden_dim)
            self.register_buffer("positions", _sinusoidal_positions(sample_size, hidden_dim), persistent=False)
            self.blocks = nn.ModuleList(
                _TransformerBlock(hidden_dim, num_heads, time_embedding_dim, dropout) for _ in range(num_layers)
            )
            self.norm_out = nn.LayerNorm(hidden_dim)
            self.proj_out = nn.Linear(hidden_dim, in_channels)
        else:
            groups = math.gcd(8, hidden_dim)
            self.proj_in = nn.Conv1d(in_channels, hidden_dim, 1)
            self.blocks = nn.ModuleList(
                _ConvBlock(hidden_dim, time_embedding_dim, 2 ** (i % 4), dropout, groups) for i in range(num_layers)
            )
            self.norm_out = nn.GroupNorm(groups, hidden_dim)
            self.proj_out = nn.Conv1d(hidden_dim, in_channels, 1)

    def check_sample(self, sample: torch.Tensor) -> None:
        c, length = self.config.in_channels, self.config.sample_size
        transformer = self.config.architecture == "transformer"
        if sample.ndim != 3 or sample.shape[1] != c or (transformer and sample.shape[2] != length):
            expected = f"[B, {c}, {length}]" if transformer else f"[B, {c}, L]"
            raise ValueError(
                f"`sample` must have shape {expected} (channels first), got {tuple(sample.shape)}; check that "
                "the preprocessor's channels and window length match the model."
            )

    def denoise(self, sample: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        if self.config.architecture == "transformer":
            # tokens are time steps: [B, C, L] -> [B, L, D]
            h = self.proj_in(sample.transpose(1, 2)) + self.positions.to(sample.dtype)
            for block in self.blocks:
                h = block(h, emb)
            return self.proj_out(self.norm_out(h)).transpose(1, 2)
        h = self.proj_in(sample)
        for block in self.blocks:
            h = block(h, emb)
        return self.proj_out(torch.nn.functional.silu(self.norm_out(h)))
