r"""Why this class / this condition: the difference a condition makes to the prediction, as guidance uses it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch

from ..capture import Trace
from .base import ExplanationResult, attribution_maps, batch_class_labels, progress, resolve_denoiser, resolve_steps
from .target import DenoiserForward, ExplanationTarget, class_embedding_module, resolve_target, x0_coefficients

__all__ = ["ConditionContrast", "ConditionContrastForward", "ConditionTarget"]

NullClass = int | Literal["mean"]


@dataclass
class ConditionTarget(ExplanationTarget):
    r"""
    An [`ExplanationTarget`] of the difference the condition makes: the selected output (by default the model's
    contribution to $\hat{x}_0$) of $f(x_t, c) - f(x_t, \varnothing)$ instead of $f(x_t, c)$, with the same `mask`,
    `reduction` and `fn`. Any explainer of this package given this target attributes "why this class" to the units
    of $x_t$ ([`ConditionContrastForward`]).

    Args:
        null_class (`int` or `"mean"`, *optional*, defaults to `"mean"`): the model's unconditional class index
            (trained with label dropout), or the mean over every class for a model without one.

    Example:

    ```py
    >>> ig = DenoiserAttribution(pipe, "integrated_gradients", target=ConditionTarget(null_class=10))
    >>> ig.attribute(x_t, timesteps=[500], class_labels=labels).maps  # where in x_t the class's effect comes from
    ```
    """

    null_class: NullClass = "mean"

    def forward_function(self, denoiser: torch.nn.Module, scheduler) -> ConditionContrastForward:
        return ConditionContrastForward(denoiser, scheduler, self, self.null_class)


class ConditionContrastForward(DenoiserForward):
    r"""
    $y = \mathrm{target}\big(f(x_t, c) - f(x_t, \varnothing)\big)$: the part of the prediction that the condition
    $c$ is responsible for, the quantity classifier-free guidance scales (Ho & Salimans, 2022,
    https://arxiv.org/abs/2207.12598). With $\hat{x}_0 = a_t x_t + b_t f_\theta$ ([`x0_coefficients`]) the
    $a_t x_t$ term cancels in the difference, so in $\hat{x}_0$ units (`"model_contribution"` or
    `"pred_original_sample"`) $y$ reads $b_t\,(f_\theta(x_t, c) - f_\theta(x_t, \varnothing))$: the model's alone.

    The unconditional prediction $f(x_t, \varnothing)$ is the model's null class (`null_class=<index>`, a model
    trained with label dropout to that index) or, for a model without one, `null_class="mean"`: the mean of
    $f(x_t, k)$ over every class $k$, the unconditional prediction under a uniform class posterior. Both terms come
    from one batched forward pass. Returns `[B]` (or the contrast itself, `[B, *S]`, from [`contrast`]).
    """

    def __init__(self, denoiser: torch.nn.Module, scheduler, target: ExplanationTarget, null_class: NullClass):
        embedding = class_embedding_module(denoiser)
        if not isinstance(embedding, torch.nn.Embedding):
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
        super().__init__(denoiser, scheduler, target)
        self.null_class = null_class
        self.num_embeddings = num

    def check_labels(self, class_labels, batch_size: int, device) -> torch.Tensor:
        if class_labels is None:
            raise ValueError("'Why this class' needs `class_labels=` (the class of each explained sample).")
        labels = batch_class_labels(class_labels, batch_size, device)
        if (labels < 0).any() or (labels >= self.num_embeddings).any():
            raise ValueError(f"`class_labels` must be in [0, {self.num_embeddings}), got {labels.tolist()[:8]}.")
        if isinstance(self.null_class, int) and (labels == self.null_class).any():
            raise ValueError(
                f"`class_labels` contain the null class {self.null_class}: its contrast is 0 by definition; pass the "
                "classes of the samples."
            )
        return labels

    def contrast(self, sample: torch.Tensor, timestep: int, class_labels=None, **conditioning) -> torch.Tensor:
        """The selected output of $f(x_t, c) - f(x_t, \varnothing)$, `[B, *S]` (before mask and reduction)."""
        b = sample.shape[0]
        labels = self.check_labels(class_labels, b, sample.device)
        if self.null_class == "mean":
            nulls = torch.arange(self.num_embeddings, device=sample.device).repeat_interleave(b)
        else:
            nulls = torch.full((b,), self.null_class, dtype=torch.long, device=sample.device)
        reps = nulls.shape[0] // b
        repeat = (1 + reps, *[1] * (sample.ndim - 1))
        extra = {k: v.repeat(*repeat[: v.ndim]) for k, v in conditioning.items() if torch.is_tensor(v)}
        both = self.model_output(sample.repeat(*repeat), timestep, class_labels=torch.cat([labels, nulls]), **extra)
        delta = both[:b] - both[b:].reshape(reps, b, *both.shape[1:]).mean(dim=0)
        coefficients = x0_coefficients(self.scheduler, timestep) if self.target.needs_scheduler else None
        # a_t x_t cancels in the difference: select from a zero sample so that x0 and the contribution coincide
        return self.target.select(delta, torch.zeros_like(delta), coefficients)

    def __call__(self, sample: torch.Tensor, timestep: int, class_labels=None, **conditioning) -> torch.Tensor:
        return self.target(self.contrast(sample, timestep, class_labels, **conditioning))


class ConditionContrast:
    r"""
    "Why this class": where in $\hat{x}_0$ the condition makes a difference, $\Delta = \hat{x}_0(x_t, c) -
    \hat{x}_0(x_t, \varnothing)$, at chosen steps of a traced generation (no gradients, two predictions per step).

    For an image, the map says which pixels the class label draws; for a table row, which columns the condition
    column moves; for a window, which time points. It works on any denoiser with a class embedding: a diffusers
    `UNet2DModel(num_class_embeds=...)` or the table/series denoisers of this package. Text tokens of a
    `UNet2DConditionModel` are explained by their cross-attention instead ([`AttentionExplainer`] with
    `kind="cross"`, DAAM-style per-token maps).

    To attribute the contrast to the units of $x_t$ with any gradient or perturbation method, give that explainer a
    [`ConditionTarget`].

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
        denoiser, scheduler = resolve_denoiser(model, scheduler)
        self.forward = ConditionContrastForward(denoiser, scheduler, resolve_target(target), null_class)

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
            [`ExplanationResult`]: `attributions` $\Delta$ `[K, B, *S]` (in the target's output, by default the
            model's contribution to $\hat{x}_0$); `maps` with channels summed (`[K, B, 1, H, W]` for images, the
            attributions themselves for rows).
        """
        steps = [
            (s.sample, s.timestep, s.step_index) for s in resolve_steps(inputs, timesteps, self.forward.scheduler)
        ]
        param = next(self.forward.unet.parameters())
        deltas = []
        with torch.no_grad():
            for x, t, _ in progress(steps, desc=self.method):
                deltas.append(self.forward.contrast(x.to(param.device, param.dtype), t, class_labels).float().cpu())
        attributions = torch.stack(deltas)
        return ExplanationResult(
            method=self.method,
            attributions=attributions,
            maps=attribution_maps(attributions),
            timesteps=[t for _, t, _ in steps],
            step_indices=[i for _, _, i in steps],
            metadata={"null_class": self.forward.null_class},
        )
