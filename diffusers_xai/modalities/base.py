"""The one plug-in shape every modality (images, tables, time series) implements.

The trainer (`diffusers_xai.training`), the CLI and the Space only talk to a `Modality` (found through
`registry.get_modality`), so adding a modality is one new folder registered with `register_modality`, not edits in
five places.
"""

from __future__ import annotations

import dataclasses
import typing
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from ..utils.coerce import coerce_fields
from .hf_datasets import load_hf_dataset

if TYPE_CHECKING:
    import datasets

    from ..capture import Trace

__all__ = ["Modality", "ModalityOptions", "SampleBatch", "holdout_size"]


@dataclasses.dataclass
class SampleBatch:
    """
    Samples of one batch, as dataset columns (what [`Modality.sample_batch`] returns to [`generate_dataset`]).

    Args:
        columns (`dict[str, list]`): one list of `B` values per column (images as `{"bytes": png, "path": None}`).
        features (`datasets.Features`): the type of every column (`datasets.Image()` for images).
        trace ([`Trace`], *optional*): the sampling trace, when one was requested.
    """

    columns: dict[str, list]
    features: datasets.Features
    trace: Trace | None = None


@dataclasses.dataclass
class ModalityOptions:
    """
    The keys only one modality understands, as a typed dataclass (subclass it, one field per key with its default).

    On construction [`validate`] runs first (a modality's own checks, which may also normalise a value, e.g. one
    column name → a list of one), then every field is coerced to its declared type (`"1e-3"` → a float), so a bad
    value is a one-line `ValueError` naming the key. [`TrainingConfig`] builds it from the YAML/CLI keys.
    """

    def __post_init__(self) -> None:
        self.validate()
        coerce_fields(self)

    def validate(self) -> None:
        """Raise `ValueError` for a bad value (naming the key and the fix); may normalise values in place."""

    def check_choices(self, *keys: str) -> None:
        """Each field of `keys` holds one of the values its `Literal[...]` annotation allows (else `ValueError`)."""
        hints = typing.get_type_hints(type(self))
        for key in keys:
            allowed = typing.get_args(hints[key])
            if getattr(self, key) not in allowed:
                raise ValueError(f"`{key}` must be one of {list(allowed)}, got {getattr(self, key)!r}.")

    def to_dict(self) -> dict[str, Any]:
        """The keys and their values, as YAML writes them (tuples as lists)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}


class Modality(ABC):
    """
    dataset → tensors, denoiser factory, pipeline class, preprocessor.

    Subclasses set `name` and `pipeline_class` and implement the five abstract methods. `config` is the training
    config ([`TrainingConfig`], a dataclass with the YAML/CLI fields); each modality reads only the fields it knows.

    Keys only one modality understands (say `categorical_columns`) are the fields of its `options_class`, a
    [`ModalityOptions`] dataclass. [`TrainingConfig`] then accepts them in YAML and on the command line when
    `modality` names this modality, rejects them otherwise, and holds them typed: `config.modality_options`.

    The trainer calls, in order: `validate_config` (before any data is read), `load_dataset`, `holdout_split` (with
    `validation_split`), `fit_preprocessor`, `to_tensors` (as `dataset.set_transform`), `build_model`, then
    `build_pipeline` for validation and at the end of training, and `log_validation` every `validation_steps`. With
    `streaming: true`, `load_streaming_dataset` replaces `load_dataset` and `to_tensors` is mapped over the stream
    (`IterableDataset.map(batched=True)`).
    """

    name: ClassVar[str]
    pipeline_class: ClassVar[type]
    options_class: ClassVar[type[ModalityOptions]] = ModalityOptions
    # whether `build_model` can start from `pretrained_model_name_or_path` (and so LoRA fine-tuning works)
    supports_pretrained: ClassVar[bool] = False

    # ---- how cards and reports speak of it (`name` stays the one identifier in files, flags and tags) ----
    # "A {adjective} diffusion model", "synthetic {adjective} data"; defaults to `name`
    adjective: ClassVar[str | None] = None
    # "Synthetic {data_noun} from ..." (dataset cards)
    data_noun: ClassVar[str] = "samples"
    # the Hub task of a model card (only where one honestly fits) and the task categories of a generated dataset
    pipeline_tag: ClassVar[str | None] = None
    task_categories: ClassVar[tuple[str, ...]] = ()
    # class-name prefixes of stock diffusers denoisers whose pipelines are of this modality (cards infer it from them)
    denoiser_prefixes: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def option_names(cls) -> tuple[str, ...]:
        """The keys of `options_class`: what YAML and `--key value` accept for this modality only."""
        return tuple(f.name for f in dataclasses.fields(cls.options_class))

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

    def finalize_pipeline(self, pipeline, config) -> None:
        """Optional: the last changes to the pipeline of the weights to save, made once before it is saved, where
        [`build_pipeline`] (also run at every validation) would be too slow (e.g. a calibration on its own
        sampler)."""

    def holdout_split(self, dataset, config) -> tuple[Any, Any]:
        """
        `(training rows, held-out rows)`: `validation_split` of the rows, drawn by `datasets`' seeded shuffle split.
        The trainer validates on (and a modality's guard checks against) the second; the end-of-run evaluation calls
        this again to measure against the same rows. A modality overrides it to stratify its draw.
        """
        n_val = holdout_size(len(dataset), config.validation_split)
        split = dataset.train_test_split(test_size=n_val, seed=config.seed or 0, shuffle=True)
        return split["train"], split["test"]

    def log_validation(self, pipeline, step: int, config, accelerator) -> None:
        """Optional: sample from `pipeline` with a fixed seed and save/log what shows progress (e.g. a PNG grid)."""

    def early_stopping_check(self, pipeline, config) -> tuple[str, float, bool] | None:
        """
        Optional: a held-out check of the weights being validated (EMA when on), run after `log_validation` every
        `validation_steps`: `(metric name, value, passed)`, or `None` when the config asks for no check. The trainer
        stops at the first check that fails and saves the weights of the last check that passed.
        """
        return None

    def refit_on_all_rows(self, config) -> bool:
        """Optional: whether the trainer, after a run whose held-out checks ([`early_stopping_check`]) chose a number
        of updates, trains again from scratch on every row for that many updates ([`refit_config`])."""
        return False

    def refit_config(self, config, steps: int):
        """The [`TrainingConfig`] of that refit: every row, `steps` updates, no holdout and no checks."""
        raise NotImplementedError(f"The {self.name!r} modality does not refit on all rows.")

    # ---- end of training (see `diffusers_xai.training.finish`) ----
    # Methods `explain()` accepts, and the ones the explanation card uses unless `explain_methods` says otherwise.
    explain_methods: ClassVar[tuple[str, ...]] = ()
    # Analyses without maps to check (trajectory, commit steps) are always on; a map method joins the defaults only
    # where the measured verdicts (`bench/explain_faithfulness.py` → `diffusers_xai/explain/verdicts.json`) say it
    # passed all three checks on this modality. The others stay available by name and are shown failing on the card.
    always_explain_methods: ClassVar[tuple[str, ...]] = ()

    @property
    def default_explain_methods(self) -> tuple[str, ...]:
        from ..explain.verdicts import load_verdicts, passing_methods  # on use: the explainers import captum (~1.5 s)

        passing = passing_methods(self.name) if self.name in load_verdicts()["modalities"] else ()
        return (*self.always_explain_methods, *(m for m in passing if m in self.explain_methods))

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

    def card_limitations(self, pipeline) -> list[str]:
        """What a model card must say about this particular `pipeline` beyond the general limitations (e.g. what its
        saved config stores about the training rows); one paragraph per entry, none by default."""
        return []

    # ---- `diffusers-xai evaluate` ----
    # what the command asks a pipeline for (`output_type`), and whether it draws all samples in one call
    evaluation_output_type: ClassVar[str] = "pt"
    sample_in_one_call: ClassVar[bool] = False

    def score(self, real, samples, options: dict):
        """
        Score `samples` against `real` as `diffusers-xai evaluate` loaded them; returns an [`EvaluationReport`].
        `options` are the command's flags by name (`seed`, `output_dir`, `dataset_name`, `progress`, `device`, and
        modality flags such as `feature`, `target`, `real_test`); a modality reads the ones it knows.
        """
        raise ValueError(f"The {self.name} modality has no evaluation for `diffusers-xai evaluate`.")

    @staticmethod
    def report_options(options: dict, *names: str) -> dict:
        """The `options` of [`score`] that every evaluation function takes (`output_dir`, `dataset_name`, `seed`),
        plus `names`, as keyword arguments."""
        return {name: options[name] for name in ("output_dir", "dataset_name", "seed", *names)}

    # ---- sharded datasets (see `diffusers_xai.generation`) ----
    # rows per Parquet row group of a generated shard (`None`: pyarrow's default; images: small groups of PNGs)
    parquet_row_group_size: ClassVar[int | None] = None

    def sample_batch(
        self, pipeline, generators: list[torch.Generator], num_inference_steps: int, trace, **conditioning
    ) -> SampleBatch:
        """
        Samples for [`generate_dataset`]: sample `i` drawn with `generators[i]` only (so it does not depend on which
        other samples share the batch), returned as a [`SampleBatch`]: one list per dataset column plus their
        `datasets.Features`, and the trace when `trace` is a [`TraceConfig`]. `conditioning` is passed only when the
        generation asks for it: `guidance_scale`, and `class_labels` (one per sample) for the pipeline.
        """
        raise ValueError(f"The {self.name} modality cannot write generated datasets; it has no `sample_batch`.")

    def samples_from_dataset(self, dataset) -> Any:
        """The samples of a generated `datasets.Dataset` (its own columns only) in the form [`score`] takes; by
        default a pandas DataFrame of its columns (a table)."""
        return dataset.to_pandas()

    def given_values(self, pipeline, column: str, values: Sequence) -> list:
        """
        `values` of the generated column `column`, spelled as [`sample_batch`] writes them (so a generated sample can
        be compared with `==`), for datasets kept by rejection (`generate_dataset(given_column=...)`); `ValueError`
        naming the column or value and the fix when the modality has no such column or never writes the value.
        """
        raise ValueError(
            f"--given_column {column} keeps rows with given values of a generated column, which only tables have; "
            f"the {self.name} modality has none: drop --given_column."
        )

    def number_samples(self, pipeline, batch: SampleBatch, indices: Sequence[int]) -> SampleBatch:
        """
        `batch` with the columns that depend on each sample's index in the dataset written for `indices` (a
        table's identifier columns, which must not repeat across batches and shards); by default the batch as it is.
        [`generate_dataset`] calls it on every batch of [`sample_batch`].
        """
        return batch


def holdout_size(num_rows: int, validation_split: float) -> int:
    """How many of `num_rows` rows `validation_split` holds out (at least one); raises if none would be left."""
    n_val = max(1, round(num_rows * validation_split))
    if n_val >= num_rows:
        fix = (
            "one example cannot be split; set it to 0, and train on many examples"
            if num_rows == 1
            else "lower it (e.g. 0.2), or set it to 0 with a dataset of many examples"
        )
        raise ValueError(
            f"`validation_split` {validation_split} holds out {n_val} of the {num_rows} examples and leaves none to "
            f"train on: {fix}."
        )
    return n_val
