"""The training data of a run: the modality's dataset loaded, checked, split, subset and mapped to tensors through the
preprocessor fitted on it; or, with `streaming: true`, the same as a `datasets.IterableDataset`."""

from __future__ import annotations

from .config import TrainingConfig

__all__ = ["prepare_data", "prepare_stream"]


def _tensor_transform(modality, preprocessor, config: TrainingConfig):
    """The batch transform both paths apply: raw rows to the modality's tensors through the fitted preprocessor."""

    def transform(examples):
        return modality.to_tensors(examples, preprocessor, config)

    return transform


def prepare_data(modality, config: TrainingConfig):
    """Load, check, split and subset the data; returns `(train_dataset, validation_dataset | None, preprocessor)`."""
    dataset = modality.load_dataset(config)
    source = config.dataset_name or config.train_data_dir
    if len(dataset) == 0:
        raise ValueError(f"The dataset {source!r} (split {config.split!r}) is empty; there is nothing to train on.")
    validation = None
    if config.validation_split > 0:
        dataset, validation = modality.holdout_split(dataset, config)
    if config.max_train_samples is not None and config.max_train_samples < len(dataset):
        dataset = dataset.shuffle(seed=config.seed or 0).select(range(config.max_train_samples))
    preprocessor = modality.fit_preprocessor(dataset, config)
    transform = _tensor_transform(modality, preprocessor, config)
    dataset.set_transform(transform)
    if validation is not None:
        validation.set_transform(transform)
    return dataset, validation, preprocessor


def prepare_stream(modality, config: TrainingConfig, seed: int | None):
    """
    `streaming: true`: the modality's `datasets.IterableDataset`, cut to its first `max_train_samples` rows
    (`take`: a stream has no random subset), the preprocessor fitted on a `datasets.Dataset` of its first
    `streaming_fit_samples` rows (the only rows ever held in memory at once, undecoded), shuffled in a
    `shuffle_buffer_size` buffer after permuting the shards (`seed=None` keeps the reading order), and mapped
    through the same `to_tensors` as the map-style path. Returns `(stream, preprocessor)`.
    """
    import datasets

    stream = modality.load_streaming_dataset(config)
    if config.max_train_samples is not None:
        stream = stream.take(config.max_train_samples)
    # undecoded (images stay bytes until the fit reads them); a CSV/JSON stream has no features, so nothing to decode
    head = list((stream.decode(False) if stream.features else stream).take(config.streaming_fit_samples))
    if not head:
        source = config.dataset_name or config.train_data_dir
        raise ValueError(
            f"The dataset {source!r} (split {config.split!r}) streamed no rows; there is nothing to train on."
        )
    columns = list(head[0])
    preprocessor = modality.fit_preprocessor(datasets.Dataset.from_list(head, features=stream.features), config)
    del head
    if seed is not None:
        stream = stream.shuffle(seed=seed, buffer_size=config.shuffle_buffer_size)
    # after the shuffle, so the buffer holds raw (encoded) rows; one map batch per training batch bounds the memory
    transform = _tensor_transform(modality, preprocessor, config)
    stream = stream.map(transform, batched=True, batch_size=config.train_batch_size, remove_columns=columns)
    return stream, preprocessor
