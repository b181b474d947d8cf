"""Tiny seeded components for tests, benchmarks and docs (as diffusers' `get_dummy_components()`); no downloads."""

from __future__ import annotations

import torch
from diffusers import UNet2DConditionModel, UNet2DModel

__all__ = ["tiny_conditional_unet", "tiny_pipeline", "tiny_unet"]


def tiny_unet(seed: int = 0, in_channels: int = 1, sample_size: int = 8, attention: bool = True) -> UNet2DModel:
    """A 2-level `UNet2DModel` (4/8 channels) with attention in the low-resolution blocks and the mid block."""
    torch.manual_seed(seed)
    return UNet2DModel(
        sample_size=sample_size,
        in_channels=in_channels,
        out_channels=in_channels,
        block_out_channels=(4, 8),
        layers_per_block=1,
        norm_num_groups=4,
        attention_head_dim=4,
        down_block_types=("DownBlock2D", "AttnDownBlock2D" if attention else "DownBlock2D"),
        up_block_types=("AttnUpBlock2D" if attention else "UpBlock2D", "UpBlock2D"),
        add_attention=attention,
    ).eval()


def tiny_conditional_unet(seed: int = 0, cross_attention_dim: int = 8) -> UNet2DConditionModel:
    """A tiny `UNet2DConditionModel` with cross-attention (as diffusers' Stable Diffusion tests build it)."""
    torch.manual_seed(seed)
    return UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        block_out_channels=(4, 8),
        layers_per_block=1,
        norm_num_groups=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=cross_attention_dim,
        attention_head_dim=2,
    ).eval()


def tiny_pipeline(scheduler: str = "ddpm", seed: int = 0, num_train_timesteps: int = 100, **unet_kwargs):
    """A [`DiffusionXAIPipeline`] around [`tiny_unet`] with a fresh scheduler of the given name."""
    from .modalities.image import DiffusionXAIPipeline

    pipe = DiffusionXAIPipeline.from_unet(
        tiny_unet(seed=seed, **unet_kwargs), scheduler, num_train_timesteps=num_train_timesteps
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe
