r"""Shared machinery of the denoiser explainers: binding a pipeline, picking steps from a trace, the result type."""

from __future__ import annotations

import copy
import logging
import numbers
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from ..capture import Trace, TraceStep
from ..pipelines.guidance import check_guidance_scale
from .target import (
    DenoiserForward,
    ExplanationTarget,
    accepts_text_conditioning,
    class_embedding_module,
    resolve_target,
)

__all__ = [
    "DenoiserExplainer",
    "ExplanationResult",
    "StepInput",
    "attribution_maps",
    "check_conditioning",
    "check_explained_guidance",
    "resolve_denoiser",
    "select_sample",
    "step_trace",
]

logger = logging.getLogger(__name__)


@dataclass
class StepInput:
    """One explained step: $x_t$ `[B, *S]`, its scheduler timestep and (from a trace) its loop index."""

    sample: torch.Tensor
    timestep: int
    step_index: int | None = None


@dataclass
class ExplanationResult:
    r"""
    What an explainer's `attribute()` returns, for inputs $x_t$ of shape `[B, *S]`: images `[B, C, H, W]`, table
    rows `[B, F]`, series windows `[B, C, L]`.

    Args:
        method (`str`): the method name (`"gradcam"`, `"integrated_gradients"`, ...).
        attributions (`torch.Tensor` or `tuple[torch.Tensor, ...]`): raw attributions, mirroring the inputs with
            a leading step dimension: `[K, B, *S]` for $x_t$ (and `[K, B, ...]` for a conditioning input).
        maps (`torch.Tensor`): one map per step and sample, the thing to plot and to score for faithfulness: the
            channels summed for images `[K, B, 1, H, W]` and windows `[K, B, 1, L]` (one value per pixel / time
            point), the attributions themselves for rows `[K, B, F]` (one value per feature).
        timesteps (`list[int]`): the scheduler timestep of each of the K steps.
        step_indices (`list[int | None]`): their loop indices (when explained from a trace).
        delta (`torch.Tensor`, *optional*): captum's convergence delta `[K, B]`, when requested.
        metadata (`dict`): method specifics (layers, per-layer maps, baselines, ...).
        feature_names (`list[str]`, *optional*): names along the sample's first axis: the feature names of table
            rows (`preprocessor.feature_names()`), the channel names of series windows.
        signed (`bool`, *optional*, defaults to `True`): what the map claims, declared by the method. Signed maps
            (IG, occlusion, SHAP, GradCAM, input × gradient) say "positive = raises the target"; unsigned (magnitude)
            maps (saliency's $|\partial y/\partial x|$, attention) say only "this unit matters", in either
            direction. Deletion/insertion scores each on its own claim ([`deletion_insertion`]).
    """

    method: str
    attributions: torch.Tensor | tuple[torch.Tensor, ...]
    maps: torch.Tensor
    timesteps: list[int]
    step_indices: list[int | None]
    delta: torch.Tensor | None = None
    metadata: dict = field(default_factory=dict)
    feature_names: list[str] | None = None
    signed: bool = True


def attribution_maps(attributions: torch.Tensor) -> torch.Tensor:
    """`[K, B, *S]` attributions → maps: channels summed (`[K, B, 1, *spatial]`) unless the samples are rows `[F]`."""
    return attributions if attributions.ndim <= 3 else attributions.sum(dim=2, keepdim=True)


def resolve_denoiser(model, scheduler=None) -> tuple[torch.nn.Module, object]:
    """`(denoiser, scheduler)` from a pipeline (with `.unet` or `.denoiser`, and `.scheduler`) or a bare denoiser."""
    if isinstance(model, torch.nn.Module) and not hasattr(model, "scheduler"):
        return model, scheduler
    for name in ("denoiser", "unet"):
        denoiser = getattr(model, name, None)
        if isinstance(denoiser, torch.nn.Module):
            return denoiser, scheduler if scheduler is not None else getattr(model, "scheduler", None)
    if isinstance(model, torch.nn.Module):
        return model, scheduler
    raise TypeError(
        f"Expected a diffusers pipeline (with `.unet` or `.denoiser`) or a torch.nn.Module, got "
        f"{type(model).__name__}."
    )


def sample_names(model) -> tuple[tuple[int, ...] | None, list[str] | None]:
    """`(sample shape S, names along its first axis)` from a pipeline's preprocessor (tables, series), else `None`s."""
    pre = getattr(model, "preprocessor", None)
    if pre is None:
        return None, None
    if callable(getattr(pre, "feature_names", None)):
        names = list(pre.feature_names())
        return (len(names),), names
    channels = getattr(pre, "channels", None)
    shape = getattr(pre, "sample_shape", None)
    return (tuple(int(s) for s in shape) if shape is not None else None), (list(channels) if channels else None)


def select_sample(trace: Trace, index: int) -> Trace:
    """A copy of `trace` that holds only batch element `index` of every tensor (`[1, ...]`)."""
    if trace.steps and trace.steps[0].latents is not None:
        size = trace.steps[0].latents.shape[0]
        if not -size <= index < size:
            raise ValueError(f"`sample_index` {index} is out of range for a batch of {size} samples.")

    def take(t: torch.Tensor | None) -> torch.Tensor | None:
        return None if t is None else t[index : index + 1 if index != -1 else None]

    steps = [
        TraceStep(
            step_index=s.step_index,
            timestep=s.timestep,
            latents=take(s.latents),
            pred_original_sample=take(s.pred_original_sample),
            model_output=take(s.model_output),
            attentions={k: take(v) for k, v in s.attentions.items()},
            activations={k: take(v) for k, v in s.activations.items()},
        )
        for s in trace.steps
    ]
    return Trace(
        config=trace.config,
        steps=steps,
        num_inference_steps=trace.num_inference_steps,
        truncated=trace.truncated,
        guidance_scale=trace.guidance_scale,
    )


def step_trace(sample: torch.Tensor, timestep: int, step_index: int | None = None) -> Trace:
    """A one-step [`Trace`] holding a recorded $x_t$ `[B, *S]` at `timestep`: explains it as recorded, without checking
    the timestep against the scheduler's *current* schedule (which a later sampling call may have changed)."""
    from ..capture import TraceConfig

    return Trace(
        config=TraceConfig(), steps=[TraceStep(step_index=step_index, timestep=int(timestep), latents=sample)]
    )


def _schedule(scheduler, num_inference_steps: int | None) -> list[int] | None:
    """The timesteps of a sampling run of `num_inference_steps` steps, computed on a copy of the scheduler."""
    if scheduler is None or num_inference_steps is None:
        return None
    fresh = type(scheduler).from_config(scheduler.config)
    fresh.set_timesteps(num_inference_steps)
    return [int(t) for t in fresh.timesteps]


def _is_scalar_tensor(t) -> bool:
    return torch.is_tensor(t) and t.numel() == 1 and not t.is_floating_point()


def _as_timestep_list(timesteps) -> list[int] | None:
    if timesteps is None:
        return None
    if isinstance(timesteps, torch.Tensor):
        return [int(t) for t in timesteps.flatten()]

    def is_int(t) -> bool:
        return isinstance(t, numbers.Integral) and not isinstance(t, bool)

    if is_int(timesteps):
        return [int(timesteps)]
    if isinstance(timesteps, Sequence) and all(is_int(t) or _is_scalar_tensor(t) for t in timesteps):
        return [int(t) for t in timesteps]
    raise TypeError(f"`timesteps` must be an int, a list of ints or a tensor, got {timesteps!r}.")


def resolve_steps(inputs: torch.Tensor | Trace, timesteps, scheduler) -> list[StepInput]:
    """
    The steps to explain. From a [`Trace`]: the recorded $x_t$ at each requested timestep (`None` = every recorded
    step). From a tensor $x_t$: that tensor at each requested timestep (required), which must be in the
    scheduler's schedule.

    Raises:
        ValueError: a timestep that is not in the schedule, or not recorded in the trace.
    """
    requested = _as_timestep_list(timesteps)
    if isinstance(inputs, Trace):
        recorded = [s for s in inputs.steps if s.latents is not None]
        if not recorded:
            raise ValueError("The trace holds no latents x_t; record them with TraceConfig(latents=True).")
        by_t = {s.timestep: s for s in recorded}
        if requested is None:
            return [StepInput(s.latents, s.timestep, s.step_index) for s in recorded]
        schedule = _schedule(scheduler, inputs.num_inference_steps)
        out = []
        for t in requested:
            if t in by_t:
                s = by_t[t]
                out.append(StepInput(s.latents, s.timestep, s.step_index))
            elif schedule is not None and t not in schedule:
                raise ValueError(
                    f"Timestep {t} is not in the schedule of this run ({_preview(schedule)}); pick one of the "
                    f"recorded timesteps {_preview(list(by_t))}."
                )
            else:
                raise ValueError(
                    f"Timestep {t} was not recorded in the trace; recorded timesteps are {_preview(list(by_t))}. "
                    "Record it with TraceConfig(steps=...)."
                )
        return out
    if not isinstance(inputs, torch.Tensor):
        raise TypeError(f"`inputs` must be a Trace or a tensor x_t, got {type(inputs).__name__}.")
    if inputs.ndim < 2:
        raise ValueError(
            "`inputs` must be a batch x_t of shape [B, *S] (images [B, C, H, W], rows [B, F], windows [B, C, L]), "
            f"got shape {tuple(inputs.shape)}."
        )
    if requested is None:
        raise ValueError("Explaining a tensor x_t needs `timesteps=` (the t of that x_t).")
    if scheduler is not None:
        schedule = [int(t) for t in scheduler.timesteps]
        bad = [t for t in requested if t not in schedule]
        if bad:
            raise ValueError(
                f"Timesteps {bad} are not in the scheduler's schedule ({_preview(schedule)}); call "
                "`scheduler.set_timesteps(n)` for the run you explain and pass timesteps from `scheduler.timesteps`."
            )
    return [StepInput(inputs, t, None) for t in requested]


def check_conditioning(denoiser: torch.nn.Module, encoder_hidden_states=None, class_labels=None) -> None:
    """Raise a `ValueError` for a condition the denoiser cannot take, or for a class-conditional one without labels."""
    name = type(denoiser).__name__
    conditional = class_embedding_module(denoiser) is not None
    if class_labels is not None and not conditional:
        raise ValueError(
            f"`class_labels` were given but {name} is unconditional (it has no class embedding); drop `class_labels` "
            "or explain a class-conditional model (e.g. UNet2DModel(num_class_embeds=...))."
        )
    if class_labels is None and conditional:
        raise ValueError(
            f"{name} is class-conditional and needs `class_labels=`: pass the `class_labels` used to sample "
            "(out.class_labels)."
        )
    if encoder_hidden_states is not None and not accepts_text_conditioning(denoiser):
        raise ValueError(
            f"`encoder_hidden_states` were given but {name} takes no text conditioning; drop them or explain a "
            "UNet2DConditionModel."
        )


def batch_class_labels(class_labels, batch_size: int, device) -> torch.Tensor:
    """`class_labels` as `[batch_size]` long labels on `device`: one label is repeated, any other count is a
    `ValueError`."""
    labels = torch.as_tensor(class_labels, device=device).long().reshape(-1)
    if labels.shape[0] == 1:
        labels = labels.expand(batch_size)
    if labels.shape[0] != batch_size:
        raise ValueError(f"`class_labels` has {labels.shape[0]} entries but x_t has batch size {batch_size}.")
    return labels


def _preview(values: list[int], n: int = 8) -> str:
    return "[" + ", ".join(map(str, values[:n])) + (", ...]" if len(values) > n else "]")


@contextmanager
def frozen_parameters(model: torch.nn.Module):
    """
    Turn off `requires_grad` on the model's parameters while explaining (restored in `finally`): attributions
    only need gradients w.r.t. inputs and activations, and skipping weight gradients roughly halves the backward.
    """
    flags = [(p, p.requires_grad) for p in model.parameters()]
    try:
        for p, _ in flags:
            p.requires_grad_(False)
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


def progress(iterable, desc: str, total: int | None = None) -> Iterator:
    """A tqdm bar over the explained steps (hidden when stderr is not a terminal or there is one step)."""
    items = list(iterable)
    return iter(tqdm(items, desc=desc, total=total, leave=False, disable=None if len(items) > 1 else True))


def check_explained_guidance(guidance_scale: float, null_class_label: int | None) -> None:
    """The pipelines' own guidance check ([`check_guidance_scale`]) for an explainer: a scale below 1, or above 1
    without a null class to contrast with, is refused."""
    check_guidance_scale(
        guidance_scale,
        null_class_label,
        without="no null class is known to explain the guided run with",
        fix="explain with the pipeline that sampled it, whose denoiser has a null class",
    )


class DenoiserExplainer:
    r"""
    Base of the explainers: binds a denoiser (from a pipeline or a bare model), its scheduler and a target.

    Subclasses implement `attribute(inputs, timesteps=None, target=None, ...)`, which takes either a [`Trace`]
    (explain the recorded $x_t$ at the chosen steps; no re-sampling: K steps cost about K forward+backward
    passes) or a tensor $x_t$ with its timestep(s). Sampling ran without gradients; `attribute()` enables them
    only for the explained forward passes, with the model's weights frozen.
    """

    method: str = ""
    guidance_scale: float = 1.0  # the explained function is the guided mix above 1 (see `guided`)

    def __init__(self, model, scheduler=None, target: ExplanationTarget | Callable | None = None):
        self.unet, self.scheduler = resolve_denoiser(model, scheduler)
        self.target = resolve_target(target)
        self.sample_shape, self.feature_names = sample_names(model)
        self.preprocessor = getattr(model, "preprocessor", None)
        label = getattr(model, "null_class_label", None)  # a pipeline's null class, what guidance contrasts with
        self.null_class_label = label if isinstance(label, int) else None

    @property
    def denoiser(self) -> torch.nn.Module:
        """The explained denoiser (a diffusers UNet or our table/series denoiser; `unet` is the same object)."""
        return self.unet

    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.unet.parameters()).dtype

    def with_model(self, unet: torch.nn.Module) -> DenoiserExplainer:
        """A shallow copy bound to another denoiser (used by the model-randomisation sanity check)."""
        clone = copy.copy(self)
        clone.unet = unet
        return clone

    def guided(self, guidance_scale: float) -> DenoiserExplainer:
        r"""
        A shallow copy that explains classifier-free guidance's $f_\varnothing + s\,(f_y - f_\varnothing)$ at scale
        $s$ = `guidance_scale`, the function that sampled a guided run (`pipe(..., guidance_scale=s)`), in its
        attributions and in the checks run on them; 1 explains $f_y$. Needs an explainer built from a pipeline
        whose denoiser has a null class. (The class-contrast target, [`ConditionTarget`], explains
        $f_y - f_\varnothing$ itself, the term guidance scales, and is the same at every scale.)
        """
        check_explained_guidance(guidance_scale, self.null_class_label)
        clone = copy.copy(self)
        clone.guidance_scale = float(guidance_scale)
        return clone

    def forward_function(self, target=None) -> DenoiserForward:
        target = resolve_target(target) if target is not None else self.target
        make = getattr(target, "forward_function", None)  # a target with its own forward (ConditionTarget)
        if make is not None:
            return make(self.unet, self.scheduler)
        return DenoiserForward(self.unet, self.scheduler, target, self.guidance_scale, self.null_class_label)

    def _steps(self, inputs, timesteps, target: ExplanationTarget) -> list[StepInput]:
        if isinstance(inputs, torch.Tensor) and self.sample_shape and tuple(inputs.shape[1:]) != self.sample_shape:
            raise ValueError(
                f"`inputs` x_t must have shape [B, {', '.join(map(str, self.sample_shape))}] for this pipeline, got "
                f"{tuple(inputs.shape)}."
            )
        if isinstance(inputs, Trace) and inputs.guidance_scale != 1 and "guidance_scale" not in self.__dict__:
            logger.warning(
                "This trace was sampled with guidance_scale=%g, but the explainer explains the conditional model "
                "alone; use explainer.guided(%g) to explain the guided mix that sampled it (or .guided(1) to keep "
                "the conditional model and silence this).",
                inputs.guidance_scale,
                inputs.guidance_scale,
            )
        steps = resolve_steps(inputs, timesteps, self.scheduler)
        for step in steps:
            target.check_mask(step.sample.shape)
        return [StepInput(s.sample.to(device=self.device, dtype=self.dtype), s.timestep, s.step_index) for s in steps]

    def _conditioning(self, encoder_hidden_states, class_labels, batch_size: int, target_inputs=None) -> dict:
        """The denoiser's conditioning for a batch (checked, on the device, expanded to `batch_size`), plus the
        target's per-sample `target_inputs` (see [`ExplanationTarget`]) under that key."""
        check_conditioning(self.unet, encoder_hidden_states, class_labels)
        cond = {}
        if encoder_hidden_states is not None:
            if encoder_hidden_states.shape[0] not in (1, batch_size):
                raise ValueError(
                    f"`encoder_hidden_states` has batch size {encoder_hidden_states.shape[0]}, x_t has {batch_size}."
                )
            cond["encoder_hidden_states"] = encoder_hidden_states.to(self.device, self.dtype).expand(
                batch_size, *encoder_hidden_states.shape[1:]
            )
        if class_labels is not None:
            cond["class_labels"] = batch_class_labels(class_labels, batch_size, self.device)
        if target_inputs is not None:
            extra = torch.as_tensor(target_inputs, device=self.device)
            if extra.shape[0] != batch_size:
                raise ValueError(f"`target_inputs` has {extra.shape[0]} entries but x_t has batch size {batch_size}.")
            cond["target_inputs"] = extra
        return cond
