"""Shared helpers of our denoisers: timestep broadcasting and the sinusoidal + MLP timestep embedding."""

from __future__ import annotations

import torch
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from torch import nn

__all__ = ["TimestepEmbedder", "broadcast_timesteps"]


def broadcast_timesteps(timestep: torch.Tensor | float | int, batch_size: int, device: torch.device) -> torch.Tensor:
    """`timestep` as a `[B]` float tensor on `device` (as `UNet2DModel.forward` does for a scalar `t`)."""
    if not torch.is_tensor(timestep):
        timestep = torch.tensor([timestep], dtype=torch.float32, device=device)
    elif timestep.ndim == 0:
        timestep = timestep[None].to(device)
    if timestep.ndim != 1 or timestep.shape[0] not in (1, batch_size):
        raise ValueError(
            f"`timestep` must be a scalar or a [B] tensor with B={batch_size}, got shape {tuple(timestep.shape)}."
        )
    return timestep.to(device=device, dtype=torch.float32).expand(batch_size)


class TimestepEmbedder(nn.Module):
    r"""$t \mapsto \mathrm{MLP}(\mathrm{sinusoidal}(t))$, plus an optional class embedding added to it (TabDDPM)."""

    def __init__(
        self, dim: int, num_class_embeds: int | None = None, flip_sin_to_cos: bool = True, freq_shift: float = 0.0
    ):
        super().__init__()
        self.time_proj = Timesteps(dim, flip_sin_to_cos, freq_shift)
        self.time_embedding = TimestepEmbedding(dim, dim)
        self.class_embedding = nn.Embedding(num_class_embeds, dim) if num_class_embeds else None

    def forward(self, timestep: torch.Tensor, class_labels: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor:
        emb = self.time_embedding(self.time_proj(timestep).to(dtype))
        if self.class_embedding is None:
            if class_labels is not None:
                raise ValueError(
                    "`class_labels` were given but this denoiser is unconditional (num_class_embeds=None); "
                    "drop them or train a conditional denoiser."
                )
            return emb
        if class_labels is None:
            raise ValueError(
                f"This denoiser is conditional (num_class_embeds={self.class_embedding.num_embeddings}): "
                "pass `class_labels` as a [B] long tensor."
            )
        if class_labels.shape != timestep.shape:
            raise ValueError(
                f"`class_labels` must have shape {tuple(timestep.shape)}, got {tuple(class_labels.shape)}."
            )
        n = self.class_embedding.num_embeddings
        if class_labels.dtype.is_floating_point or (
            class_labels.numel() and (class_labels.min() < 0 or class_labels.max() >= n)
        ):
            raise ValueError(f"`class_labels` must be integer indices in [0, {n}), got {class_labels.tolist()[:8]}...")
        return emb + self.class_embedding(class_labels.long()).to(dtype)
