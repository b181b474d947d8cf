"""The dataset card (README.md) of a generated dataset, and pushing the dataset to the Hub."""

from __future__ import annotations

import math
import os
import shlex
from pathlib import Path
from typing import Any

from huggingface_hub import DatasetCard, DatasetCardData, HfApi

from ..utils.io import atomic_write
from .manifest import MANIFEST_NAME, GenerationManifest

__all__ = ["dataset_card", "push_dataset_to_hub", "save_dataset_card", "size_category"]

TEMPLATE_PATH = Path(__file__).with_name("dataset_card_template.md")
COLUMN_MEANINGS = {
    "image": "the generated image (PNG)",
    "label": "the class the image was generated for (`--class_labels`)",
    "series": "the generated series, `[length, channels]`",
    "sample_index": "position in the dataset; its (first) seed is `base_seed + sample_index`",
    "seed": "seed of the sample's own `torch.Generator` (CPU)",
    "draws": "draws the sample took to hold its `--given_column` value; the `seed` is that of the draw kept",
    "scheduler": "diffusers scheduler used for sampling",
    "num_inference_steps": "sampling steps",
    "model_revision": "Hub revision of the model, or its weights fingerprint",
    "commit_step": "first traced step from which the predicted x0 stays within the tolerance of the final one",
    "commit_fraction": "`commit_step / num_inference_steps`",
    "attention_entropy": "mean normalised entropy of the attention maps (1 = uniform)",
}
# https://huggingface.co/docs/hub/datasets-cards: the Hub's size buckets
_SIZE_NAMES = ["1K", "10K", "100K", "1M", "10M", "100M", "1B", "10B", "100B", "1T"]


def size_category(num_rows: int) -> str:
    """The Hub's `size_categories` bucket of `num_rows` (`"n<1K"`, `"1K<n<10K"`, ..., `"n>1T"`)."""
    lower = "n"
    for k, name in enumerate(_SIZE_NAMES):
        if num_rows < 10 ** (k + 3):
            return f"{lower}<{name}" if lower == "n" else f"{lower}<n<{name}"
        lower = name
    return "n>1T"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "n/a" if not math.isfinite(value) else f"{value:.4g}"
    if isinstance(value, (list, tuple)) and len(value) > 10:
        return "[" + ", ".join(map(str, value[:10])) + f", …] ({len(value)} in all)"
    return str(value)


def _memorisation_rows(memorisation) -> list[tuple[str, str]]:
    """Rows from a `MemorizationResult` (anything with `to_dict()`) or a `{check: value}` dict."""
    if memorisation is None:
        return []
    if hasattr(memorisation, "to_dict"):
        memorisation = memorisation.to_dict()
    if not isinstance(memorisation, dict):
        raise TypeError(f"`memorisation` must be a MemorizationResult or a dict, got {type(memorisation).__name__}.")
    return [(str(k), _fmt(v)) for k, v in memorisation.items()]


def _evaluation_rows(evaluation) -> tuple[list[tuple[str, str]], list[str], str]:
    """(metric, value) rows, warnings and a header line from an `EvaluationReport` or a `{name: value}` dict."""
    if evaluation is None:
        return [], [], ""
    if hasattr(evaluation, "metrics"):
        rows = []
        for m in evaluation.metrics:
            std = f" ± {_fmt(m.std)}" if m.std is not None else ""
            rows.append((m.name, f"{_fmt(m.value)}{std}"))
        header = f"{evaluation.num_generated} generated vs {evaluation.num_real} real samples"
        if getattr(evaluation, "dataset_name", None):
            header += f" of {evaluation.dataset_name}"
        return rows, list(evaluation.warnings), header + "."
    if isinstance(evaluation, dict):
        return [(str(k), _fmt(v)) for k, v in evaluation.items()], [], ""
    raise TypeError(f"`evaluation` must be an EvaluationReport or a dict of metric -> value, got {type(evaluation)}.")


def _columns(output_dir: Path, manifest: GenerationManifest) -> list[tuple[str, str, str]]:
    import pyarrow.parquet as pq

    first = sorted((output_dir / "data").glob("*.parquet"))
    if not first:
        return []
    schema = pq.read_schema(first[0])
    import datasets

    features = datasets.Features.from_arrow_schema(schema)
    rows = []
    for name, feature in features.items():
        kind = type(feature).__name__ if not isinstance(feature, datasets.Value) else feature.dtype
        rows.append((name, kind, COLUMN_MEANINGS.get(name, "a column of the generated table")))
    return rows


def _reproduce_command(manifest: GenerationManifest) -> str:
    s = manifest.settings
    args = [
        "diffusers-xai",
        "generate",
        "--pipeline",
        manifest.source_model or "<model>",
        "--num_samples",
        str(s["num_samples"]),
        "--out",
        "<dir>",
        "--shard_size",
        str(s["shard_size"]),
        "--batch_size",
        str(s["batch_size"]),
        "--num_inference_steps",
        str(s["num_inference_steps"]),
        "--seed",
        str(s["base_seed"]),
        "--scheduler",
        str(s["scheduler"]),
    ]
    if manifest.model_revision:
        args += ["--revision", manifest.model_revision]
    if s.get("explain"):
        args += ["--explain", "--commit_eps", str(s["commit_eps"])]
    if "class_labels" in s:
        args += ["--class_labels", *map(str, s["class_labels"])]
    if "guidance_scale" in s:
        args += ["--guidance_scale", str(s["guidance_scale"])]
    if "given_column" in s:
        args += ["--given_column", s["given_column"], "--max_tries", str(s["max_tries"])]
    return shlex.join(args)


def dataset_card(
    output_dir: str | os.PathLike,
    manifest: GenerationManifest,
    license: str = "other",
    pretty_name: str | None = None,
    repo_id: str | None = None,
    evaluation=None,
    memorisation=None,
    tags: list[str] | None = None,
) -> DatasetCard:
    """
    A `huggingface_hub.DatasetCard` for a dataset written by [`generate_dataset`].

    The YAML block carries `license`, `task_categories`, `size_categories`, `source_model`, `tags` and a `configs`
    entry mapping the `train` split to `data/*.parquet` (so `load_dataset` reads only the shards). Sections: how it
    was generated (settings table, reproduce command, columns), evaluation, memorisation check, limitations.

    Args:
        output_dir (`str` or `os.PathLike`): the generated dataset directory.
        manifest ([`GenerationManifest`]): its manifest.
        license (`str`, *optional*, defaults to `"other"`): Hub license id (use the model's license).
        pretty_name (`str`, *optional*): the card title.
        repo_id (`str`, *optional*): the dataset repo id, for the usage snippet.
        evaluation (`EvaluationReport` or `dict[str, float]`, *optional*): metrics of these samples.
        memorisation (`MemorizationResult` or `dict`, *optional*): results of a memorisation check
            (`diffusers_xai.evaluation.memorization_test(...)`, or e.g. `{"near-copies": 0}`).
        tags (`list[str]`, *optional*): extra tags.
    """
    from ..modalities import get_modality

    modality = get_modality(manifest.modality)
    output_dir = Path(output_dir)
    num_rows = manifest.settings["num_samples"]
    source = manifest.source_model or "unknown"
    card_data = DatasetCardData(
        license=license,
        task_categories=list(modality.task_categories),
        size_categories=[size_category(num_rows)],
        pretty_name=pretty_name or f"Synthetic {modality.data_noun} from {source}",
        tags=["synthetic", "diffusers-xai", manifest.modality, *(tags or [])],
        source_model=source,
        configs=[{"config_name": "default", "data_files": [{"split": "train", "path": "data/*.parquet"}]}],
    )
    # `datasets` caches a local directory whose card has `configs` under its folder name and card metadata only (not
    # the files' mtimes), so two datasets in same-named folders would share a cache; the sizes below tell them apart
    # when they differ. Equal-sized shards with other values (a table regenerated in a same-named folder) still hit
    # the older cache; `datasets` hashes no card field that could carry a digest, so `generate_dataset`'s docstring
    # tells users to load such a folder with `download_mode="force_redownload"`.
    shards = sorted((output_dir / "data").glob("*.parquet"))
    num_bytes = sum(p.stat().st_size for p in shards)
    card_data.dataset_info = {
        "config_name": "default",
        "splits": [{"name": "train", "num_bytes": num_bytes, "num_examples": num_rows}],
        "download_size": num_bytes,
        "dataset_size": num_bytes,
    }
    rows, warnings, header = _evaluation_rows(evaluation)
    return DatasetCard.from_template(
        card_data,
        template_str=TEMPLATE_PATH.read_text(),
        pretty_name=card_data.pretty_name,
        modality_noun=modality.data_noun,
        source_model=source,
        repo_id=repo_id or str(output_dir),
        model_revision=manifest.model_revision,
        fingerprint=manifest.model_fingerprint,
        pipeline_class=manifest.pipeline_class,
        settings=manifest.settings,
        num_rows=num_rows,
        num_shards=manifest.num_shards,
        library_version=manifest.library_version,
        command=_reproduce_command(manifest),
        columns=_columns(output_dir, manifest),
        explain=bool(manifest.settings.get("explain")),
        evaluation=rows,
        evaluation_warnings=warnings,
        evaluation_header=header,
        memorisation=_memorisation_rows(memorisation),
    )


def save_dataset_card(output_dir: str | os.PathLike, manifest: GenerationManifest | None = None, **kwargs) -> Path:
    """Render [`dataset_card`] and write it to `output_dir/README.md` atomically; returns the path."""
    output_dir = Path(output_dir)
    manifest = manifest or GenerationManifest.load(output_dir)
    if manifest is None:
        raise ValueError(f"{output_dir} has no {MANIFEST_NAME}; pass a directory written by `generate_dataset`.")
    card = dataset_card(output_dir, manifest, **kwargs)
    return atomic_write(output_dir / "README.md", str(card))


def push_dataset_to_hub(
    output_dir: str | os.PathLike,
    repo_id: str,
    private: bool | None = None,
    token: str | None = None,
    commit_message: str | None = None,
    **card_kwargs,
) -> str:
    """
    Upload a generated dataset (shards, manifest, dataset card) to the dataset repo `repo_id` with
    `HfApi.upload_folder`, creating the repo if needed. The card is re-rendered with `repo_id` (and `card_kwargs`:
    `license`, `evaluation`, `memorisation`, ...) before the upload. Returns the commit URL.

    Only `README.md`, the manifest and `data/*.parquet` are uploaded: temp files of an interrupted run are not.
    """
    output_dir = Path(output_dir)
    manifest = GenerationManifest.load(output_dir)
    if manifest is None:
        raise ValueError(f"{output_dir} has no {MANIFEST_NAME}; generate the dataset before pushing it.")
    shards = sorted((output_dir / "data").glob("*.parquet"))
    if len(shards) != manifest.num_shards:
        raise ValueError(
            f"{output_dir} holds {len(shards)} of {manifest.num_shards} shards; finish the generation (rerun the "
            "same command) before pushing."
        )
    save_dataset_card(output_dir, manifest, repo_id=repo_id, **card_kwargs)
    api = HfApi(token=token)
    api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    info = api.upload_folder(
        folder_path=output_dir,
        repo_id=repo_id,
        repo_type="dataset",
        allow_patterns=["README.md", MANIFEST_NAME, "data/*.parquet"],
        commit_message=commit_message or f"Upload {manifest.settings['num_samples']} synthetic samples",
    )
    return info.commit_url
