"""The one plug-in shape every modality (images, tables, time series) implements.

The trainer (`diffusers_xai.training`), the CLI and the Space only talk to a `Modality`, so adding a modality
is one new module registered here, not edits in five places.
"""

from __future__ import annotations

import importlib
import os
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import torch

__all__ = ["MODALITIES", "Modality", "get_modality", "load_hf_dataset", "register_modality"]

MODALITIES: dict[str, type[Modality]] = {}

# `dataset_name` values ending like this are read with the matching `datasets` builder (`load_dataset("csv", ...)`).
DATA_FILE_BUILDERS = {".csv": "csv", ".tsv": "csv", ".parquet": "parquet", ".json": "json", ".jsonl": "json"}


class Modality(ABC):
    """
    dataset → tensors, denoiser factory, pipeline class, preprocessor.

    Subclasses set `name` and `pipeline_class` and implement the five abstract methods. `config` is the training
    config ([`TrainingConfig`], a dataclass with the YAML/CLI fields); each modality reads only the fields it knows.

    Keys only one modality understands (say `categorical_columns`) are declared in `options` (name → default).
    [`TrainingConfig`] then accepts them in YAML and on the command line when `modality` names this modality,
    rejects them otherwise, and exposes them as attributes: `config.categorical_columns`.

    The trainer calls, in order: `validate_config` (before any data is read), `load_dataset`, `fit_preprocessor`,
    `to_tensors` (as `dataset.set_transform`), `build_model`, then `build_pipeline` for validation and at the end
    of training, and `log_validation` every `validation_steps`.
    """

    name: ClassVar[str]
    pipeline_class: ClassVar[type]
    options: ClassVar[dict[str, Any]] = {}

    def validate_config(self, config) -> None:
        """Raise `ValueError` for settings this modality cannot train with; runs before any data is loaded."""

    @abstractmethod
    def load_dataset(self, config) -> Any:
        """The raw training data as an HF `datasets.Dataset`; raise `ValueError` if a needed column is missing."""

    @abstractmethod
    def fit_preprocessor(self, dataset, config) -> Any | None:
        """Fit what turns raw rows into model space (quantile transform, normalisation); `None` if nothing."""

    @abstractmethod
    def to_tensors(self, examples: dict[str, list], preprocessor, config) -> dict[str, torch.Tensor]:
        """Batched transform for `dataset.set_transform`: returns at least `{"x0": [B, ...] float tensor}`
        (and `"class_labels"` when conditioning)."""

    @abstractmethod
    def build_model(self, config, preprocessor) -> torch.nn.Module:
        """The denoiser (a diffusers `ModelMixin` + `ConfigMixin`), from the config. Called as
        `model(x_t, t).sample`, or `model(x_t, t, class_labels=...).sample` when batches carry labels."""

    @abstractmethod
    def build_pipeline(self, model, scheduler, preprocessor):
        """The `DiffusionPipeline` to save at the end of training (the preprocessor is saved with it)."""

    def log_validation(self, pipeline, step: int, config, accelerator) -> None:
        """Optional: sample from `pipeline` with a fixed seed and save/log what shows progress (e.g. a PNG grid)."""


def register_modality(cls: type[Modality]) -> type[Modality]:
    """Class decorator adding a modality to the registry under `cls.name`."""
    MODALITIES[cls.name] = cls
    return cls


def get_modality(name: str) -> Modality:
    """The registered modality `name`, importing `diffusers_xai.modalities.<name>` on first use."""
    if isinstance(name, str) and name not in MODALITIES and name.isidentifier():
        try:
            importlib.import_module(f"{__package__}.{name}")
        except ModuleNotFoundError as err:
            if err.name != f"{__package__}.{name}":
                raise
    if name not in MODALITIES:
        raise ValueError(f"Unknown modality {name!r}; choose one of {sorted(MODALITIES) or ['image']}.")
    return MODALITIES[name]()


def load_hf_dataset(config, split: str | None = None):
    """
    Read `config.dataset_name` / `config.train_data_dir` as an HF `datasets.Dataset` (shared by all modalities).

    `dataset_name` may be a directory written by `save_to_disk`, a `.csv`/`.parquet`/`.json(l)` file, or a Hub
    dataset id; `train_data_dir` is an `imagefolder`. `split` defaults to `config.split` (or `"train"`).
    """
    import datasets

    split = split or getattr(config, "split", None) or "train"
    name = getattr(config, "dataset_name", None)
    try:
        data = _load(config, name, getattr(config, "cache_dir", None))
    except ValueError as err:  # datasets' wording for a source with no rows
        if "corresponds to no data" not in str(err):
            raise
        raise ValueError(
            f"The dataset {name or config.train_data_dir!r} (split {split!r}) is empty; there is nothing to train on."
        ) from err
    except IndexError as err:  # `load_from_disk` of a dataset saved with zero rows
        raise ValueError(f"The dataset {name!r} could not be read; is it empty or incomplete?") from err
    if isinstance(data, (datasets.DatasetDict, datasets.IterableDatasetDict)):
        if split not in data:
            raise ValueError(f"Split {split!r} not found in {name or config.train_data_dir!r}; it has {list(data)}.")
        data = data[split]
    return data


def _load(config, name: str | None, cache_dir: str | None):
    import datasets

    if getattr(config, "train_data_dir", None):
        data = datasets.load_dataset("imagefolder", data_dir=config.train_data_dir, cache_dir=cache_dir)
    elif name is None:
        raise ValueError("Set `dataset_name` (Hub id, `save_to_disk` folder or CSV/Parquet file) or `train_data_dir`.")
    elif os.path.isdir(name) and any(
        os.path.isfile(os.path.join(name, f)) for f in ("dataset_info.json", "state.json", "dataset_dict.json")
    ):
        data = datasets.load_from_disk(name)
    elif os.path.splitext(name)[1].lower() in DATA_FILE_BUILDERS:
        if not os.path.isfile(name):
            raise ValueError(f"`dataset_name` {name!r} looks like a data file but does not exist.")
        builder = DATA_FILE_BUILDERS[os.path.splitext(name)[1].lower()]
        kwargs = {"delimiter": "\t"} if name.lower().endswith(".tsv") else {}
        data = datasets.load_dataset(builder, data_files={"train": name}, cache_dir=cache_dir, **kwargs)
    else:
        data = datasets.load_dataset(name, getattr(config, "dataset_config_name", None), cache_dir=cache_dir)
    return data
