"""The one plug-in shape every modality (images, tables, time series) implements.

The trainer (`diffusers_xai.training`), the CLI and the Space only talk to a `Modality`, so adding a modality
is one new module registered here, not edits in five places.
"""

from __future__ import annotations

import importlib
import os
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar

import torch
from tqdm.auto import tqdm

__all__ = [
    "MODALITIES",
    "Modality",
    "get_modality",
    "load_hf_dataset",
    "register_modality",
    "sample_in_batches",
    "sampling_steps",
    "to_stream",
]

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
    of training, and `log_validation` every `validation_steps`. With `streaming: true`, `load_streaming_dataset`
    replaces `load_dataset` and `to_tensors` is mapped over the stream (`IterableDataset.map(batched=True)`).
    """

    name: ClassVar[str]
    pipeline_class: ClassVar[type]
    options: ClassVar[dict[str, Any]] = {}

    def validate_config(self, config) -> None:
        """Raise `ValueError` for settings this modality cannot train with; runs before any data is loaded."""

    @abstractmethod
    def load_dataset(self, config) -> Any:
        """The raw training data as an HF `datasets.Dataset`; raise `ValueError` if a needed column is missing."""

    def load_streaming_dataset(self, config) -> Any:
        """
        `streaming: true`: the same rows as [`load_dataset`] as a `datasets.IterableDataset`, never fully in memory.
        The trainer then fits the preprocessor on a `datasets.Dataset` of the first `streaming_fit_samples` rows and
        maps `to_tensors` over the stream, so a modality only overrides this to keep its checks and built-ins.
        """
        return load_hf_dataset(config, streaming=True)

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

    # ---- end of training (see `diffusers_xai.training.finish`) ----
    # Methods `explain()` accepts, and the ones the explanation card uses unless `explain_methods` says otherwise.
    explain_methods: ClassVar[tuple[str, ...]] = ()
    default_explain_methods: ClassVar[tuple[str, ...]] = ()

    def reference_dataset(self, config, max_rows: int):
        """Up to `max_rows` training rows as a `datasets.Dataset` to evaluate against: a seeded random subset, or the
        first rows of the stream with `streaming: true` (never the whole stream in memory)."""
        if getattr(config, "streaming", False):
            import datasets

            stream = self.load_streaming_dataset(config)
            return datasets.Dataset.from_list(list(stream.take(max_rows)), features=stream.features)
        dataset = self.load_dataset(config)
        if len(dataset) > max_rows:
            dataset = dataset.shuffle(seed=config.seed or 0).select(range(max_rows))
        return dataset

    def evaluate(self, pipeline, config, num_samples: int, output_dir: str):
        """Generate `num_samples` from `pipeline` (seeded by `config.seed`) and score them against the training
        data; returns an [`EvaluationReport`] whose PNGs are written into `output_dir`."""
        raise ValueError(f"The {self.name} modality has no evaluation; leave `eval_samples` unset.")

    def explain(self, pipeline, config, methods: tuple[str, ...], output_dir: str) -> dict:
        """Explain one traced generation with `methods`, write the PNGs into `output_dir` and return
        [`ExplanationCardData`] fields: `samples`, `figures`, `explainers`, `faithfulness`, `sanity_checks`."""
        return {}


def sampling_steps(config) -> int:
    """DDIM steps for validation grids, end-of-training evaluation and explanations (at most the T of training)."""
    return min(config.validation_num_inference_steps, config.num_train_timesteps)


def sample_in_batches(sample: Callable[[int, torch.Generator], Any], num_samples: int, config, batch_size: int = 64):
    """
    Call `sample(n, generator)` for batches of at most `batch_size` until `num_samples` are drawn, with a progress
    bar; returns the list of batch outputs. One CPU generator seeded `config.seed + 1` (the validation grid uses
    `config.seed`) draws them all, so the samples are reproducible and differ from the grid's.
    """
    generator = torch.Generator("cpu").manual_seed((config.seed or 0) + 1)
    batches = []
    with tqdm(total=num_samples, desc="sampling for evaluation", unit="sample") as bar:
        while bar.n < num_samples:
            n = min(batch_size, num_samples - bar.n)
            batches.append(sample(n, generator))
            bar.update(n)
    return batches


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


def load_hf_dataset(config, split: str | None = None, streaming: bool = False):
    """
    Read `config.dataset_name` / `config.train_data_dir` as an HF `datasets.Dataset` (shared by all modalities).

    `dataset_name` may be a directory written by `save_to_disk`, a `.csv`/`.parquet`/`.json(l)` file, or a Hub
    dataset id; `train_data_dir` is an `imagefolder`. `split` defaults to `config.split` (or `"train"`).
    With `streaming=True` the result is a `datasets.IterableDataset`: files, Hub ids and image folders are read with
    `load_dataset(..., streaming=True)`, a `save_to_disk` folder (memory-mapped) through [`to_stream`].
    """
    import datasets

    split = split or getattr(config, "split", None) or "train"
    name = getattr(config, "dataset_name", None)
    try:
        data = _load(config, name, getattr(config, "cache_dir", None), streaming)
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
    if streaming and isinstance(data, datasets.Dataset):
        data = to_stream(data)
    return data


# contiguous shards of an in-memory/memory-mapped dataset: `IterableDataset.shuffle` permutes the shard order (and
# then mixes rows in its buffer), so more shards make a better shuffle; reading order is unchanged when unshuffled
STREAM_SHARDS = 64


def to_stream(dataset):
    """A map-style `datasets.Dataset` as an `IterableDataset` of up to [`STREAM_SHARDS`] contiguous shards."""
    return dataset.to_iterable_dataset(num_shards=max(1, min(len(dataset), STREAM_SHARDS)))


def _load(config, name: str | None, cache_dir: str | None, streaming: bool = False):
    import datasets

    if getattr(config, "train_data_dir", None):
        data = datasets.load_dataset(
            "imagefolder", data_dir=config.train_data_dir, cache_dir=cache_dir, streaming=streaming
        )
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
        data = datasets.load_dataset(
            builder, data_files={"train": name}, cache_dir=cache_dir, streaming=streaming, **kwargs
        )
    else:
        data = datasets.load_dataset(
            name, getattr(config, "dataset_config_name", None), cache_dir=cache_dir, streaming=streaming
        )
    return data
