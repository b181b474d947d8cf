"""The one plug-in shape every modality (images, tables, time series) implements.

The trainer (`diffusers_xai.training`), the CLI and the Space only talk to a `Modality`, so adding a modality
is one new module registered here, not edits in five places.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import torch

__all__ = ["MODALITIES", "Modality", "get_modality", "register_modality"]

MODALITIES: dict[str, type[Modality]] = {}


class Modality(ABC):
    """
    dataset → tensors, denoiser factory, pipeline class, preprocessor.

    Subclasses set `name` and `pipeline_class` and implement the five methods. `config` is the training
    config object (a dataclass with the YAML/CLI fields); each modality reads only the fields it knows.
    """

    name: ClassVar[str]
    pipeline_class: ClassVar[type]

    @abstractmethod
    def load_dataset(self, config) -> Any:
        """The raw training data as an HF `datasets.Dataset` (or `IterableDataset` when streaming)."""

    @abstractmethod
    def fit_preprocessor(self, dataset, config) -> Any | None:
        """Fit what turns raw rows into model space (quantile transform, normalisation); `None` if nothing."""

    @abstractmethod
    def to_tensors(self, examples: dict[str, list], preprocessor, config) -> dict[str, torch.Tensor]:
        """Batched transform for `dataset.set_transform`: returns at least `{"x0": [B, ...] float tensor}`
        (and `"class_labels"` when conditioning)."""

    @abstractmethod
    def build_model(self, config, preprocessor) -> torch.nn.Module:
        """The denoiser (a diffusers `ModelMixin` + `ConfigMixin`), from the config."""

    @abstractmethod
    def build_pipeline(self, model, scheduler, preprocessor):
        """The `DiffusionPipeline` to save at the end of training (the preprocessor is saved with it)."""


def register_modality(cls: type[Modality]) -> type[Modality]:
    """Class decorator adding a modality to the registry under `cls.name`."""
    MODALITIES[cls.name] = cls
    return cls


def get_modality(name: str) -> Modality:
    if name not in MODALITIES:
        raise ValueError(f"Unknown modality {name!r}; choose one of {sorted(MODALITIES)}.")
    return MODALITIES[name]()
