r"""Why this class / this condition: the difference a condition makes to the prediction, as guidance uses it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import torch

from ..capture import Trace
from ..pipelines.schedulers import predict_original_sample
from .base import ExplanationResult, progress, recorded_inputs
from .target import ExplanationTarget, resolve_target

__all__ = ["ConditionContrast", "ConditionContrastForward", "class_embedding_module"]

NullClass = int | Literal["mean"]


def class_embedding_module(denoiser: torch.nn.Module) -> torch.nn.Embedding | None:
    """The class-label embedding of a diffusers `UNet2DModel` (`class_embedding`) or of our table/series
    denoisers (`embedder.class_embedding`); `None` for an unconditional model."""
    module = getattr(denoiser, "class_embedding", None)
    if module is None:
        module = getattr(getattr(denoiser, "embedder", None), "class_embedding", None)
    return module if isinstance(module, torch.nn.Embedding) else None


def _denoiser_of(model) -> tuple[torch.nn.Module, object]:
    for name in ("unet", "denoiser"):
        denoiser = getattr(model, name, None)
        if isinstance(denoiser, torch.nn.Module):
            return denoiser, getattr(model, "scheduler", None)
    if isinstance(model, torch.nn.Module):
        return model, None
    raise TypeError(f"Expected a diffusers pipeline or a denoiser (torch.nn.Module), got {type(model).__name__}.")


class ConditionContrastForward:
    r"""
    $y = \mathrm{target}\big(f(x_t, c) - f(x_t, \varnothing)\big)$: the part of the prediction that the condition
    $c$ is responsible for, the quantity classifier-free guidance scales (Ho & Salimans, 2022,
    https://arxiv.org/abs/2207.12598). $f$ is $\hat{x}_0$ (or the raw model output, by `target.output`). In
    $\hat{x}_0$ units the $x_t/\sqrt{\bar\alpha_t}$ term cancels, so $y$ is the model's alone:
    $\Delta\hat{x}_0 = -\sqrt{1-\bar\alpha_t}/\sqrt{\bar\alpha_t}\,(\epsilon_\theta(x_t, c) - \epsilon_\theta(x_t,
    \varnothing))$ for $\epsilon$-prediction, $-\sqrt{1-\bar\alpha_t}\,(v_c - v_\varnothing)$ for $v$-prediction.

    The unconditional prediction $f(x_t, \varnothing)$ is the model's null class (`null_class=<index>`, a model
    trained with label dropout to that index) or, for a model without one, `null_class="mean"`: the mean of
    $f(x_t, k)$ over every class $k$, the unconditional prediction under a uniform class posterior.
    Returns `[B]` (or the contrast itself, `[B, *S]`, from [`contrast`]).
    """

    def __init__(self, denoiser: torch.nn.Module, scheduler, target: ExplanationTarget, null_class: NullClass):
        embedding = class_embedding_module(denoiser)
        if embedding is None:
            raise ValueError(
                f"{type(denoiser).__name__} is unconditional (it has no class embedding), so there is no condition "
                "to explain: train a class-conditional model (UNet2DModel(num_class_embeds=...), or a table/series "
                "denoiser with a condition column) or explain this one without `class_labels`."
            )
        num = embedding.num_embeddings
        if null_class != "mean" and not (isinstance(null_class, int) and 0 <= null_class < num):
            raise ValueError(
                f"`null_class` must be the index of the model's null (unconditional) class in [0, {num}) or 'mean' "
                f"(average over every class) for a model trained without label dropout, got {null_class!r}."
            )
        if target.needs_scheduler and scheduler is None:
            raise ValueError(
                "The contrast in x0 units needs the noise schedule: pass a pipeline or `scheduler=`, or use "
                "ExplanationTarget(output='model_output')."
            )
        self.denoiser, self.scheduler, self.target, self.null_class = denoiser, scheduler, target, null_class
        self.num_embeddings = num

    def check_labels(self, class_labels, batch_size: int, device) -> torch.Tensor:
        if class_labels is None:
            raise ValueError("'Why this class' needs `class_labels=` (the class of each explained sample).")
        labels = torch.as_tensor(class_labels, device=device).long().reshape(-1)
        if labels.shape[0] == 1:
            labels = labels.expand(batch_size)
        if labels.shape[0] != batch_size:
            raise ValueError(f"`class_labels` has {labels.shape[0]} entries but x_t has batch size {batch_size}.")
        if (labels < 0).any() or (labels >= self.num_embeddings).any():
            raise ValueError(f"`class_labels` must be in [0, {self.num_embeddings}), got {labels.tolist()[:8]}.")
        if isinstance(self.null_class, int) and (labels == self.null_class).any():
            raise ValueError(
                f"`class_labels` contain the null class {self.null_class}: its contrast is 0 by definition; pass the "
                "classes of the samples."
            )
        return labels

    def _predict(self, sample: torch.Tensor, timestep: int, labels: torch.Tensor) -> torch.Tensor:
        out = self.denoiser(sample, timestep, class_labels=labels).sample
        if self.target.needs_scheduler:
            out = predict_original_sample(self.scheduler, out, timestep, sample)
        return out

    def contrast(self, sample: torch.Tensor, timestep: int, class_labels) -> torch.Tensor:
        """$f(x_t, c) - f(x_t, \\varnothing)$, `[B, *S]`: one batched forward pass for both terms."""
        b = sample.shape[0]
        labels = self.check_labels(class_labels, b, sample.device)
        if self.null_class == "mean":
            nulls = torch.arange(self.num_embeddings, device=sample.device).repeat_interleave(b)
        else:
            nulls = torch.full((b,), self.null_class, dtype=torch.long, device=sample.device)
        reps = nulls.shape[0] // b
        both = self._predict(sample.repeat(1 + reps, *[1] * (sample.ndim - 1)), timestep, torch.cat([labels, nulls]))
        conditional, unconditional = both[:b], both[b:].reshape(reps, *sample.shape).mean(dim=0)
        return conditional - unconditional

    def __call__(self, sample: torch.Tensor, timestep: int, class_labels=None) -> torch.Tensor:
        delta = self.contrast(sample, timestep, class_labels)
        return self.target(delta, delta)

    def bind(self, timestep: int) -> Callable:
        """`f(x_t, class_labels) -> [B]` at a fixed timestep, as captum calls it."""
        return lambda sample, class_labels: self(sample, timestep, class_labels)


class ConditionContrast:
    r"""
    "Why this class": where in $\hat{x}_0$ the condition makes a difference, $\Delta = \hat{x}_0(x_t, c) -
    \hat{x}_0(x_t, \varnothing)$, at chosen steps of a traced generation (no gradients, two predictions per step).

    For an image, the map says which pixels the class label draws; for a table row, which columns the condition
    column moves; for a window, which time points. It works on any denoiser with a class embedding: a diffusers
    `UNet2DModel(num_class_embeds=...)` or the table/series denoisers of this package. Text tokens of a
    `UNet2DConditionModel` are explained by their cross-attention instead ([`AttentionExplainer`] with
    `kind="cross"`, DAAM-style per-token maps).

    To attribute the contrast to the pixels of $x_t$ with any gradient or perturbation method, use
    [`ConditionContrastForward`] as the forward function.

    Args:
        model (`DiffusionPipeline` or `torch.nn.Module`): a pipeline or a class-conditional denoiser.
        scheduler (*optional*): needed with a bare denoiser when the output is $\hat{x}_0$.
        null_class (`int` or `"mean"`, *optional*, defaults to `"mean"`): the model's unconditional class index
            (trained with label dropout), or the mean over every class for a model without one.
        target ([`ExplanationTarget`], *optional*): `output="model_output"` contrasts raw model outputs instead.

    Example:

    ```py
    >>> out = pipe(batch_size=4, class_labels=[2] * 4, trace=True, output_type="pt")
    >>> res = ConditionContrast(pipe, null_class=4).attribute(out.trace, class_labels=[2] * 4)
    >>> res.maps.shape  # [K, 4, 1, H, W]: what class 2 adds to x0_hat at each explained step
    ```
    """

    method = "condition_contrast"

    def __init__(
        self,
        model,
        scheduler=None,
        null_class: NullClass = "mean",
        target: ExplanationTarget | Callable | None = None,
    ):
        denoiser, pipe_scheduler = _denoiser_of(model)
        self.forward = ConditionContrastForward(
            denoiser, scheduler or pipe_scheduler, resolve_target(target), null_class
        )

    def attribute(
        self, inputs: Trace | torch.Tensor, timesteps: int | Sequence[int] | None = None, class_labels=None
    ) -> ExplanationResult:
        r"""
        Args:
            inputs ([`Trace`] or `torch.Tensor`): a trace (its recorded $x_t$) or a batch $x_t$ `[B, *S]`.
            timesteps (`int` or `list[int]`, *optional*): default every recorded step of a trace; required for a
                tensor.
            class_labels (`[B]` ints): the condition of each sample.

        Returns:
            [`ExplanationResult`]: `attributions` $\Delta$ `[K, B, *S]`; `maps` the same with image channels
            summed (`[K, B, 1, H, W]` for images).
        """
        if isinstance(inputs, Trace):
            steps = [(x, t, i) for x, t, i in recorded_inputs(inputs, timesteps)]
        elif isinstance(inputs, torch.Tensor):
            if timesteps is None:
                raise ValueError("Explaining a tensor x_t needs `timesteps=` (the t of that x_t).")
            steps = [(inputs, int(t), None) for t in torch.as_tensor(timesteps).reshape(-1).tolist()]
        else:
            raise TypeError(f"`inputs` must be a Trace or a tensor x_t, got {type(inputs).__name__}.")
        param = next(self.forward.denoiser.parameters())
        deltas = []
        with torch.no_grad():
            for x, t, _ in progress(steps, desc=self.method):
                deltas.append(self.forward.contrast(x.to(param.device, param.dtype), t, class_labels).float().cpu())
        attributions = torch.stack(deltas)
        maps = attributions.sum(dim=2, keepdim=True) if attributions.ndim == 5 else attributions
        return ExplanationResult(
            method=self.method,
            attributions=attributions,
            maps=maps,
            timesteps=[t for _, t, _ in steps],
            step_indices=[i for _, _, i in steps],
            metadata={"null_class": self.forward.null_class},
        )
