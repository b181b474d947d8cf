"""`DiffusionXAIPipeline`: image sampling with a `UNet2DModel` (unconditional or class-conditional), traced."""

from __future__ import annotations

import logging
from collections.abc import Callable
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
from ...pipelines.guidance import (
    check_guidance_scale,
    num_classes_of,
    resolve_class_labels,
)
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
        class_labels (`torch.Tensor` `[B]`, *optional*): the class index of each image (the null class
            `num_classes` for unconditional samples), for a class-conditional UNet.
    """

    images: list[PIL.Image.Image] | np.ndarray | torch.Tensor
    trace: Trace | None = None
    class_labels: torch.Tensor | None = None


class DiffusionXAIPipeline(XAIPipelineMixin, LoraPipelineMixin, DiffusionPipeline):
    r"""
    Image generation, unconditional or class-conditional with classifier-free guidance, that can record what happened
    at every step.

    Sampling is exactly `DDPMPipeline`'s (or `DDIMPipeline`'s for a `DDIMScheduler`): the same generator gives
    bit-identical images with and without `trace=`, because capture only reads tensors (see [`TraceRecorder`]).

    Args:
        unet ([`UNet2DModel`]): the denoiser $\epsilon_\theta(x_t, t)$ (or $v$/$x_0$ predictor).
        scheduler ([`SchedulerMixin`]): [`DDPMScheduler`], [`DDIMScheduler`] or [`DPMSolverMultistepScheduler`].
            Swap with `pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)` or
            `pipe.set_scheduler("dpmsolver")`; the latter sets DPM-Solver's pixel-space safe defaults
            (`thresholding=True, sample_max_value=1.0`).
        class_names (`list[str]`, *optional*): names of the classes of a class-conditional UNet (saved in
            `model_index.json`), so `class_labels` can be names. The UNet follows the convention of
            [`~diffusers_xai.pipelines.guidance`]: `num_class_embeds = len(class_names) + 1`, the last index being
            the null (unconditional) class.

    Example:

    ```py
    >>> from diffusers_xai import DiffusionXAIPipeline, TraceConfig
    >>> pipe = DiffusionXAIPipeline.from_pretrained("outputs/quickstart/pipeline")
    >>> out = pipe(batch_size=4, num_inference_steps=50, trace=TraceConfig(attention=True))
    >>> out.images[0].save("digit.png"); out.trace.stack("pred_original_sample").shape
    >>> pipe(batch_size=10, class_labels=list(range(10)), guidance_scale=3.0).images  # class-conditional model
    ```
    """

    model_cpu_offload_seq = "unet"

    def __init__(
        self, unet: UNet2DModel, scheduler: SchedulerMixin, class_names: list[str] | dict[str, str] | None = None
    ):
        super().__init__()
        num_classes = num_classes_of(unet)
        if isinstance(class_names, dict):  # as saved in model_index.json: {"0": name, "1": name, ...}
            class_names = [class_names[str(i)] for i in range(len(class_names))]
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(
                f"{len(class_names)} `class_names` were given but the UNet has "
                f"{'no class embedding' if num_classes is None else f'{num_classes} classes (num_class_embeds - 1)'}; "
                "pass one name per class (the last class embedding is the null class) or none."
            )
        if not isinstance(scheduler, SchedulerMixin):
            raise TypeError(f"`scheduler` must be a diffusers scheduler, got {type(scheduler).__name__}.")
        if isinstance(scheduler, DPMSolverMultistepScheduler) and not scheduler.config.thresholding:
            logger.warning(
                "DPMSolverMultistepScheduler without thresholding diverges on some pixel-space samples; use "
                "`pipe.set_scheduler('dpmsolver')` or pass thresholding=True, sample_max_value=1.0."
            )
        self.register_modules(unet=unet, scheduler=scheduler)
        # saved as {"0": name, ...}: diffusers reads every *list* in model_index.json as a (library, class) component
        names = {str(i): str(n) for i, n in enumerate(class_names)} if class_names is not None else None
        self.register_to_config(class_names=names)

    @classmethod
    def from_unet(cls, unet: UNet2DModel, scheduler: str = "ddpm", **scheduler_kwargs) -> DiffusionXAIPipeline:
        """Build a pipeline from a UNet and a scheduler name (`"ddpm"`, `"ddim"`, `"dpmsolver"`)."""
        return cls(unet=unet, scheduler=make_scheduler(scheduler, **scheduler_kwargs))

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

    # ---- classes and guidance ----
    @property
    def num_classes(self) -> int | None:
        """Number of classes $K$ of a class-conditional UNet (`num_class_embeds - 1`), `None` if unconditional."""
        return num_classes_of(self.unet)

    @property
    def null_class_label(self) -> int | None:
        """The label of the null (unconditional) class, $K$."""
        return self.num_classes

    @property
    def class_names(self) -> list[str] | None:
        names = self.config.get("class_names") if hasattr(self, "config") else None
        if names is None:
            return None if self.num_classes is None else [str(i) for i in range(self.num_classes)]
        return [names[str(i)] for i in range(len(names))]

    def prepare_conditioning(self, batch_size: int, generator=None, class_labels=None, guidance_scale: float = 1.0):
        """
        `{"class_labels": [B]}` for a class-conditional UNet (the null class when no labels are given), with the
        guidance scale riding along under `"guidance_scale"` until [`denoise`] takes it out.
        """
        check_guidance_scale(guidance_scale, self.num_classes)
        labels = resolve_class_labels(class_labels, batch_size, self.num_classes, self.class_names)
        if self.num_classes is None:
            return {}
        if labels is None:
            if guidance_scale > 1:
                raise ValueError(
                    f"`guidance_scale`={guidance_scale} guides towards `class_labels`; pass class_labels (ints or "
                    f"names from {self.class_names}), or guidance_scale=1 for unconditional samples."
                )
            labels = torch.full((batch_size,), self.null_class_label, dtype=torch.long)
        return {"class_labels": labels.to(self._execution_device), "guidance_scale": float(guidance_scale)}

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
        class_labels: int | str | list | torch.Tensor | None = None,
        guidance_scale: float = 1.0,
        trace: bool | TraceConfig | dict | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
        callback_on_step_end: Callable | None = None,
        callback_on_step_end_tensor_inputs: list[str] | None = None,
    ) -> DiffusionXAIPipelineOutput | tuple:
        r"""
        Generate images, optionally recording a [`Trace`].

        Args:
            batch_size (`int`, *optional*, defaults to 1): number of images.
            generator (`torch.Generator` or `list[torch.Generator]`, *optional*): for reproducible sampling.
            eta (`float`, *optional*, defaults to 0.0): DDIM's $\eta$ (ignored by schedulers without it).
            num_inference_steps (`int`, *optional*, defaults to 1000): between 1 and `num_train_timesteps`.
            latents (`torch.Tensor`, *optional*): $x_T$ of shape `[B, C, H, W]` instead of fresh noise.
            class_labels (`int`, `str`, `list` or `torch.Tensor`, *optional*): for a class-conditional UNet, the class
                of every image (one label for the batch or one per image; ints or `class_names`). Without them a
                conditional UNet samples unconditionally (the null class).
            guidance_scale (`float`, *optional*, defaults to 1.0): classifier-free guidance scale $s \ge 1$; 1 is
                the conditional model alone (bit for bit), larger values follow the class more closely (3 is a good
                start for the digits). Needs `class_labels` and a UNet trained with label dropout.
            trace (`bool`, `dict` or [`TraceConfig`], *optional*): `True` for the default [`TraceConfig`].
            output_type (`str`, *optional*, defaults to `"pil"`): `"pil"`, `"np"` (`[B, H, W, C]`) or `"pt"`
                (`[B, C, H, W]`).
            return_dict (`bool`, *optional*, defaults to `True`): return a [`DiffusionXAIPipelineOutput`] or a tuple.
            callback_on_step_end, callback_on_step_end_tensor_inputs (*optional*): diffusers' step-end callback
                (a function or `PipelineCallback`) and what it reads (`["latents"]`): [`XAIPipelineMixin.sample`].

        Returns:
            [`DiffusionXAIPipelineOutput`] or `tuple` `(images, trace)`.
        """
        self.check_output_type(output_type)
        run = self.sample(
            trace, batch_size=batch_size, generator=generator, eta=eta, num_inference_steps=num_inference_steps,
            latents=latents, class_labels=class_labels, guidance_scale=guidance_scale,
            callback_on_step_end=callback_on_step_end,
            callback_on_step_end_tensor_inputs=callback_on_step_end_tensor_inputs,
        )  # fmt: skip
        images = self.postprocess(run.final_sample, output_type)
        self.maybe_free_model_hooks()
        if not return_dict:
            return (images, run.trace)
        labels = run.model_kwargs.get("class_labels")
        labels = labels.cpu() if labels is not None else None
        return DiffusionXAIPipelineOutput(images=images, trace=run.trace, class_labels=labels)
