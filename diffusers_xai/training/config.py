"""`TrainingConfig`: every YAML/CLI key of `train/train_ddpm.py`, with validation that names typos and bad values."""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import importlib.util
import os
import typing
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any, Literal

import yaml

from ..modalities.base import ModalityOptions
from ..modalities.registry import get_modality
from ..utils.coerce import base_type, coerce_fields
from .checkpointing import resolve_checkpoint
from .publishing import check_push

__all__ = ["TrainingConfig", "add_training_arguments", "config_from_args"]

MIXED_PRECISION = ("no", "fp16", "bf16")
PREDICTION_TYPES = ("epsilon", "sample", "v_prediction")
BETA_SCHEDULES = {"linear": "linear", "cosine": "squaredcos_cap_v2", "squaredcos_cap_v2": "squaredcos_cap_v2"}
LR_SCHEDULERS = ("linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup")
REPORT_TO = ("tensorboard", "wandb", "none")
POSITIVE_KEYS = (
    "train_batch_size", "num_epochs", "gradient_accumulation_steps", "num_train_timesteps", "validation_batch_size",
    "validation_num_inference_steps", "layers_per_block", "attention_head_dim", "norm_num_groups",
)  # fmt: skip
OPTIONAL_POSITIVE_KEYS = (
    "max_train_steps", "max_train_samples", "validation_steps", "checkpointing_steps", "eval_samples",
    "checkpoints_total_limit",
)  # fmt: skip


def _help(text: str, default: Any = None, **kwargs) -> Any:
    if isinstance(default, (list, tuple)):
        return field(default_factory=lambda: tuple(default), metadata={"help": text, **kwargs})
    return field(default=default, metadata={"help": text, **kwargs})


@dataclass
class TrainingConfig:
    r"""
    Settings of a training run; the field names are the YAML keys and the `--flags` of `train/train_ddpm.py`.

    Build one directly, from a dict (`from_dict`, which names the closest valid key for a typo) or from a YAML
    file (`from_yaml`). Keys of the selected modality's options (the typed dataclass [`Modality.options_class`]) are
    accepted too, and read as `config.modality_options.<key>`. `validate()` runs in `__post_init__`, so an invalid
    config never reaches the training loop.

    Example:

    ```py
    >>> from diffusers_xai.training import TrainingConfig, train
    >>> config = TrainingConfig(dataset_name="sklearn-digits", resolution=16, channels=1, max_train_steps=2000)
    >>> result = train(config)
    >>> result.pipeline(batch_size=16, num_inference_steps=50).images[0]
    ```
    """

    # ---- data ----
    modality: str = _help(
        "Modality plug-in: `image` (UNet2DModel), or another registered one such as `tabular`.", "image"
    )
    dataset_name: str | None = _help(
        "`sklearn-digits` (built in, no files), a Hub dataset id, a save_to_disk folder or a .csv/.tsv/.parquet/"
        ".json(l) path (also compressed: .csv.gz)."
    )
    dataset_config_name: str | None = _help("Config name of a Hub dataset.")
    train_data_dir: str | None = _help(
        "A folder of images read with the `imagefolder` builder (instead of dataset_name)."
    )
    split: str = _help("Split to train on.", "train")
    cache_dir: str | None = _help("Where `datasets` caches downloads.")
    image_column: str = _help("Column holding the images (PIL images or file paths).", "image")
    max_train_samples: int | None = _help("Train on a random subset of this many examples (for quick runs).")
    validation_split: float = _help("Fraction held out to compute a validation loss every `validation_steps`.", 0.0)
    resolution: int = _help("Images are resized (and cropped) to resolution x resolution.", 64)
    channels: int = _help("1 (grayscale) or 3 (RGB); images are converted to this.", 3)
    center_crop: bool = _help("Center-crop to `resolution` after resizing (else random crop).", False)
    random_flip: bool = _help("Randomly flip images horizontally.", False)
    dataloader_num_workers: int = _help("DataLoader worker processes (0 = load in the main process).", 0)
    streaming: bool = _help(
        "Read the data as a `datasets.IterableDataset`, never fully in memory (needs `max_train_steps`; "
        "`max_train_samples` takes the first N rows).",
        False,
    )
    shuffle_buffer_size: int = _help("Streaming: rows held in the `IterableDataset.shuffle` buffer.", 1000)
    streaming_fit_samples: int = _help(
        "Streaming: the preprocessor (table quantiles, series normalisation) is fitted on the first N rows/windows.",
        10000,
    )
    # ---- model ----
    model_config_name_or_path: str | None = _help(
        "A diffusers `config.json` (or folder) for the UNet; overrides fields below."
    )
    block_out_channels: tuple[int, ...] = _help("UNet channels per resolution level.", (32, 64, 128))
    layers_per_block: int = _help("ResNet layers per UNet block.", 1)
    down_block_types: tuple[str, ...] | None = _help(
        "UNet down blocks; default: `DownBlock2D` everywhere but `AttnDownBlock2D` at the lowest resolution."
    )
    up_block_types: tuple[str, ...] | None = _help("UNet up blocks; default: mirror of down_block_types.")
    attention_head_dim: int = _help("Channels per attention head.", 8)
    norm_num_groups: int = _help("GroupNorm groups (must divide every block_out_channels entry).", 8)
    dropout: float = _help("Dropout in the ResNet blocks.", 0.0)
    # ---- fine-tuning ----
    pretrained_model_name_or_path: str | None = _help(
        "Fine-tune: start from this pipeline's UNet weights and noise schedule instead of a fresh model (a folder "
        "written by save_pretrained/train_ddpm.py or a Hub id such as google/ddpm-cifar10-32; images only)."
    )
    lora_rank: int | None = _help(
        "Fine-tune a LoRA adapter of this rank (peft) on the pretrained UNet instead of all its weights; only the "
        "adapter is trained and saved (pytorch_lora_weights.safetensors + adapter_config.json). No EMA."
    )
    lora_alpha: float | None = _help("LoRA scale numerator: the update is lora_alpha/lora_rank * B A (default: rank)")
    lora_target_modules: tuple[str, ...] | None = _help(
        "Layers LoRA adapts, by name suffix (default: attention to_q, to_k, to_v, to_out.0; add conv1, conv2 for the "
        "ResNet convolutions)."
    )
    # ---- noise schedule ----
    num_train_timesteps: int = _help("Diffusion steps T of the DDPM forward process.", 1000)
    beta_schedule: str = _help("`linear` or `cosine` (= diffusers' squaredcos_cap_v2).", "linear")
    prediction_type: Literal["epsilon", "sample", "v_prediction"] = _help(
        "What the model predicts: `epsilon`, `sample` (x0) or `v_prediction`.", "epsilon"
    )
    # ---- optimisation ----
    train_batch_size: int = _help("Batch size per device.", 16)
    num_epochs: int = _help("Epochs, unless max_train_steps is set.", 100)
    max_train_steps: int | None = _help("Total optimizer steps; overrides num_epochs.")
    max_train_minutes: float | None = _help("Stop (and save) after this many minutes of training.")
    gradient_accumulation_steps: int = _help("Micro-batches per optimizer step.", 1)
    learning_rate: float = _help("Peak AdamW learning rate.", 1e-4)
    lr_scheduler: str = _help(f"diffusers `get_scheduler` name: {', '.join(LR_SCHEDULERS)}.", "cosine")
    lr_warmup_steps: int = _help("Linear warmup steps of the learning rate.", 500)
    adam_beta1: float = _help("AdamW beta1.", 0.95)
    adam_beta2: float = _help("AdamW beta2.", 0.999)
    adam_weight_decay: float = _help("AdamW weight decay.", 1e-6)
    adam_epsilon: float = _help("AdamW epsilon.", 1e-8)
    max_grad_norm: float | None = _help("Clip the gradient norm to this (null = no clipping).", 1.0)
    mixed_precision: Literal["no", "fp16", "bf16"] = _help("`no`, `fp16` (GPU) or `bf16`.", "no")
    seed: int | None = _help("Seed for weights, data order and noise (CPU runs are then bit-reproducible).")
    # ---- EMA ----
    use_ema: bool = _help("Keep an exponential moving average of the weights (saved as the final model).", True)
    ema_inv_gamma: float = _help("EMA warmup inv_gamma: decay = 1 - (1 + step / inv_gamma) ** -power.", 1.0)
    ema_power: float = _help("EMA warmup power.", 0.75)
    ema_max_decay: float = _help("Maximum EMA decay.", 0.9999)
    # ---- logging, validation, checkpoints ----
    output_dir: str = _help("Where the pipeline, checkpoints, logs and samples are written.", "ddpm-model")
    logging_dir: str = _help("Tensorboard folder, relative to output_dir.", "logs")
    report_to: str = _help("`tensorboard`, `wandb` or `none`.", "tensorboard")
    tracker_project_name: str = _help("Run name in the tracker.", "train_ddpm")
    validation_steps: int | None = _help("Every N steps: validation loss and a sample grid (null = never).", 500)
    validation_batch_size: int = _help("Samples in the validation grid.", 16)
    validation_num_inference_steps: int = _help("DDIM steps for the validation grid.", 50)
    checkpointing_steps: int | None = _help("Save a resumable checkpoint every N steps (null = never).", 500)
    checkpoints_total_limit: int | None = _help("Keep only the newest N checkpoints.")
    resume_from_checkpoint: str | None = _help(
        "`latest` or a checkpoint-N folder of output_dir (name or path); others are refused: resuming unpickles it."
    )
    # ---- end of training: evaluation, explanation card, Hub ----
    eval_samples: int | None = _help(
        "After training, generate N samples and score them against the training data (images: FID/KID/PRDC/"
        "memorisation; tables: SDMetrics quality, detection, DCR; series: TimeGAN scores) into "
        "evaluation/report.json and the card's model-index (null = no evaluation)."
    )
    explanation_card: bool = _help(
        "Explain one traced generation of the final pipeline (figures, faithfulness, sanity check) and write the "
        "explanation card (README.md + explanations/); false = the card without figures.",
        True,
    )
    explain_methods: tuple[str, ...] | None = _help(
        "Explanation methods for the card (default: the modality's `default_explain_methods`)."
    )
    push_to_hub: bool = _help(
        "Push the final pipeline with its explanation card (not the checkpoints) to the Hub in one commit.", False
    )
    hub_model_id: str | None = _help("Repo id for push_to_hub (default: the output_dir name in your namespace).")
    hub_private_repo: bool = _help("Create the Hub repo as private.", False)
    # ---- modality-specific keys: a dict of them, made the modality's typed `options_class` by `validate()` ----
    modality_options: ModalityOptions = field(default_factory=dict, metadata={"help": "Keys of the modality."})

    def __post_init__(self):
        self.validate()

    # ---- construction ----
    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str | None = None) -> TrainingConfig:
        """Build from flat keys; modality-specific keys go to `modality_options`. Unknown keys raise `ValueError`."""
        if not isinstance(values, dict):
            raise TypeError(f"A training config must be a mapping of keys to values, got {type(values).__name__}.")
        values = dict(values)
        if "hub_token" in values:  # never echo the value: it is a secret
            raise ValueError(
                "`hub_token` is not a training key: a token on the command line or in a config file ends up in "
                "`ps` output, shell history and copies of the file. Set the HF_TOKEN environment variable or run "
                "`hf auth login` instead."
            )
        modality = values.get("modality", "image")
        options = dict(values.pop("modality_options", None) or {})
        known = {f.name for f in dataclasses.fields(cls)}
        modality_keys = set(get_modality(modality).option_names()) if isinstance(modality, str) else set()
        kwargs = {}
        for key, value in values.items():
            if key in known:
                kwargs[key] = value
            elif key in modality_keys:
                options[key] = value
            else:
                raise ValueError(_unknown_key_message(key, known | modality_keys, modality, source))
        return cls(**kwargs, modality_options=options)

    @classmethod
    def from_yaml(cls, path: str | os.PathLike, overrides: dict[str, Any] | None = None) -> TrainingConfig:
        """Read a YAML file of keys, apply `overrides` (e.g. from the command line) on top, and validate."""
        if not os.path.isfile(path):
            raise ValueError(f"Config file {str(path)!r} does not exist; see train/configs/ for examples.")
        with open(path, encoding="utf-8") as f:
            values = _load_yaml(f, str(path)) or {}
        if not isinstance(values, dict):
            raise ValueError(f"{str(path)!r} must hold a mapping of keys to values, got {type(values).__name__}.")
        return cls.from_dict({**values, **(overrides or {})}, source=str(path))

    def to_dict(self) -> dict[str, Any]:
        """Flat YAML-able keys (modality options inlined), so `from_dict(config.to_dict())` round-trips."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "modality_options"}
        out = {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}
        out.update(self.modality_options.to_dict())
        return out

    def replace(self, **changes) -> TrainingConfig:
        """A validated copy with some keys changed (modality keys allowed)."""
        return type(self).from_dict({**self.to_dict(), **changes})

    # ---- validation ----
    def _validate_streaming(self) -> None:
        """`streaming` reads a stream of unknown length: everything that needs the length is refused up front."""
        _positive("shuffle_buffer_size", self.shuffle_buffer_size)
        _positive("streaming_fit_samples", self.streaming_fit_samples)
        if not self.streaming:
            return
        if self.max_train_steps is None:
            raise ValueError(
                "`streaming: true` reads the data as a stream of unknown length, so `num_epochs` cannot be turned "
                "into steps; set `max_train_steps` (e.g. `--max_train_steps 10000`), or train without streaming."
            )
        if self.validation_split > 0:
            raise ValueError(
                f"`validation_split` ({self.validation_split}) is a fraction of the dataset's length, which a stream "
                "does not have; set `validation_split: 0` with `streaming: true`, or train without streaming."
            )

    def _validate_finetuning(self) -> None:
        if self.lora_rank is not None:
            _positive("lora_rank", self.lora_rank)
            if self.pretrained_model_name_or_path is None:
                raise ValueError(
                    f"`lora_rank` ({self.lora_rank}) adapts a trained model: set `pretrained_model_name_or_path` to "
                    "the pipeline to adapt, or leave `lora_rank` unset to train a model from scratch."
                )
        elif self.lora_alpha is not None or self.lora_target_modules is not None:
            raise ValueError("`lora_alpha` and `lora_target_modules` only apply with `lora_rank`; set `lora_rank`.")
        if self.lora_alpha is not None and not self.lora_alpha > 0:
            raise ValueError(f"`lora_alpha` must be > 0, got {self.lora_alpha}.")
        if self.pretrained_model_name_or_path is not None and self.model_config_name_or_path is not None:
            raise ValueError(
                "Set either `pretrained_model_name_or_path` (start from trained weights) or "
                "`model_config_name_or_path` (a fresh model from a config), not both."
            )

    def validate(self) -> None:
        """Coerce YAML/CLI values to the field types and raise `ValueError` naming any bad value."""
        self._validate_values()
        self._validate_streaming()
        self._validate_finetuning()
        self._validate_sources()
        self._validate_modality()
        check_push(self)  # an invalid `hub_model_id` is refused before training, not after it

    def _validate_values(self) -> None:
        """Field types, choices and ranges."""
        coerce_fields(self, skip=("modality_options",))
        self.beta_schedule = BETA_SCHEDULES[_choice("beta_schedule", self.beta_schedule, tuple(BETA_SCHEDULES))]
        for name, choices in (
            ("prediction_type", PREDICTION_TYPES),
            ("mixed_precision", MIXED_PRECISION),
            ("lr_scheduler", LR_SCHEDULERS),
            ("report_to", REPORT_TO),
        ):
            _choice(name, getattr(self, name), choices)
        for name in POSITIVE_KEYS:
            _positive(name, getattr(self, name))
        for name in OPTIONAL_POSITIVE_KEYS:
            if getattr(self, name) is not None:
                _positive(name, getattr(self, name))
        for name in ("lr_warmup_steps", "dataloader_num_workers"):
            if getattr(self, name) < 0:
                raise ValueError(f"`{name}` must be >= 0, got {getattr(self, name)}.")
        if self.seed is not None and not 0 <= self.seed < 2**32:  # numpy's seeding bound (accelerate's set_seed)
            raise ValueError(f"`seed` must be in [0, 2**32 - 1] (or null), got {self.seed}.")
        if not self.learning_rate > 0:
            raise ValueError(f"`learning_rate` must be > 0, got {self.learning_rate}.")
        if self.max_train_minutes is not None and not self.max_train_minutes > 0:
            raise ValueError(f"`max_train_minutes` must be > 0 (or null), got {self.max_train_minutes}.")
        if self.max_grad_norm is not None and not self.max_grad_norm > 0:
            raise ValueError(f"`max_grad_norm` must be > 0 (or null to disable clipping), got {self.max_grad_norm}.")
        if not 0.0 <= self.validation_split < 1.0:
            raise ValueError(f"`validation_split` is a fraction in [0, 1), got {self.validation_split}.")
        if not 0.0 < self.ema_max_decay < 1.0:
            raise ValueError(f"`ema_max_decay` must be in (0, 1), got {self.ema_max_decay}.")

    def _validate_sources(self) -> None:
        """Exactly one data source, the tracker installed, and a resume checkpoint that exists."""
        if self.dataset_name is not None and self.train_data_dir is not None:
            raise ValueError(
                f"Set either `dataset_name` ({self.dataset_name!r}) or `train_data_dir` ({self.train_data_dir!r}), "
                "not both."
            )
        if self.dataset_name is None and self.train_data_dir is None:
            raise ValueError(
                "No training data: set `dataset_name` (e.g. `sklearn-digits`, a Hub id, a `save_to_disk` folder or a "
                "CSV/Parquet file) or `train_data_dir` (a folder of images)."
            )
        if self.train_data_dir is not None and not os.path.isdir(self.train_data_dir):
            raise ValueError(f"`train_data_dir` {self.train_data_dir!r} is not a directory.")
        if self.report_to == "wandb" and importlib.util.find_spec("wandb") is None:
            raise ImportError("`report_to: wandb` needs wandb: `pip install wandb` (or use `report_to: tensorboard`).")
        if self.resume_from_checkpoint is not None and self.resume_from_checkpoint != "latest":
            resolve_checkpoint(self.resume_from_checkpoint, self.output_dir)

    def _validate_modality(self) -> None:
        """The modality's own keys (defaults filled in), its explain methods, and its `validate_config`."""
        modality = get_modality(self.modality)
        options = self.modality_options
        if isinstance(options, ModalityOptions):
            options = options.to_dict()  # re-validated: it may come from another modality or have been edited
        unknown = set(options) - set(modality.option_names())
        for key in sorted(unknown):
            known = {f.name for f in dataclasses.fields(self)} | set(modality.option_names())
            raise ValueError(_unknown_key_message(key, known, self.modality, None))
        self.modality_options = modality.options_class(**options)
        if self.explain_methods is not None:
            bad = [m for m in self.explain_methods if m not in modality.explain_methods]
            if bad or not self.explain_methods:
                raise ValueError(
                    f"`explain_methods` {list(self.explain_methods)} are not methods of the {self.modality} modality; "
                    f"choose from {list(modality.explain_methods)} (or `explanation_card: false` for none)."
                )
        if self.pretrained_model_name_or_path is not None and not modality.supports_pretrained:
            raise ValueError(
                f"The {self.modality} modality cannot start from a pretrained pipeline yet; unset "
                "`pretrained_model_name_or_path` (fine-tuning is available for images)."
            )
        modality.validate_config(self)


# ---- command line ----
def add_training_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """
    Add `--config` and one `--key` per [`TrainingConfig`] field (defaults suppressed, so only keys given on the
    command line override the YAML file). Use with `parse_known_args` and [`config_from_args`], which turns the
    leftover `--key value` pairs into modality options or a typo error.
    """
    parser.add_argument("--config", type=str, default=None, help="YAML file of training keys (train/configs/*.yaml).")
    hints = typing.get_type_hints(TrainingConfig)
    for f in dataclasses.fields(TrainingConfig):
        if f.name == "modality_options":
            continue
        kind = base_type(hints[f.name])
        kwargs = {"default": argparse.SUPPRESS, "help": f.metadata.get("help", "")}
        if kind is bool:
            kwargs.update(nargs="?", const=True, type=_parse_value, metavar="BOOL")
        else:
            kwargs.update(type=_parse_value, metavar=f.name.upper())
        parser.add_argument(f"--{f.name}", **kwargs)
    return parser


def config_from_args(args: argparse.Namespace, unknown: list[str] | None = None) -> TrainingConfig:
    """The [`TrainingConfig`] from `--config` plus the `--key value` overrides parsed by [`add_training_arguments`]."""
    overrides = {k: v for k, v in vars(args).items() if k != "config" and k in TrainingConfig.__dataclass_fields__}
    overrides.update(_pairs(unknown or []))
    if args.config is not None:
        return TrainingConfig.from_yaml(args.config, overrides)
    return TrainingConfig.from_dict(overrides, source="the command-line arguments")


def _pairs(tokens: list[str]) -> dict[str, Any]:
    out, i = {}, 0
    while i < len(tokens):
        token = tokens[i]
        if not token.startswith("--"):
            raise ValueError(f"Unexpected command-line argument {token!r}; pass keys as `--key value`.")
        key, _, value = token[2:].partition("=")
        if not value and (i + 1 >= len(tokens) or tokens[i + 1].startswith("--")):
            out[key.replace("-", "_")] = True
        else:
            if not value:
                i += 1
                value = tokens[i]
            out[key.replace("-", "_")] = _parse_value(value)
        i += 1
    return out


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key given twice in one mapping (PyYAML keeps the last one silently: a
    config that sets `learning_rate` twice trained with the second)."""

    def construct_mapping(self, node, deep=False):
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, Hashable):  # PyYAML's own error names it
                continue
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"{key!r} is set twice (first at line {seen[key]}); keep one", key_node.start_mark
                )
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def _load_yaml(stream, source: str) -> Any:
    """A config file's YAML; a syntax error, a repeated key or a bad value (`2024-13-01` read as a date) as one
    `ValueError` naming the file and the line."""
    try:
        return yaml.load(stream, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)
    except (yaml.YAMLError, ValueError) as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ValueError(f"{source!r} is not valid YAML{where}: {problem} (train/configs/ has examples).") from err


def _parse_value(text: str) -> Any:
    # `--block_out_channels "[32, 64]"`, `--max_train_steps 10`, `--seed null`: YAML scalars and lists
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


# ---- helpers ----
def _unknown_key_message(key: str, known: set[str], modality: str, source: str | None) -> str:
    where = f" in {source}" if source else ""
    close = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.6)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return (
        f"Unknown training config key {key!r}{where} (modality {modality!r}).{hint} "
        "Run `python train/train_ddpm.py --help` for the valid keys."
    )


def _choice(name: str, value, choices: tuple[str, ...]):
    if value not in choices:
        close = difflib.get_close_matches(str(value), choices, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"`{name}` must be one of {list(choices)}, got {value!r}.{hint}")
    return value


# what `null` means for an optional count, named when 0 is given (0 reads as "off", which is null)
NULL_MEANS = {
    "max_train_samples": "every example",
    "validation_steps": "never",
    "checkpointing_steps": "never",
    "eval_samples": "no end-of-run evaluation",
    "checkpoints_total_limit": "keep every checkpoint",
}


def _positive(name: str, value) -> None:
    if value < 1:
        off = f"; null means {NULL_MEANS[name]} (`--{name} null`)" if name in NULL_MEANS else ""
        raise ValueError(f"`{name}` must be >= 1, got {value}{off}.")
