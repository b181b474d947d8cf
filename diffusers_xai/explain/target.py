r"""What is explained: a scalar per sample computed from the denoiser at one step, and the forward function for it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

import torch

from ..pipelines.schedulers import predict_original_sample

__all__ = ["DenoiserForward", "ExplanationTarget", "resolve_target"]

TargetOutput = Literal["pred_original_sample", "model_output"]
_OUTPUTS = ("pred_original_sample", "model_output")


@dataclass
class ExplanationTarget:
    r"""
    The scalar $y$ an explanation is about, one value per sample.

    The default is the sum of the predicted clean sample $\hat{x}_0(x_t, t)$ over all pixels: "what in $x_t$ made
    the model predict this image". The choices:

    - `output="pred_original_sample"` ($\hat{x}_0$, computed from the model output with the scheduler's
      $\bar\alpha_t$) or `"model_output"` (the raw $\epsilon$/$v$/$x_0$ prediction; needs no scheduler).
    - `mask`: an optional region (soft masks allowed) that restricts the explanation to part of the image:
      "why is *this* stroke here". Shapes `[H, W]`, `[1 or C, H, W]` or `[1, 1 or C, H, W]`.
    - `reduction`: `"sum"` or `"mean"` over the (masked) elements. A mean divides by the mask's weight.
    - `fn`: a user callable that receives the selected output `[B, C, H, W]` (masked when `mask` is set) and
      returns `[B]` (or `[B, ...]`, reduced with `reduction`), e.g. a classifier's logit on $\hat{x}_0$.

    Args:
        output (`"pred_original_sample"` or `"model_output"`, *optional*, defaults to `"pred_original_sample"`).
        mask (`torch.Tensor`, *optional*): region mask, broadcast over batch and channels.
        reduction (`"sum"` or `"mean"`, *optional*, defaults to `"sum"`).
        fn (`Callable[[torch.Tensor], torch.Tensor]`, *optional*): custom scalar of the selected output.

    Example:

    ```py
    >>> mask = torch.zeros(16, 16); mask[:8] = 1  # top half of the image
    >>> target = ExplanationTarget(mask=mask, reduction="mean")
    >>> DenoiserGradCAM(pipe, target=target).attribute(out.trace)
    ```
    """

    output: TargetOutput = "pred_original_sample"
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
        return self.output == "pred_original_sample"

    def check_mask(self, sample_shape: Sequence[int]) -> None:
        """Raise a `ValueError` unless the mask broadcasts to one sample of shape `[*, C, H, W]`."""
        if self.mask is None:
            return
        c, h, w = (int(s) for s in sample_shape[-3:])
        m = tuple(self.mask.shape)
        ok = (
            (len(m) == 2 and m == (h, w))
            or (len(m) == 3 and m[0] in (1, c) and m[1:] == (h, w))
            or (len(m) == 4 and m[0] == 1 and m[1] in (1, c) and m[2:] == (h, w))
        )
        if not ok:
            raise ValueError(
                f"The target mask has shape {m} but samples are [B, {c}, {h}, {w}]; pass a mask of shape ({h}, {w}), "
                f"(1 or {c}, {h}, {w}) or (1, 1 or {c}, {h}, {w}) (one region for every sample in the batch)."
            )

    def __call__(self, model_output: torch.Tensor, pred_original_sample: torch.Tensor | None = None) -> torch.Tensor:
        """The target $y$ for a batch: `[B]`."""
        y = pred_original_sample if self.output == "pred_original_sample" else model_output
        if y is None:
            raise ValueError(
                "ExplanationTarget(output='pred_original_sample') needs the predicted x0; pass a scheduler."
            )
        weight = None
        if self.mask is not None:
            self.check_mask(y.shape)
            weight = self.mask.to(device=y.device, dtype=y.dtype).expand_as(y[:1])
            y = y * weight
        if self.fn is not None:
            y = self.fn(y)
            if not isinstance(y, torch.Tensor) or y.ndim == 0 or y.shape[0] != model_output.shape[0]:
                raise ValueError(
                    f"The target callable must return a tensor with the batch size {model_output.shape[0]} as first "
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


@contextmanager
def _class_embedding_override(unet: torch.nn.Module, class_embedding: torch.Tensor | None):
    """Replace the output of `unet.class_embedding` by a given (differentiable) tensor for one forward pass."""
    if class_embedding is None:
        yield
        return
    module = getattr(unet, "class_embedding", None)
    if module is None:
        raise ValueError(f"{type(unet).__name__} has no class embedding; it is not class-conditional.")
    handle = module.register_forward_hook(lambda mod, args, out: class_embedding.to(out.dtype))
    try:
        yield
    finally:
        handle.remove()


class DenoiserForward:
    r"""
    $y = \mathrm{target}(\mathrm{UNet}(x_t, t, c))$: the forward function captum and shap differentiate.

    Calls the denoiser with `x_t` (and, when given, `encoder_hidden_states`, `class_labels` or a replacement
    `class_embedding` vector — the latter lets attributions treat a discrete class label as a continuous input),
    turns the model output into $\hat{x}_0$ with the scheduler when the target needs it, and applies the
    [`ExplanationTarget`]. Returns `[B]`.
    """

    def __init__(self, unet: torch.nn.Module, scheduler, target: ExplanationTarget):
        if target.needs_scheduler and scheduler is None:
            raise ValueError(
                "Explaining the predicted x0 needs the noise schedule: pass a pipeline or `scheduler=`, or use "
                "ExplanationTarget(output='model_output')."
            )
        self.unet = unet
        self.scheduler = scheduler
        self.target = target

    def __call__(
        self,
        sample: torch.Tensor,
        timestep: int,
        encoder_hidden_states: torch.Tensor | None = None,
        class_labels: torch.Tensor | None = None,
        class_embedding: torch.Tensor | None = None,
    ) -> torch.Tensor:
        kwargs = {}
        if encoder_hidden_states is not None:
            kwargs["encoder_hidden_states"] = encoder_hidden_states
        if class_embedding is not None and class_labels is None:
            # the UNet still needs labels to take its class branch; their embedding is replaced by the hook
            class_labels = torch.zeros(sample.shape[0], dtype=torch.long, device=sample.device)
        if class_labels is not None:
            kwargs["class_labels"] = class_labels
        with _class_embedding_override(self.unet, class_embedding):
            model_output = self.unet(sample, timestep, **kwargs).sample
        x0 = None
        if self.target.needs_scheduler:
            x0 = predict_original_sample(self.scheduler, model_output, timestep, sample)
        return self.target(model_output, x0)

    def bind(self, input_names: Sequence[str], extra_names: Sequence[str], timestep: int) -> Callable:
        """A positional forward function `f(*inputs, *extras)` as captum calls it, for a fixed timestep."""
        names = list(input_names) + list(extra_names)

        def forward(*args):
            return self(timestep=timestep, **dict(zip(names, args)))

        return forward
