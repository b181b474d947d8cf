"""Are class-conditional samples of the asked class? Per-class accuracy of a classifier on guided samples."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

__all__ = ["ClassAccuracy", "class_conditional_accuracy"]


@dataclass
class ClassAccuracy:
    """Accuracy of `classifier` on `samples_per_class` samples of each class, sampled at `guidance_scale`."""

    mean: float
    per_class: dict[str, float]
    samples_per_class: int
    guidance_scale: float
    num_inference_steps: int
    scheduler: str
    confusion: list[list[int]] = field(default_factory=list)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@torch.no_grad()
def class_conditional_accuracy(
    pipeline,
    classifier: torch.nn.Module | None = None,
    samples_per_class: int = 50,
    guidance_scale: float = 3.0,
    num_inference_steps: int = 20,
    scheduler: str = "dpmsolver",
    batch_size: int = 250,
    seed: int = 0,
    progress: bool = True,
) -> ClassAccuracy:
    """
    Sample `samples_per_class` images of every class of a class-conditional [`DiffusionXAIPipeline`] (classifier-free
    guidance at `guidance_scale`, `scheduler` with `num_inference_steps`) and score them with `classifier`'s
    `logits([N, C, H, W] in [0, 1])` (default: the shipped digits-CNN, whose classes are the digits 0-9, so the
    pipeline's class `k` must be digit `k`). Batch `b` is seeded `seed + b`.

    Returns:
        [`ClassAccuracy`]: the mean and per-class accuracy, and the confusion matrix `[asked][predicted]`.
    """
    from .features import resolve_feature_extractor

    num_classes = pipeline.num_classes
    if num_classes is None:
        raise ValueError("Per-class accuracy needs a class-conditional pipeline; this UNet has no class embedding.")
    classifier = resolve_feature_extractor(classifier if classifier is not None else "digits-cnn")
    sampler = pipeline.with_scheduler(scheduler)  # the noise schedule only: no sampler setting made by hand
    sampler.set_progress_bar_config(disable=True)
    asked = torch.arange(num_classes).repeat_interleave(samples_per_class)
    predicted = []
    batches = range(0, len(asked), batch_size)
    for b, start in enumerate(tqdm(batches, desc="class-conditional samples", disable=not progress)):
        labels = asked[start : start + batch_size]
        images = sampler(
            batch_size=len(labels),
            generator=torch.Generator().manual_seed(seed + b),
            num_inference_steps=num_inference_steps,
            class_labels=labels,
            guidance_scale=guidance_scale,
            output_type="pt",
        ).images
        predicted.append(classifier.logits(images.float().cpu()).argmax(dim=1))
    predicted = torch.cat(predicted)
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.long)
    for a, p in zip(asked.tolist(), predicted.tolist()):
        if p < num_classes:
            confusion[a, p] += 1
    correct = (predicted == asked).float().view(num_classes, samples_per_class).mean(dim=1)
    names = sampler.class_names
    return ClassAccuracy(
        mean=float(correct.mean()),
        per_class={names[k]: float(correct[k]) for k in range(num_classes)},
        samples_per_class=samples_per_class,
        guidance_scale=float(guidance_scale),
        num_inference_steps=num_inference_steps,
        scheduler=scheduler,
        confusion=confusion.tolist(),
    )
