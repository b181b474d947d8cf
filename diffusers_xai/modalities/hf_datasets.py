"""Training data as Hugging Face `datasets`: a Hub id, a `save_to_disk` folder, a CSV / Parquet / JSON file or an
image folder, map-style or streamed; shared by every modality's `load_dataset`."""

from __future__ import annotations

import os

__all__ = ["DATA_FILE_BUILDERS", "STREAM_SHARDS", "load_hf_dataset", "to_stream"]

# `dataset_name` values ending like this are read with the matching `datasets` builder (`load_dataset("csv", ...)`).
DATA_FILE_BUILDERS = {".csv": "csv", ".tsv": "csv", ".parquet": "parquet", ".json": "json", ".jsonl": "json"}


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
