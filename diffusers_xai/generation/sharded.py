"""Sharded, resumable, deterministic synthetic-dataset generation, split across processes with accelerate."""

from __future__ import annotations

import glob
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import pyarrow.parquet as pq
import torch
from accelerate import PartialState
from accelerate.utils import parse_flag_from_env
from tqdm.auto import tqdm

from .. import __version__
from ..capture import find_attention_modules
from ..pipelines.sampling import check_sampling_args
from ..pipelines.schedulers import scheduler_name
from ..utils.faults import crash_point
from ..utils.io import atomic_path
from .conditioning import check_conditioning, sample_conditioning
from .given_values import DRAWS_FEATURE, sample_given_values
from .manifest import GenerationManifest, config_dict, model_fingerprint
from .samples import sample_modality
from .summaries import SUMMARY_FEATURES, explanation_summaries, summary_trace_config

__all__ = ["GENERATION_COLUMNS", "GenerationResult", "distributed_state", "generate_dataset", "shard_path"]

logger = logging.getLogger(__name__)

DATA_DIR = "data"
SPLIT = "train"
METADATA_FEATURES = {
    "sample_index": datasets.Value("int64"),
    "seed": datasets.Value("int64"),
    "scheduler": datasets.Value("string"),
    "num_inference_steps": datasets.Value("int32"),
    "model_revision": datasets.Value("string"),
}
# the columns a generated dataset adds to the modality's own (what `load_generated_samples` leaves out)
GENERATION_COLUMNS = frozenset({*METADATA_FEATURES, DRAWS_FEATURE, *SUMMARY_FEATURES})


@dataclass
class GenerationResult:
    """
    What [`generate_dataset`] did.

    Args:
        output_dir (`Path`): the dataset directory (`data/*.parquet`, manifest, README.md dataset card).
        manifest ([`GenerationManifest`]): the model and settings of the dataset.
        shard_paths (`list[Path]`): every shard of the complete dataset, in order.
        written (`list[int]`): shard indices written by *this* process in this call.
        skipped (`list[int]`): shard indices that already existed (resumed) when this call started.
    """

    output_dir: Path
    manifest: GenerationManifest
    shard_paths: list[Path]
    written: list[int] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)


def distributed_state() -> PartialState:
    """
    accelerate's process state. On a machine without an accelerator, several launched processes (`accelerate
    launch --multi_gpu --num_processes 2`, `torchrun`) form a CPU (gloo) group: accelerate only does that when told
    `cpu=True`, otherwise each process would silently think it is alone and generate every shard.
    """
    cpu = parse_flag_from_env("ACCELERATE_USE_CPU") or not torch.accelerator.is_available()
    return PartialState(cpu=cpu)


def shard_path(output_dir: str | os.PathLike, index: int, num_shards: int) -> Path:
    """`data/train-00003-of-00010.parquet`: the Hub's shard naming, matched by `load_dataset`'s split patterns."""
    return Path(output_dir) / DATA_DIR / f"{SPLIT}-{index:05d}-of-{num_shards:05d}.parquet"


def _temp_glob(output_dir: Path) -> list[str]:
    # temp names start with "." and end in ".tmp": neither `data/*.parquet` nor datasets' default patterns (which
    # skip hidden files) ever read them, and `upload_folder` is only given `*.parquet`.
    return glob.glob(str(output_dir / DATA_DIR / ".*.tmp"))


def _check_positive_int(name: str, value, allow_zero: bool = False) -> None:
    low = 0 if allow_zero else 1
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        what = "a non-negative" if allow_zero else "a positive"
        raise ValueError(f"`{name}` must be {what} integer, got {value!r}.")


def _shard_is_complete(path: Path, expected_rows: int) -> bool:
    if not path.is_file():
        return False
    rows = pq.read_metadata(path).num_rows
    if rows != expected_rows:
        raise ValueError(
            f"{path} holds {rows} rows but shard {path.name} should hold {expected_rows}; it was not written by this "
            "generation run. Delete it (or the whole output directory) and rerun."
        )
    return True


def _atomic_write_parquet(table, path: Path, row_group_size: int | None) -> None:
    with atomic_path(path, fsync=True) as tmp:
        pq.write_table(table, tmp, row_group_size=row_group_size)
        crash_point("shard")  # tests only: a kill between the write and the rename


def _shard_table(pipeline, modality, indices: range, batch_size, base_seed, num_inference_steps, manifest):
    """The Arrow table of one shard: samples `indices`, in batches of `batch_size` that start at the shard start."""
    settings = manifest.settings
    explain = settings["explain"]
    denoiser = getattr(pipeline, "denoiser_model", None)
    has_attention = bool(denoiser is not None and find_attention_modules(denoiser))
    trace_config = summary_trace_config(has_attention, settings["summary_steps"]) if explain else None
    columns: dict[str, list] = {}
    features = None
    for batch_start in range(indices.start, indices.stop, batch_size):
        batch_indices = list(range(batch_start, min(batch_start + batch_size, indices.stop)))
        seeds, extra = [base_seed + i for i in batch_indices], {}
        if "given_column" in settings:  # each sample keeps the first of its draws that holds its value
            batch, seeds, draws = sample_given_values(modality, pipeline, batch_indices, num_inference_steps, settings)
            extra = {DRAWS_FEATURE: draws}
        else:
            # one CPU generator per sample: the noise of sample i is the same on every device and in every batch
            generators = [torch.Generator("cpu").manual_seed(seed) for seed in seeds]
            conditioning = sample_conditioning(settings, batch_indices)
            batch = modality.sample_batch(pipeline, generators, num_inference_steps, trace_config, **conditioning)
        batch = modality.number_samples(pipeline, batch, batch_indices)
        n = len(batch_indices)
        meta = {
            "sample_index": batch_indices,
            "seed": seeds,
            "scheduler": [settings["scheduler"]] * n,
            "num_inference_steps": [num_inference_steps] * n,
            "model_revision": [manifest.model_id] * n,
            **extra,
        }
        summaries = explanation_summaries(batch.trace, settings["commit_eps"]) if explain else {}
        if features is None:
            summary_features = {name: SUMMARY_FEATURES[name] for name in summaries}
            extra_features = {name: datasets.Value("int32") for name in extra}
            features = datasets.Features({**batch.features, **METADATA_FEATURES, **extra_features, **summary_features})
        for name, values in {**batch.columns, **meta, **summaries}.items():
            columns.setdefault(name, []).extend(values)
    return datasets.Dataset.from_dict(columns, features=features).data.table


def generate_dataset(
    pipeline,
    output_dir: str | os.PathLike,
    num_samples: int,
    shard_size: int = 1000,
    batch_size: int = 16,
    num_inference_steps: int = 50,
    base_seed: int = 0,
    explain: bool = False,
    commit_eps: float = 0.1,
    summary_steps: int = 50,
    class_labels: Sequence | None = None,
    guidance_scale: float = 1.0,
    given_column: str | None = None,
    max_tries: int = 100,
    source_model: str | None = None,
    model_revision: str | None = None,
    state: PartialState | None = None,
    card_kwargs: dict | None = None,
) -> GenerationResult:
    r"""
    Generate `num_samples` samples into Parquet shards of `shard_size` rows, loadable with
    `datasets.load_dataset(output_dir)` or `load_dataset("parquet", data_dir=output_dir)`. `datasets` caches a local
    folder by its name and card metadata, not its files' contents: after regenerating into a folder of the same name,
    load it with `download_mode="force_redownload"`, or it may return the older rows.

    **Determinism.** Sample `i` is drawn with its own `torch.Generator` seeded `base_seed + i` (on CPU, so the noise
    is the same on every device), and batches never cross a shard boundary: shard `k` always holds samples
    `[k * shard_size, (k + 1) * shard_size)` computed in the same batches. Shards are therefore byte-identical
    whatever the number of processes. Caveat: convolution kernels may round differently for different batch sizes
    (we measured differences of ~4e-7 between a batch of 4 and four batches of 1), so `batch_size` is part of the
    settings a resumed run must repeat, as are the thread count and device if bit-identity matters across machines.

    **Resuming.** Each shard is written under a hidden temp name and renamed into place, so a killed run never
    leaves a partial `data/*.parquet`. A rerun with the same model and settings skips finished shards; a
    different model (by weights fingerprint) or different settings raise `ValueError` before any work.

    **Processes.** Under `accelerate launch` the missing shards are split with
    `PartialState.split_between_processes`; all file-level side effects other than shard writes (manifest,
    README card) happen on the main process.

    Args:
        pipeline: a [`DiffusionXAIPipeline`] (or another pipeline with a registered sample function).
        output_dir (`str` or `os.PathLike`): where the dataset goes.
        num_samples (`int`): total number of samples.
        shard_size (`int`, *optional*, defaults to 1000): samples per Parquet shard.
        batch_size (`int`, *optional*, defaults to 16): samples per pipeline call (within a shard).
        num_inference_steps (`int`, *optional*, defaults to 50): sampling steps.
        base_seed (`int`, *optional*, defaults to 0): sample `i` uses seed `base_seed + i`.
        explain (`bool`, *optional*, defaults to `False`): add per-sample explanation summaries
            (`commit_step`, `commit_fraction`, `attention_entropy`; see `diffusers_xai.generation.summaries`).
        commit_eps (`float`, *optional*, defaults to 0.1): commit tolerance in data units.
        summary_steps (`int`, *optional*, defaults to 50): at most this many evenly spaced steps are traced for
            the summaries.
        class_labels (`list`, *optional*): classes of a class-conditional pipeline (ints or class names for images,
            values of the condition column for tables); sample `i` is of class `class_labels[i mod len]`, and an image
            dataset gets a `label` column. Without them images of a class-conditional model are drawn from its null
            class and tables draw each row's class from the training frequencies.
        guidance_scale (`float`, *optional*, defaults to 1.0): classifier-free guidance for a model with a null class.
        given_column (`str`, *optional*): tables: `class_labels` are values of this generated categorical column
            (a model trained without it as `condition_column`), and sample `i` is the first of its own draws that
            holds `class_labels[i mod len]` (rejection, as SDV samples CTGAN and TVAE conditionally; see
            `diffusers_xai.generation.given_values`). Its `seed` column holds the seed of the draw kept and a
            `draws` column how many draws it took. Not with `explain`.
        max_tries (`int`, *optional*, defaults to 100): draws per sample before a value still missing is an error.
        source_model (`str`, *optional*): directory or Hub id of the model, for the manifest and the card.
        model_revision (`str`, *optional*): its Hub revision; the per-sample `model_revision` column holds it, or
            the weights fingerprint when not given.
        state (`accelerate.PartialState`, *optional*): defaults to [`distributed_state`].
        card_kwargs (`dict`, *optional*): passed to [`save_dataset_card`] (`license`, `evaluation`,
            `memorisation`, `pretty_name`), which writes the README.md dataset card once every shard exists.

    Returns:
        [`GenerationResult`].

    Example:

    ```py
    >>> from diffusers_xai.generation import generate_dataset
    >>> result = generate_dataset(pipe, "synthetic-digits", num_samples=1000, shard_size=250, explain=True)
    >>> datasets.load_dataset("synthetic-digits", split="train")[0]["image"]  # a PIL image
    ```
    """
    # ---- 1. validate everything before any work ----
    _check_generation_args(
        num_samples, shard_size, batch_size, num_inference_steps, base_seed, summary_steps, commit_eps
    )
    modality = sample_modality(pipeline)
    # the steps against this scheduler's training steps, as the pipeline call would check them: before the manifest
    check_sampling_args(pipeline.scheduler, batch_size, num_inference_steps, None, "batch_size")
    output_dir = Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise ValueError(f"--out {output_dir} exists and is not a directory; choose a directory path.")
    state = state or distributed_state()
    num_shards = math.ceil(num_samples / shard_size)
    sampling = {"batch_size": batch_size, "base_seed": base_seed, "num_inference_steps": num_inference_steps}
    settings = {"num_samples": num_samples, "shard_size": shard_size, **sampling, **_scheduler_settings(pipeline)}
    settings.update(_summary_settings(explain, commit_eps, summary_steps))
    if explain and given_column is not None:
        raise ValueError(
            "--explain summarises one traced pipeline call per batch, but with --given_column a batch's samples are "
            "kept from several calls: drop one of them."
        )
    settings.update(check_conditioning(pipeline, class_labels, guidance_scale, given_column, max_tries))
    manifest = GenerationManifest(
        model_fingerprint=model_fingerprint(pipeline),
        pipeline_class=type(pipeline).__name__,
        settings=settings,
        num_shards=num_shards,
        modality=modality.name,
        source_model=source_model,
        model_revision=model_revision,
        library_version=__version__,
    )
    manifest, existing = _resume_manifest(manifest, output_dir)
    state.wait_for_everyone()  # every process has validated the same files before anyone writes
    # ---- 2. main process: manifest first (so a crash later is still recognisable), stale temp files out ----
    if state.is_main_process:
        _start_output(output_dir, manifest if existing is None else None)
    state.wait_for_everyone()
    # ---- 3. split what is missing across processes ----
    paths = [shard_path(output_dir, k, num_shards) for k in range(num_shards)]
    done = [k for k in range(num_shards) if _shard_is_complete(paths[k], _rows_in(k, shard_size, num_samples))]
    pending = sorted(set(range(num_shards)) - set(done))
    state.wait_for_everyone()  # nobody writes before everyone has listed
    if done and state.is_main_process:
        logger.info("Resuming: %d of %d shards already complete in %s.", len(done), num_shards, output_dir)
    written = _write_shards(pipeline, modality, manifest, paths, pending, state)
    state.wait_for_everyone()
    # ---- 4. every shard there: the dataset card ----
    _finish_dataset(output_dir, paths, state, card_kwargs)
    return GenerationResult(output_dir, manifest, paths, written=written, skipped=done)


def _scheduler_settings(pipeline) -> dict:
    return {
        "scheduler": scheduler_name(pipeline.scheduler),
        "scheduler_config": config_dict(pipeline.scheduler.config),
    }


def _summary_settings(explain: bool, commit_eps: float, summary_steps: int) -> dict:
    return {
        "explain": bool(explain),
        "commit_eps": float(commit_eps) if explain else None,
        "summary_steps": summary_steps if explain else None,
    }


def _finish_dataset(output_dir: Path, paths: list[Path], state, card_kwargs: dict | None) -> None:
    """Check that every shard exists (`RuntimeError` naming the missing ones), then write the dataset card."""
    missing = [k for k, path in enumerate(paths) if not path.is_file()]
    if missing:
        raise RuntimeError(
            f"{len(missing)} of {len(paths)} shards are missing in {output_dir} (e.g. {paths[missing[0]].name}); "
            "rerun the same command to generate only those."
        )
    if state.is_main_process:
        from .card import save_dataset_card

        save_dataset_card(output_dir, GenerationManifest.load(output_dir), **(card_kwargs or {}))
    state.wait_for_everyone()


def _check_generation_args(num_samples, shard_size, batch_size, num_inference_steps, base_seed, summary_steps, eps):
    _check_positive_int("num_samples", num_samples)
    _check_positive_int("shard_size", shard_size)
    _check_positive_int("batch_size", batch_size)
    _check_positive_int("num_inference_steps", num_inference_steps)
    _check_positive_int("base_seed", base_seed, allow_zero=True)
    _check_positive_int("summary_steps", summary_steps)
    if not isinstance(eps, (int, float)) or isinstance(eps, bool) or eps <= 0:
        raise ValueError(f"`commit_eps` must be a positive number, got {eps!r}.")


def _resume_manifest(manifest: GenerationManifest, output_dir: Path):
    """`(manifest to use, existing one or None)`: a folder already generated into must have been generated with the
    same model and settings (its recorded source/revision is kept, so every shard's `model_revision` agrees)."""
    existing = GenerationManifest.load(output_dir)
    if existing is not None:
        manifest.check_compatible(existing, output_dir)
        return existing, existing
    if glob.glob(str(output_dir / DATA_DIR / "*.parquet")):
        raise ValueError(
            f"{output_dir} already holds Parquet shards but no generation manifest, so it cannot be resumed safely; "
            "choose a new --out directory."
        )
    return manifest, None


def _start_output(output_dir: Path, new_manifest: GenerationManifest | None) -> None:
    """The data folder, the manifest of a new dataset, and no temp files left by an interrupted run."""
    (output_dir / DATA_DIR).mkdir(parents=True, exist_ok=True)
    if new_manifest is not None:
        new_manifest.save(output_dir)
    for tmp in _temp_glob(output_dir):
        os.remove(tmp)


def _rows_in(k: int, shard_size: int, num_samples: int) -> int:
    return min(shard_size, num_samples - k * shard_size)


def _write_shards(pipeline, modality, manifest: GenerationManifest, paths, pending: list[int], state) -> list[int]:
    """This process's share of the `pending` shards, each written atomically; returns the shard indices written."""
    settings = manifest.settings
    shard_size, num_samples = settings["shard_size"], settings["num_samples"]
    pipeline.set_progress_bar_config(disable=True)
    pipeline.to(state.device)
    written = []
    with state.split_between_processes(pending) as mine:
        bar = tqdm(
            mine,
            desc=f"shards (process {state.process_index})",
            position=state.process_index,
            disable=not mine,
            unit="shard",
        )
        for k in bar:
            indices = range(k * shard_size, k * shard_size + _rows_in(k, shard_size, num_samples))
            table = _shard_table(
                pipeline, modality, indices, settings["batch_size"], settings["base_seed"],
                settings["num_inference_steps"], manifest,
            )  # fmt: skip
            _atomic_write_parquet(table, paths[k], row_group_size=modality.parquet_row_group_size)
            written.append(k)
    return written
