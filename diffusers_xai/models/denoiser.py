"""The forward skeleton every denoiser of this package shares: check $x_t$, embed $t$ (and the class), run the body,
wrap the output as diffusers models do."""

from __future__ import annotations

from typing import ClassVar

import torch
from diffusers.utils import BaseOutput

from .embeddings import broadcast_timesteps

__all__ = ["TimestepDenoiserMixin"]


class TimestepDenoiserMixin:
    r"""
    Mix into a `ModelMixin` denoiser (before it) that has an `embedder` ([`TimestepEmbedder`]): `forward` checks
    `sample` (`check_sample`), embeds $t$ and the class labels into $e_t$, runs `denoise(sample, e_t)` and returns
    `output_class(sample=...)` or a tuple, as `UNet2DModel.forward` does.

    Subclasses set `output_class` and define `check_sample` (raise `ValueError` naming the expected shape) and
    `denoise`.
    """

    output_class: ClassVar[type[BaseOutput]]

    def check_sample(self, sample: torch.Tensor) -> None:
        """Raise `ValueError` if `sample` does not have the shape this denoiser was built for."""

    def denoise(self, sample: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        """The prediction for `sample` (same shape) given the embedding $e_t$ `[B, time_embedding_dim]`."""
        raise NotImplementedError(f"{type(self).__name__} must define `denoise`.")

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | float | int,
        class_labels: torch.Tensor | None = None,
        return_dict: bool = True,
    ) -> BaseOutput | tuple:
        r"""
        Args:
            sample (`torch.Tensor`): the noisy batch $x_t$ (`[B, in_features]` rows, `[B, C, L]` windows).
            timestep (`torch.Tensor` `[B]`, `float` or `int`): $t$.
            class_labels (`torch.Tensor` `[B]`, *optional*): class indices, required iff `num_class_embeds` is set.
            return_dict (`bool`, *optional*, defaults to `True`): return an `output_class` or a tuple.
        """
        self.check_sample(sample)
        t = broadcast_timesteps(timestep, sample.shape[0], sample.device)
        out = self.denoise(sample, self.embedder(t, class_labels, sample.dtype))
        if not return_dict:
            return (out,)
        return self.output_class(sample=out)
