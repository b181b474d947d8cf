"""Load a saved diffusers-xai pipeline from a directory or a Hub repo, resolving the revision it was loaded at."""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..errors import uncached_hub_error

__all__ = ["load_generated_samples", "load_pipeline"]


def _pipeline_class(class_name: str, source: str):
    """The `pipeline_class` of the registered modality that generates with `class_name`."""
    from ..modalities import modality_of

    try:
        return modality_of(class_name).pipeline_class
    except ValueError:
        raise ValueError(
            f"{source} holds a {class_name!r} pipeline, which diffusers-xai cannot generate datasets from; save a "
            "DiffusionXAIPipeline (or another diffusers-xai pipeline) with `save_pretrained`."
        ) from None


def load_pipeline(name_or_path: str, revision: str | None = None, **kwargs):
    """
    Load the diffusers-xai pipeline saved in `name_or_path` (a `save_pretrained` directory or a Hub model repo).

    The pipeline class comes from `model_index.json`. For a Hub repo the whole snapshot is fetched with
    `snapshot_download`, so the commit it was loaded at is known exactly.

    Returns:
        `(pipeline, revision)`: `revision` is the Hub commit sha, or `None` for a local directory.
    """
    if not isinstance(name_or_path, str) or not name_or_path:
        raise ValueError(f"`pipeline` must be a directory or a Hub repo id, got {name_or_path!r}.")
    resolved = None
    path = Path(name_or_path)
    if path.is_dir():
        if not (path / "model_index.json").is_file():
            raise ValueError(f"{path} has no model_index.json; pass a directory written by `save_pretrained`.")
        local = path
    elif os.path.exists(name_or_path):
        raise ValueError(f"{name_or_path} is a file; pass the pipeline's `save_pretrained` directory.")
    elif name_or_path.startswith(("/", ".", "~")) or name_or_path.count("/") > 1:
        raise ValueError(f"Pipeline directory {name_or_path} does not exist; pass a `save_pretrained` directory.")
    else:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import HfHubHTTPError

        try:
            local = Path(snapshot_download(name_or_path, revision=revision))
        except OSError as err:
            if isinstance(err, HfHubHTTPError):  # the Hub answered (repo/revision not found, gated): its own message
                raise
            raise uncached_hub_error(name_or_path, "it", err) from err
        resolved = local.name  # .../snapshots/<commit sha>
    class_name = json.loads((local / "model_index.json").read_text())["_class_name"]
    cls = _pipeline_class(class_name, name_or_path)
    return cls.from_pretrained(local, **kwargs), resolved


def load_generated_samples(output_dir: str | os.PathLike):
    """
    `(modality name, samples)` of a dataset written by [`generate_dataset`] (`diffusers-xai generate`): every shard
    read with its `datasets` features, the generation's own columns (`sample_index`, `seed`, `scheduler`, ...,
    `draws`, the explanation summaries) left out, and the rest turned into what the modality scores
    ([`Modality.samples_from_dataset`]: a table as a DataFrame, images as PIL images, series as an array). So
    `diffusers-xai evaluate --samples <folder>` scores what `generate` wrote. `ValueError` for a folder that is not
    a complete generated dataset.
    """
    import datasets
    import pyarrow.parquet as pq

    from ..modalities import get_modality
    from .manifest import GenerationManifest
    from .sharded import GENERATION_COLUMNS, shard_path

    manifest = GenerationManifest.load(output_dir)
    if manifest is None:
        raise ValueError(f"{output_dir} holds no generation manifest: it was not written by `diffusers-xai generate`.")
    paths = [shard_path(output_dir, k, manifest.num_shards) for k in range(manifest.num_shards)]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise ValueError(
            f"{output_dir} lacks {len(missing)} of its {len(paths)} shards (e.g. {missing[0]}); rerun the same "
            "`diffusers-xai generate` command to finish it."
        )
    dataset = datasets.Dataset(pq.read_table([str(p) for p in paths]))
    dataset = dataset.remove_columns([c for c in dataset.column_names if c in GENERATION_COLUMNS])
    modality = get_modality(manifest.modality)
    return modality.name, modality.samples_from_dataset(dataset)
