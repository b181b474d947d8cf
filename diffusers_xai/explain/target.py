r"""What is explained: a scalar per sample computed from the denoiser at one step, and the forward function for it."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

import torch

from ..pipelines.guidance import ClassifierFreeGuidance

__all__ = [
    "DenoiserForward",
    "ExplanationTarget",
    "class_embedding_module",
    "resolve_target",
    "x0_coefficients",
]

TargetOutput = Literal["model_contribution", "pred_original_sample", "model_output"]
_OUTPUTS = ("model_contribution", "pred_original_sample", "model_output")


def x0_coefficients(scheduler, timestep: int) -> tuple[float, float]:
    r"""
    $(a_t, b_t)$ with $\hat{x}_0 = a_t\,x_t + b_t\,f_\theta(x_t, t)$ for the scheduler's `prediction_type`:

    - `"epsilon"`: $a_t = 1/\sqrt{\bar\alpha_t}$, $b_t = -\sqrt{1-\bar\alpha_t}/\sqrt{\bar\alpha_t}$;
    - `"v_prediction"`: $a_t = \sqrt{\bar\alpha_t}$, $b_t = -\sqrt{1-\bar\alpha_t}$;
    - `"sample"`: $a_t = 0$, $b_t = 1$.

    $a_t x_t$ is the scheduler's arithmetic (no weight touches it), $b_t f_\theta$ is what the model adds.
    """
    prediction_type = scheduler.config.prediction_type
    alpha_bar = float(scheduler.alphas_cumprod[int(timestep)])
    if prediction_type == "epsilon":
        return 1 / alpha_bar**0.5, -((1 - alpha_bar) ** 0.5) / alpha_bar**0.5
    if prediction_type == "v_prediction":
        return alpha_bar**0.5, -((1 - alpha_bar) ** 0.5)
    if prediction_type == "sample":
        return 0.0, 1.0
    raise ValueError(
        f"Unsupported prediction_type {prediction_type!r}; explanations handle 'epsilon', 'v_prediction' and 'sample'."
    )


def _mask_shapes(sample_shape: Sequence[int]) -> list[tuple[int, ...]]:
    """The region-mask shapes that broadcast to one sample of shape `sample_shape` (without the batch dimension)."""
    s = tuple(int(d) for d in sample_shape)
    if len(s) == 1:  # rows [F]: one weight per feature
        return [s, (1, *s)]
    c, core = s[0], s[1:]
    return [core] + [(k, *core) for k in dict.fromkeys((1, c))] + [(1, k, *core) for k in dict.fromkeys((1, c))]


@dataclass
class ExplanationTarget:
    r"""
    The scalar $y$ an explanation is about, one value per sample, for inputs $x_t$ of shape `[B, *S]` (images
    `[B, C, H, W]`, table rows `[B, F]`, series windows `[B, C, L]`).

    With $\hat{x}_0 = a_t x_t + b_t f_\theta(x_t, t)$ ([`x0_coefficients`]), the choices of `output` are:

    - `"model_contribution"` (default): $b_t f_\theta(x_t, t) = \hat{x}_0 - a_t x_t$, the model's term of $\hat{x}_0$
      in $\hat{x}_0$'s units: "what in $x_t$ made the *model* predict this". For epsilon prediction this is
      $\hat{x}_0 - x_t/\sqrt{\bar\alpha_t}$, for v-prediction $-\sqrt{1-\bar\alpha_t}\,\hat{v}$, for sample
      prediction $\hat{x}_0$ itself. Every part of it is computed by the weights.
    - `"pred_original_sample"`: $\hat{x}_0$ itself. Its sum is dominated by $a_t x_t$, which no weight touches, so a
      method that follows its gradient mostly explains the scheduler's arithmetic (a fully randomised model gives
      nearly the same maps: [`cascading_randomization`] flags it). Kept for "where does this pixel of the
      prediction come from" questions.
    - `"model_output"`: the raw $\epsilon$/$v$/$x_0$ prediction $f_\theta$ (needs no scheduler).

    Further options:

    - `mask`: an optional region (soft masks allowed) that restricts the explanation to part of the sample: "why is
      *this* stroke / column / stretch of time here". Shapes for images `[H, W]`, `[1 or C, H, W]` or
      `[1, 1 or C, H, W]`; rows `[F]` or `[1, F]`; windows `[L]`, `[1 or C, L]` or `[1, 1 or C, L]`.
    - `reduction`: `"sum"` or `"mean"` over the (masked) elements. A mean divides by the mask's weight.
    - `fn`: a user callable that receives the selected output `[B, *S]` (masked when `mask` is set) and returns `[B]`
      (or `[B, ...]`, reduced with `reduction`), e.g. a classifier's logit on $\hat{x}_0$. When the explainer's
      `attribute(..., target_inputs=...)` gets a per-sample tensor `[B, ...]` (e.g. the level of a categorical column
      each row ends up with), `fn(selected, target_inputs)` receives it, expanded along with the inputs as captum
      expands its `additional_forward_args`.

    Args:
        output (`"model_contribution"`, `"pred_original_sample"` or `"model_output"`, *optional*, defaults to
            `"model_contribution"`).
        mask (`torch.Tensor`, *optional*): region mask, broadcast over batch (and channels).
        reduction (`"sum"` or `"mean"`, *optional*, defaults to `"sum"`).
        fn (`Callable[[torch.Tensor], torch.Tensor]`, *optional*): custom scalar of the selected output.

    Example:

    ```py
    >>> mask = torch.zeros(16, 16); mask[:8] = 1  # top half of the image
    >>> target = ExplanationTarget(mask=mask, reduction="mean")
    >>> DenoiserGradCAM(pipe, target=target).attribute(out.trace)
    ```
    """

    output: TargetOutput = "model_contribution"
    mask: torch.Tensor | None = None
    reduction: Literal["sum", "mean"] = "sum"
    fn: Callable[[torch.Tensor], torch.Tensor] | None = None

    def __post_init__(self):
        if self.output not in _OUTPUTS:
            raise ValueError(f"`output` must be one of {_OUTPUTS}, got {self.output!r}.")
        if self.reduction not in ("sum", "mean"):
            raise ValueError(f"`reduction` must be 'sum' or 'mean', got {self.reduction!r}.")
        if self.mask is not None and not isinstance(self.mask, torch.Tensor):
            raise TypeError(f"`mask` must be a torch.Tensor, got {type(self.mask).__name__}.")
        if self.fn is not None and not callable(self.fn):
            raise TypeError(f"`fn` must be callable, got {type(self.fn).__name__}.")

    @property
    def needs_scheduler(self) -> bool:
        return self.output != "model_output"

    def check_mask(self, sample_shape: Sequence[int]) -> None:
        """Raise a `ValueError` unless the mask broadcasts to one sample of a batch of shape `[B, *S]`."""
        if self.mask is None:
            return
        s = tuple(int(d) for d in sample_shape[1:])
        allowed = _mask_shapes(s)
        m = tuple(self.mask.shape)
        if m not in allowed:
            kind = {1: "rows", 2: "windows", 3: "samples"}.get(len(s), "samples")
            shapes = ", ".join(str(a) for a in allowed)
            raise ValueError(
                f"The target mask has shape {m} but {kind} are [B, {', '.join(map(str, s))}]; pass a mask of shape "
                f"{shapes} (one region for every sample in the batch)."
            )

    def select(
        self, model_output: torch.Tensor, sample: torch.Tensor | None = None, coefficients: tuple | None = None
    ) -> torch.Tensor:
        """The output the target reads, `[B, *S]`: $b_t f_\\theta$, $a_t x_t + b_t f_\\theta$ or $f_\\theta$."""
        if self.output == "model_output":
            return model_output
        if coefficients is None or sample is None:
            raise ValueError(f"ExplanationTarget(output={self.output!r}) needs the noise schedule; pass a scheduler.")
        a, b = coefficients
        out = b * model_output.float()
        if self.output == "pred_original_sample":
            out = out + a * sample.float()
        return out.to(model_output.dtype)

    def __call__(self, selected: torch.Tensor, target_inputs: torch.Tensor | None = None) -> torch.Tensor:
        """The target $y$ `[B]` of the selected output `[B, *S]` (see [`select`])."""
        y = selected
        weight = None
        if self.mask is not None:
            self.check_mask(y.shape)
            weight = self.mask.to(device=y.device, dtype=y.dtype).expand_as(y[:1])
            y = y * weight
        if target_inputs is not None and self.fn is None:
            raise ValueError("`target_inputs` were given but the target has no `fn` to read them; pass `fn=`.")
        if self.fn is not None:
            y = self.fn(y) if target_inputs is None else self.fn(y, target_inputs)
            if not isinstance(y, torch.Tensor) or y.ndim == 0 or y.shape[0] != selected.shape[0]:
                raise ValueError(
                    f"The target callable must return a tensor with the batch size {selected.shape[0]} as first "
                    f"dimension, got {getattr(y, 'shape', type(y).__name__)}."
                )
            weight = None
        y = y.reshape(y.shape[0], -1)
        if self.reduction == "sum":
            return y.sum(dim=1)
        denominator = weight.sum() if weight is not None else y.shape[1]
        return y.sum(dim=1) / denominator


def resolve_target(target: ExplanationTarget | Callable | None) -> ExplanationTarget:
    """`None` → the default target; a callable → `ExplanationTarget(fn=callable)`; a target → itself."""
    if target is None:
        return ExplanationTarget()
    if isinstance(target, ExplanationTarget):
        return target
    if callable(target):
        return ExplanationTarget(fn=target)
    raise TypeError(f"`target` must be an ExplanationTarget, a callable or None, got {type(target).__name__}.")


def class_embedding_module(denoiser: torch.nn.Module) -> torch.nn.Module | None:
    """The class-embedding layer of a denoiser: `UNet2DModel.class_embedding` or our denoisers'
    `embedder.class_embedding` (`None` for an unconditional model)."""
    module = getattr(denoiser, "class_embedding", None)
    if module is None:
        module = getattr(getattr(denoiser, "embedder", None), "class_embedding", None)
    return module if isinstance(module, torch.nn.Module) else None


def accepts_text_conditioning(denoiser: torch.nn.Module) -> bool:
    return "encoder_hidden_states" in inspect.signature(denoiser.forward).parameters


@contextmanager
def _class_embedding_override(unet: torch.nn.Module, class_embedding: torch.Tensor | None):
    """Replace the output of the denoiser's class embedding by a given (differentiable) tensor for one forward pass."""
    if class_embedding is None:
        yield
        return
    module = class_embedding_module(unet)
    if module is None:
        raise ValueError(f"{type(unet).__name__} has no class embedding; it is not class-conditional.")
    handle = module.register_forward_hook(lambda mod, args, out: class_embedding.to(out.dtype))
    try:
        yield
    finally:
        handle.remove()


class DenoiserForward:
    r"""
    $y = \mathrm{target}(f_\theta(x_t, t, c))$: the forward function captum and shap differentiate, for any denoiser
    over `[B, *S]` (diffusers UNets, our table and series denoisers).

    Calls the denoiser with `x_t` (and, when given, `encoder_hidden_states`, `class_labels` or a replacement
    `class_embedding` vector — the latter lets attributions treat a discrete class label as a continuous input),
    selects the target's output (model contribution to $\hat{x}_0$, $\hat{x}_0$ or the raw output, with the
    scheduler's coefficients) and applies the [`ExplanationTarget`]. Returns `[B]`.

    With `guidance_scale` $s > 1$ the model output is classifier-free guidance's mix
    $f_\varnothing + s\,(f_y - f_\varnothing)$, the null class `null_class_label` in $f_\varnothing$, as the pipeline
    sampled a guided run ([`~diffusers_xai.pipelines.guidance.ClassifierFreeGuidance`]); a replaced class embedding
    enters $f_y$ only.
    """

    def __init__(
        self,
        unet: torch.nn.Module,
        scheduler,
        target: ExplanationTarget,
        guidance_scale: float = 1.0,
        null_class_label: int | None = None,
    ):
        if target.needs_scheduler and scheduler is None:
            raise ValueError(
                f"Explaining {target.output!r} needs the noise schedule: pass a pipeline or `scheduler=`, or use "
                "ExplanationTarget(output='model_output')."
            )
        if guidance_scale != 1 and null_class_label is None:
            raise ValueError(f"guidance_scale={guidance_scale} needs the null class; pass `null_class_label`.")
        self.unet = unet
        self.scheduler = scheduler
        self.target = target
        self.guidance_scale = float(guidance_scale)
        self.null_class_label = null_class_label

    def model_output(
        self,
        sample: torch.Tensor,
        timestep: int,
        encoder_hidden_states: torch.Tensor | None = None,
        class_labels: torch.Tensor | None = None,
        class_embedding: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """$f_\\theta(x_t, t, c)$, `[B, *S]`."""
        kwargs = {}
        if encoder_hidden_states is not None:
            kwargs["encoder_hidden_states"] = encoder_hidden_states
        if class_embedding is not None and class_labels is None:
            # the denoiser still needs labels to take its class branch; their embedding is replaced by the hook
            class_labels = torch.zeros(sample.shape[0], dtype=torch.long, device=sample.device)
        if self.guidance_scale != 1:
            return self._guided_output(sample, timestep, kwargs, class_labels, class_embedding)
        if class_labels is not None:
            kwargs["class_labels"] = class_labels
        with _class_embedding_override(self.unet, class_embedding):
            return self.unet(sample, timestep, **kwargs).sample

    def _guided_output(self, sample, timestep, kwargs: dict, class_labels, class_embedding) -> torch.Tensor:
        r"""$f_\varnothing + s\,(f_y - f_\varnothing)$ through the pipeline's own [`ClassifierFreeGuidance`]: one call
        on the stacked batch $[x_t \mid \varnothing;\ x_t \mid y]$, so a layer's activations hold both passes
        (GradCAM sums them), and a replaced class embedding enters the $y$ half only (the null half keeps its own)."""
        if class_labels is None:
            raise ValueError("Explaining a guided run needs the `class_labels` it was sampled with.")
        if class_embedding is not None:
            with torch.no_grad():
                null = class_embedding_module(self.unet)(torch.full_like(class_labels, self.null_class_label))
            class_embedding = torch.cat([null.to(class_embedding.dtype), class_embedding])
        guided = ClassifierFreeGuidance(self.unet, self.null_class_label, self.guidance_scale)
        with _class_embedding_override(self.unet, class_embedding):
            return guided(sample, timestep, class_labels, **kwargs).sample

    def __call__(
        self, sample: torch.Tensor, timestep: int, target_inputs: torch.Tensor | None = None, **conditioning
    ) -> torch.Tensor:
        model_output = self.model_output(sample, timestep, **conditioning)
        coefficients = x0_coefficients(self.scheduler, timestep) if self.target.needs_scheduler else None
        return self.target(self.target.select(model_output, sample, coefficients), target_inputs)

    def bind(self, input_names: Sequence[str], extra_names: Sequence[str], timestep: int) -> Callable:
        """A positional forward function `f(*inputs, *extras)` as captum calls it, for a fixed timestep."""
        names = list(input_names) + list(extra_names)

        def forward(*args):
            return self(timestep=timestep, **dict(zip(names, args)))

        return forward
