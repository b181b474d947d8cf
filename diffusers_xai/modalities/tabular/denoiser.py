"""`TabularDenoiser`: TabDDPM's MLP (or a pre-norm ResNet-MLP) with a timestep embedding, as a diffusers model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils import BaseOutput
from torch import nn

from ...models.denoiser import TimestepDenoiserMixin
from ...models.embeddings import TimestepEmbedder

__all__ = [
    "LARGE_TABLE_ROWS",
    "WIDE_TABLE_FEATURES",
    "TabularDenoiser",
    "TabularDenoiserOutput",
    "auto_hidden_dims",
    "class_embed_count",
]

# `hidden_dims: auto`: TabDDPM's small MLP for a small, narrow table, a wider and deeper one from LARGE_TABLE_ROWS
# training rows or WIDE_TABLE_FEATURES model features (the preprocessor's encoded width).
# - Rows: on vega's airports (1,890 rows the trainer fits; bench/tabular_quality.py, 4,000 updates, seed 1) [256, 256]
#   generated a blur over the map (10.1% of rows off the contiguous US, Alaska and Hawaii; real 0.9%) and a GBM told
#   its latitude + longitude from real ones at AUC 0.689 (real holdout rows: 0.472); [512, 512, 512]: 7.6% and 0.638,
#   and the whole table's detection AUC over seeds 0-2 went 0.671 -> 0.613.
# - Features: on breast_cancer (32 features, 318 rows) and cars (23 or 24 features by split, 227 rows), seeds 0-2,
#   [512, 512, 512] raised Trend at every seed and TSTR on average, every DCR ratio still in [0.9, 1.5] (the privacy
#   guard stops the wider model earlier where it starts to copy). On penguins (20 features) it gave no consistent gain
#   (Trend and TSTR up at some seeds, down at others; the guard stopped at 1,500 instead of 2,500-3,000), so the cut
#   lies between the two: 22. Wine (16) keeps [256, 256]; iris has 7 features, or 26 in a split where a measurement
#   has at most 20 values and is modelled as categories (then wide; it still passed the benchmark's bar).
# docs/tabular-benchmark.md ("A wider denoiser") has the numbers and commands.
LARGE_TABLE_ROWS = 1000
WIDE_TABLE_FEATURES = 22
SMALL_HIDDEN_DIMS = (256, 256)
LARGE_HIDDEN_DIMS = (512, 512, 512)


def auto_hidden_dims(num_rows: int, num_features: int = 0) -> tuple[int, ...]:
    """The denoiser's `hidden_dims` for a table of `num_rows` training rows and `num_features` model features:
    `LARGE_HIDDEN_DIMS` from `LARGE_TABLE_ROWS` rows or from `WIDE_TABLE_FEATURES` features, else
    `SMALL_HIDDEN_DIMS`."""
    if isinstance(num_rows, bool) or not isinstance(num_rows, int) or num_rows < 1:
        raise ValueError(
            f"`hidden_dims: auto` needs the number of training rows (a positive int), got {num_rows!r}; refit the "
            "preprocessor (TabularPreprocessor.fit records it) or give `hidden_dims` as a list of ints."
        )
    large = num_rows >= LARGE_TABLE_ROWS or num_features >= WIDE_TABLE_FEATURES
    return LARGE_HIDDEN_DIMS if large else SMALL_HIDDEN_DIMS


def class_embed_count(num_classes: int | None, null_class: bool = False) -> int | None:
    """The denoiser's `num_class_embeds` for a condition column of `num_classes` levels: one more with `null_class`,
    the null class $K$ of classifier-free guidance (`diffusers_xai.pipelines.guidance`) the trainer drops labels to."""
    if num_classes is None:
        return None
    return num_classes + int(null_class)


@dataclass
class TabularDenoiserOutput(BaseOutput):
    """
    Output of [`TabularDenoiser`].

    Args:
        sample (`torch.Tensor` `[B, in_features]`): the prediction ($\\epsilon$, $v$ or $x_0$) for every feature.
    """

    sample: torch.Tensor


class _ResidualBlock(nn.Module):
    r"""$h + W_2\,\mathrm{drop}(\mathrm{SiLU}(W_1\,\mathrm{SiLU}(\mathrm{LN}(h)) + W_e e_t))$."""

    def __init__(self, dim: int, hidden: int, emb_dim: int, dropout: float):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.linear_1 = nn.Linear(dim, hidden)
        self.emb_proj = nn.Linear(emb_dim, hidden)
        self.dropout = nn.Dropout(dropout)
        self.linear_2 = nn.Linear(hidden, dim)
        self.act = nn.SiLU()

    def forward(self, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        z = self.linear_1(self.act(self.norm(h))) + self.emb_proj(self.act(emb))
        return h + self.linear_2(self.dropout(self.act(z)))


class TabularDenoiser(TimestepDenoiserMixin, ModelMixin, ConfigMixin):
    r"""
    The denoiser of TabDDPM ([Kotelnikov et al., 2023](https://arxiv.org/abs/2209.15421)) for a row of
    preprocessed features: $x_t \in \mathbb{R}^{D}$ and $t$ (and optionally a class label $y$) to a prediction of
    the same shape.

    `architecture="mlp"` is TabDDPM's `MLPDiffusion`: $h_0 = W_{in} x_t + e_t (+ e_y)$ followed by
    Linear-ReLU-Dropout layers of widths `hidden_dims` and a linear head, with
    $e_t = \mathrm{MLP}(\mathrm{sinusoidal}(t))$. `architecture="resnet"` replaces the plain layers by pre-norm
    residual blocks that re-inject $e_t$ in each block (the ResNet of Gorishniy et al., 2021, with the timestep
    embedding of the DDPM UNet); it trains more stably at depth.

    Args:
        in_features (`int`, *optional*, defaults to 16): $D$, the width of a preprocessed row.
        hidden_dims (`tuple[int]`, *optional*, defaults to `(256, 256)`): widths of the MLP layers, or of the
            hidden layer of each residual block.
        architecture (`"mlp"` or `"resnet"`, *optional*, defaults to `"mlp"`).
        time_embedding_dim (`int`, *optional*, defaults to 128): width of $e_t$ and of the residual stream.
        num_class_embeds (`int`, *optional*): number of classes of the conditioning column; `None` is unconditional.
        null_class (`bool`, *optional*, defaults to `False`): the last class embedding is the null class $K$ of
            classifier-free guidance (`num_class_embeds` = K + 1), which the trainer's label dropout trains.
        dropout (`float`, *optional*, defaults to 0.0).
        flip_sin_to_cos (`bool`, *optional*, defaults to `True`), freq_shift (`float`, *optional*, defaults to 0):
            sinusoidal embedding layout, as in `UNet2DModel`.

    Example:

    ```py
    >>> model = TabularDenoiser(in_features=14, num_class_embeds=3)
    >>> model(torch.randn(8, 14), 999, class_labels=torch.zeros(8, dtype=torch.long)).sample.shape
    torch.Size([8, 14])
    ```
    """

    output_class = TabularDenoiserOutput

    @register_to_config
    def __init__(
        self,
        in_features: int = 16,
        hidden_dims: tuple[int, ...] = (256, 256),
        architecture: Literal["mlp", "resnet"] = "mlp",
        time_embedding_dim: int = 128,
        num_class_embeds: int | None = None,
        dropout: float = 0.0,
        flip_sin_to_cos: bool = True,
        freq_shift: float = 0.0,
        null_class: bool = False,
    ):
        super().__init__()
        if not isinstance(in_features, int) or in_features < 1:
            raise ValueError(f"`in_features` must be a positive int, got {in_features!r}.")
        if architecture not in ("mlp", "resnet"):
            raise ValueError(f"`architecture` must be 'mlp' or 'resnet', got {architecture!r}.")
        if not hidden_dims or any(int(d) < 1 for d in hidden_dims):
            raise ValueError(f"`hidden_dims` must be a non-empty list of positive ints, got {hidden_dims!r}.")
        if num_class_embeds is not None and num_class_embeds < 2:
            raise ValueError(f"`num_class_embeds` must be None or >= 2, got {num_class_embeds}.")
        if null_class and num_class_embeds is None:
            raise ValueError("`null_class=True` needs class embeddings: pass num_class_embeds (the classes + 1).")
        dim = time_embedding_dim
        self.embedder = TimestepEmbedder(dim, num_class_embeds, flip_sin_to_cos, freq_shift)
        self.proj_in = nn.Linear(in_features, dim)
        if architecture == "mlp":
            layers, width = [], dim
            for hidden in hidden_dims:
                layers += [nn.Linear(width, int(hidden)), nn.ReLU(), nn.Dropout(dropout)]
                width = int(hidden)
            self.blocks = nn.Sequential(*layers)
            self.head = nn.Linear(width, in_features)
        else:
            self.blocks = nn.ModuleList(_ResidualBlock(dim, int(h), dim, dropout) for h in hidden_dims)
            self.head = nn.Sequential(nn.LayerNorm(dim), nn.SiLU(), nn.Linear(dim, in_features))

    def check_sample(self, sample: torch.Tensor) -> None:
        if sample.ndim != 2 or sample.shape[1] != self.config.in_features:
            raise ValueError(
                f"`sample` must have shape [B, {self.config.in_features}] (in_features of this denoiser), got "
                f"{tuple(sample.shape)}; check that the preprocessor matches the model."
            )

    def denoise(self, sample: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.proj_in(sample)
        if self.config.architecture == "mlp":
            # 1. TabDDPM: the embedding is added once, to the projected input
            return self.head(self.blocks(h + emb))
        # 1. ResNet-MLP: the embedding is re-injected in every block
        for block in self.blocks:
            h = block(h, emb)
        return self.head(h)
