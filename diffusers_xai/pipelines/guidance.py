r"""
Class conditioning and classifier-free guidance for class-conditional denoisers (`UNet2DModel` with
`num_class_embeds`).

**Convention** (what `train_ddpm.py` trains and what the pipelines read): a model for $K$ classes has
`num_class_embeds = K + 1`; labels $0..K-1$ are the classes and label $K$ is the *null class*, the "no label"
embedding that label dropout trains, so one model samples both $p(x \mid y)$ and $p(x)$. The class names are stored
in the pipeline config (`class_names`, saved in `model_index.json`), so they survive `save_pretrained` /
`from_pretrained`. A model built in code only has to follow the same convention.

Guidance (Ho & Salimans 2022, https://huggingface.co/papers/2207.12598), as diffusers' pipelines do it: one forward
pass on the batch $[x_t; x_t]$ with labels $[\varnothing; y]$, then
$\hat\epsilon = \epsilon_\varnothing + s\,(\epsilon_y - \epsilon_\varnothing)$ (on whatever the model predicts:
$\epsilon$, $v$ or $x_0$, all linear in it at fixed $x_t$). $s = 1$ is the conditional model alone and skips the
unconditional pass, so its samples are the conditional model's, bit for bit.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from diffusers.utils import BaseOutput

__all__ = ["ClassifierFreeGuidance", "check_guidance_scale", "num_classes_of", "resolve_class_labels"]


def num_classes_of(unet) -> int | None:
    """$K$ for a class-conditional UNet following the convention above (`num_class_embeds - 1`), else `None`."""
    embeds = getattr(unet.config, "num_class_embeds", None)
    if embeds is None or getattr(unet.config, "class_embed_type", None) not in (None, "embedding"):
        return None
    return int(embeds) - 1


def resolve_class_labels(
    class_labels, batch_size: int, num_classes: int | None, class_names: Sequence[str] | None = None
) -> torch.Tensor | None:
    """
    `class_labels` (an int or class name for the whole batch, or a list/tensor with one per sample) as a `[batch_size]`
    long tensor; `None` stays `None`. Raises `ValueError` naming the valid labels for out-of-range ints, unknown
    names, a wrong length, or labels for an unconditional model.
    """
    if class_labels is None:
        return None
    if num_classes is None:
        raise ValueError(
            f"`class_labels` ({class_labels!r}) were given but this UNet is unconditional (no num_class_embeds); "
            "train a class-conditional model (`train_ddpm.py` does when the data has a `label` column) or drop them."
        )
    if isinstance(class_labels, torch.Tensor):
        class_labels = class_labels.tolist()
    items = list(class_labels) if isinstance(class_labels, (list, tuple)) else [class_labels]
    if len(items) == 1:
        items = items * batch_size
    if len(items) != batch_size:
        raise ValueError(
            f"Got {len(items)} class labels for batch_size={batch_size}; pass one label for the whole batch or one "
            "per sample."
        )
    names = list(class_names) if class_names else [str(i) for i in range(num_classes)]
    return torch.tensor([_label_index(item, num_classes, names) for item in items], dtype=torch.long)


def _label_index(item, num_classes: int, names: list[str]) -> int:
    if isinstance(item, str):
        if item in names:
            return names.index(item)
        if item.isdecimal() and int(item) < num_classes:  # an index as a command line gives it ("1" for 1)
            return int(item)
        close = difflib.get_close_matches(item, names, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(
            f"Unknown class name {item!r}; this model's classes are {names} (or their indices 0..{num_classes - 1})."
            f"{hint}"
        )
    if isinstance(item, bool) or not isinstance(item, int):
        raise ValueError(f"Class labels must be ints or class names, got {item!r} ({type(item).__name__}).")
    if not 0 <= item < num_classes:
        raise ValueError(
            f"Class label {item} is outside this model's classes 0..{num_classes - 1} (num_class_embeds="
            f"{num_classes + 1}, the last one is the null class); pass a label in 0..{num_classes - 1} or one of "
            f"the class names {names}."
        )
    return item


def check_guidance_scale(
    guidance_scale: float,
    num_classes: int | None,
    without: str = "this UNet is unconditional",
    fix: str = "train with a label column (`--label_column`)",
) -> None:
    """`ValueError` for a scale below 1, or for guidance when `num_classes` is `None` (no null class: `without` says
    why, `fix` what to do)."""
    if isinstance(guidance_scale, bool) or not isinstance(guidance_scale, (int, float)) or not guidance_scale >= 1:
        raise ValueError(
            f"`guidance_scale` must be a number >= 1 (1 = no guidance, 3 is a good start), got {guidance_scale!r}."
        )
    if guidance_scale > 1 and num_classes is None:
        raise ValueError(
            f"`guidance_scale`={guidance_scale} needs a class-conditional model trained with label dropout; "
            f"{without}. Use guidance_scale=1, or {fix}."
        )


@dataclass
class GuidedOutput(BaseOutput):
    sample: torch.Tensor


class ClassifierFreeGuidance:
    r"""
    `model(x_t, t, class_labels=y).sample` → $f_\varnothing + s\,(f_y - f_\varnothing)$ from one forward pass on the
    doubled batch (unconditional half first, as diffusers' pipelines). Call it as the model it wraps; other batched
    keyword arguments are doubled alongside. The explainers call it too, so they explain the function that sampled.

    Args:
        model: a class-conditional denoiser (`model(x, t, class_labels=...).sample`).
        null_class_label (`int`): the null class index ($K$).
        guidance_scale (`float`): $s > 1$.
    """

    def __init__(self, model, null_class_label: int, guidance_scale: float):
        self.model = model
        self.null_class_label = null_class_label
        self.guidance_scale = float(guidance_scale)

    def __call__(self, sample: torch.Tensor, timestep, class_labels: torch.Tensor, **model_kwargs) -> GuidedOutput:
        null = torch.full_like(class_labels, self.null_class_label)
        doubled = {k: torch.cat([v, v]) for k, v in model_kwargs.items()}
        out = self.model(
            torch.cat([sample, sample]), timestep, class_labels=torch.cat([null, class_labels]), **doubled
        ).sample
        uncond, cond = out.chunk(2)
        return GuidedOutput(sample=uncond + self.guidance_scale * (cond - uncond))
