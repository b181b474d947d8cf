"""`DiffusionXAIPipeline`: unconditional image sampling with a `UNet2DModel`, traced step by step."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import PIL.Image
import torch
from diffusers import DiffusionPipeline, DPMSolverMultistepScheduler, UNet2DModel
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from diffusers.utils import BaseOutput

from ...capture import Trace, TraceConfig
from ...models.lora import LoraPipelineMixin
from ...pipelines.base import XAIPipelineMixin
from ...pipelines.sampling import DiffusionStep
from ...pipelines.schedulers import make_scheduler

__all__ = ["DiffusionXAIPipeline", "DiffusionXAIPipelineOutput", "DiffusionStep"]

logger = logging.getLogger(__name__)


@dataclass
class DiffusionXAIPipelineOutput(BaseOutput):
    """
    Output of [`DiffusionXAIPipeline`].

    Args:
        images (`list[PIL.Image.Image]`, `np.ndarray` `[B, H, W, C]` or `torch.Tensor` `[B, C, H, W]`):
            the generated images in [0, 1].
        trace ([`Trace`], *optional*): the per-step record, when `trace=` was set.
    """

    images: list[PIL.Image.Image] | np.ndarray | torch.Tensor
    trace: Trace | None = None


class DiffusionXAIPipeline(XAIPipelineMixin, LoraPipelineMixin, DiffusionPipeline):
    r"""
    Unconditional image generation that can record what happened at every step.

    Sampling is exactly `DDPMPipeline`'s (or `DDIMPipeline`'s for a `DDIMScheduler`): the same generator gives
    bit-identical images with and without `trace=`, because capture only reads tensors (see [`TraceRecorder`]).

    Args:
        unet ([`UNet2DModel`]): the denoiser $\epsilon_\theta(x_t, t)$ (or $v$/$x_0$ predictor).
        scheduler ([`SchedulerMixin`]): [`DDPMScheduler`], [`DDIMScheduler`] or [`DPMSolverMultistepScheduler`].
            Swap with `pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)` or
            `pipe.set_scheduler("dpmsolver")`; the latter sets DPM-Solver's pixel-space safe defaults
            (`thresholding=True, sample_max_value=1.0`).

    Example:

    ```py
    >>> from diffusers_xai import DiffusionXAIPipeline, TraceConfig
    >>> pipe = DiffusionXAIPipeline.from_pretrained("outputs/quickstart/pipeline")
    >>> out = pipe(batch_size=4, num_inference_steps=50, trace=TraceConfig(attention=True))
    >>> out.images[0].save("digit.png"); out.trace.stack("pred_original_sample").shape
    ```
    """

    model_cpu_offload_seq = "unet"

    def __init__(self, unet: UNet2DModel, scheduler: SchedulerMixin):
        super().__init__()
        if not isinstance(scheduler, SchedulerMixin):
            raise TypeError(f"`scheduler` must be a diffusers scheduler, got {type(scheduler).__name__}.")
        if isinstance(scheduler, DPMSolverMultistepScheduler) and not scheduler.config.thresholding:
            logger.warning(
                "DPMSolverMultistepScheduler without thresholding diverges on some pixel-space samples; use "
                "`pipe.set_scheduler('dpmsolver')` or pass thresholding=True, sample_max_value=1.0."
            )
        self.register_modules(unet=unet, scheduler=scheduler)

    @classmethod
    def from_unet(cls, unet: UNet2DModel, scheduler: str = "ddpm", **scheduler_kwargs) -> DiffusionXAIPipeline:
        """Build a pipeline from a UNet and a scheduler name (`"ddpm"`, `"ddim"`, `"dpmsolver"`)."""
        return cls(unet=unet, scheduler=make_scheduler(scheduler, **scheduler_kwargs))

    def set_scheduler(self, name: str, **kwargs) -> None:
        """Replace the scheduler by name, keeping the noise schedule (betas, prediction type) of the current one."""
        self.scheduler = make_scheduler(name, self.scheduler.config, **kwargs)

    # ---- what the skeleton ([`XAIPipelineMixin`]) needs ----
    denoiser_name = "unet"
    output_types = ("pil", "np", "pt")

    @property
    def sample_shape(self) -> tuple[int, int, int]:
        size = self.unet.config.sample_size
        h, w = (size, size) if isinstance(size, int) else tuple(size)
        return (self.unet.config.in_channels, h, w)

    def latents_error(self, shape: tuple[int, ...], expected: tuple[int, ...]) -> str:
        return (
            f"`latents` have shape {shape} but this UNet (in_channels={self.unet.config.in_channels}, "
            f"sample_size={self.unet.config.sample_size}) expects {expected}; pass latents of that shape or a UNet "
            "whose in_channels match your data."
        )

    def postprocess(self, image: torch.Tensor, output_type: str, run=None):
        image = (image / 2 + 0.5).clamp(0, 1)
        if output_type == "pt":
            return image
        image = image.cpu().permute(0, 2, 3, 1).numpy()
        return self.numpy_to_pil(image) if output_type == "pil" else image

    @torch.no_grad()
    def __call__(
        self,
        batch_size: int = 1,
        generator: torch.Generator | list[torch.Generator] | None = None,
        eta: float = 0.0,
        num_inference_steps: int = 1000,
        latents: torch.Tensor | None = None,
        trace: bool | TraceConfig | dict | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
    ) -> DiffusionXAIPipelineOutput | tuple:
        r"""
        Generate images, optionally recording a [`Trace`].

        Args:
            batch_size (`int`, *optional*, defaults to 1): number of images.
            generator (`torch.Generator` or `list[torch.Generator]`, *optional*): for reproducible sampling.
            eta (`float`, *optional*, defaults to 0.0): DDIM's $\eta$ (ignored by schedulers without it).
            num_inference_steps (`int`, *optional*, defaults to 1000): between 1 and `num_train_timesteps`.
            latents (`torch.Tensor`, *optional*): $x_T$ of shape `[B, C, H, W]` instead of fresh noise.
            trace (`bool`, `dict` or [`TraceConfig`], *optional*): `True` for the default [`TraceConfig`].
            output_type (`str`, *optional*, defaults to `"pil"`): `"pil"`, `"np"` (`[B, H, W, C]`) or `"pt"`
                (`[B, C, H, W]`).
            return_dict (`bool`, *optional*, defaults to `True`): return a [`DiffusionXAIPipelineOutput`] or a tuple.

        Returns:
            [`DiffusionXAIPipelineOutput`] or `tuple` `(images, trace)`.
        """
        self.check_output_type(output_type)
        run = self.sample(
            trace, batch_size=batch_size, generator=generator, eta=eta, num_inference_steps=num_inference_steps,
            latents=latents,
        )  # fmt: skip
        images = self.postprocess(run.final_sample, output_type)
        self.maybe_free_model_hooks()
        if not return_dict:
            return (images, run.trace)
        return DiffusionXAIPipelineOutput(images=images, trace=run.trace)
