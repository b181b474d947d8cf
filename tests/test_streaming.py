"""`streaming: true`: the same tensors as the map-style read, bit-reproducible runs, exact resume, bad input."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.data import DataLoader

from diffusers_xai import DiffusionXAIPipeline
from diffusers_xai.modalities.image.data import load_digits_dataset
from diffusers_xai.modalities.registry import get_modality
from diffusers_xai.modalities.tabular.data import load_wine_frame
from diffusers_xai.modalities.tabular.pipeline_tabular import TabularXAIPipeline
from diffusers_xai.modalities.tabular.preprocessor import TabularPreprocessor
from diffusers_xai.training import TrainingConfig, train
from diffusers_xai.training.data import prepare_data, prepare_stream
from tests import test_training
from tests.test_training import assert_same_weights
from tests.test_training import state_dict as unet_weights

# the 8x8 digits subset and 4/8-channel UNet of tests/test_training.py: a step takes milliseconds. 20 rows in
# batches of 8 make 3 batches an epoch, so 6 steps cross two epoch boundaries (a new `set_epoch` shuffle each).
TINY = dict(
    **{**test_training.TINY, "max_train_samples": 20},
    streaming=True,
    shuffle_buffer_size=8,
    max_train_steps=6,
    explanation_card=False,  # the end-of-training card is tested in test_training_card.py (and takes seconds)
)
TABULAR = dict(
    explanation_card=False,
    modality="tabular",
    hidden_dims=[16, 16],
    time_embedding_dim=16,
    num_train_timesteps=50,
    train_batch_size=32,
    report_to="none",
    validation_steps=None,
    checkpointing_steps=None,
    seed=0,
)


def tiny(out, **kw):
    return TrainingConfig(**{**TINY, "output_dir": str(out), **kw})


def map_and_stream_batches(config: TrainingConfig):
    """The map-style batches (unshuffled) and the streamed batches (reading order) of the same config."""
    modality = get_modality(config.modality)
    dataset, _, map_pre = prepare_data(modality, config.replace(streaming=False))
    stream, stream_pre = prepare_stream(modality, config, seed=None)
    size = config.train_batch_size
    return list(DataLoader(dataset, batch_size=size)), list(DataLoader(stream, batch_size=size)), map_pre, stream_pre


def assert_same_batches(expected, actual):
    assert len(actual) == len(expected) > 1
    for want, got in zip(expected, actual):
        assert want.keys() == got.keys()
        for key in want:
            assert want[key].dtype == got[key].dtype and torch.equal(want[key], got[key]), key


# ---- (a) streamed tensors == map-style tensors ----
@pytest.mark.parametrize("storage", ["parquet", "save_to_disk"])
def test_streamed_image_batches_equal_map_style(tmp_path, storage):
    digits = load_digits_dataset(resolution=16).select(range(28))
    path = tmp_path / ("digits.parquet" if storage == "parquet" else "digits")
    if storage == "parquet":
        digits.to_parquet(str(path))
    else:
        digits.save_to_disk(str(path))
    # 16x16 → 8x8: the resize runs, identically on both paths
    config = tiny(tmp_path / "out", dataset_name=str(path), max_train_samples=None, center_crop=True)
    expected, actual, _, _ = map_and_stream_batches(config)
    assert_same_batches(expected, actual)
    assert actual[0]["x0"].shape == (8, 1, 8, 8) and actual[-1]["x0"].shape == (4, 1, 8, 8)
    if storage == "parquet":  # read from the file as it streams: no Arrow copy in the cache (a map-style read has one)
        cache = tmp_path / "cache"
        stream, _ = prepare_stream(get_modality("image"), config.replace(cache_dir=str(cache)), seed=0)
        assert sum(1 for _ in stream) == 28
        assert not list(cache.rglob("*.arrow"))


def test_streamed_table_batches_equal_map_style_and_fit_on_the_first_rows(tmp_path):
    path = tmp_path / "wine.csv"  # shuffled: the built-in table is sorted by cultivar, so its head has one class
    load_wine_frame().sample(frac=1.0, random_state=0).to_csv(path, index=False)
    config = TrainingConfig.from_dict(
        {**TABULAR, "dataset_name": str(path), "condition_column": "cultivar", "streaming": True, "max_train_steps": 1}
    )
    expected, actual, map_pre, stream_pre = map_and_stream_batches(config)
    assert_same_batches(expected, actual)  # x0 (quantile-normal) and class_labels
    assert "class_labels" in actual[0]
    torch.testing.assert_close(stream_pre.quantiles, map_pre.quantiles, rtol=0, atol=0)

    # `streaming_fit_samples` rows fit the preprocessor: the first 50 rows of the file, as documented
    _, stream_pre = prepare_stream(get_modality("tabular"), config.replace(streaming_fit_samples=50), seed=None)
    head = TabularPreprocessor.fit(pd.read_csv(path).head(50), condition_column="cultivar", seed=0)
    torch.testing.assert_close(stream_pre.quantiles, head.quantiles, rtol=0, atol=0)
    assert not torch.equal(stream_pre.quantiles, map_pre.quantiles)

    # `nan_policy: drop` filters the stream row by row: the complete rows of the map-style `dropna`
    frame = pd.read_csv(path)
    frame.loc[[0, 5, 40], "alcohol"] = np.nan
    frame.loc[[7], "magnesium"] = np.nan
    frame.to_csv(path, index=False)
    expected, actual, _, _ = map_and_stream_batches(config.replace(nan_policy="drop"))
    assert_same_batches(expected, actual)
    assert sum(len(b["x0"]) for b in actual) == 174


def test_streamed_series_windows_equal_map_style(tmp_path):
    t = np.arange(61)
    frame = pd.DataFrame({"date": [f"day {i}" for i in t], "a": np.sin(t / 5.0), "b": (t % 7).astype(np.int64)})
    path = tmp_path / "series.csv"
    frame.to_csv(path, index=False)
    base = {"modality": "timeseries", "dataset_name": str(path), "sequence_length": 8, "stride": 3}
    config = TrainingConfig.from_dict({**base, "train_batch_size": 5, "streaming": True, "max_train_steps": 1})
    expected, actual, map_pre, stream_pre = map_and_stream_batches(config)
    assert_same_batches(expected, actual)  # 18 windows (starts 0, 3, .., 51) over channels a, b; the date dropped
    assert sum(len(b["x0"]) for b in actual) == 18 and stream_pre.channels == map_pre.channels == ["a", "b"]

    # a gap cannot be interpolated from a stream: the error names the channel and the time step
    frame.loc[30, "a"] = np.nan
    frame.to_csv(path, index=False)
    stream, _ = prepare_stream(get_modality("timeseries"), config.replace(streaming_fit_samples=5), seed=None)
    with pytest.raises(ValueError, match=r"channels \['a'\] at time step 30"):
        list(stream)
    with pytest.raises(ValueError, match="nan_policy: interpolate.*streaming: true"):
        prepare_stream(get_modality("timeseries"), config.replace(nan_policy="interpolate"), seed=None)


# ---- (b) a streaming run: saved, loadable, bit-identical on rerun; (c) exact resume ----
@pytest.fixture(scope="module")
def streamed_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("streamed") / "a"
    result = train(tiny(out, checkpointing_steps=4))
    return out, result, unet_weights(result.pipeline)


def test_streaming_run_saves_a_loadable_pipeline_and_reruns_bit_identically(streamed_run, tmp_path):
    out, result, weights = streamed_run
    assert result.global_step == 6 and np.isfinite(result.loss_history).all()
    loaded = DiffusionXAIPipeline.from_pretrained(out)
    assert_same_weights(unet_weights(loaded), weights)
    # step 4 is the 1st batch of epoch 1 (3 batches an epoch): where a resume picks the stream up
    state = json.loads((out / "checkpoint-4" / "trainer_state.json").read_text())
    assert state["stream_position"] == {"epoch": 1, "batches": 1}

    rerun = train(tiny(tmp_path / "b"))
    assert rerun.loss_history == result.loss_history
    assert_same_weights(unet_weights(rerun.pipeline), weights)


def test_stream_order_is_seeded_and_reshuffled_every_epoch(tmp_path):
    modality, config = get_modality("image"), tiny(tmp_path)

    def first_batch(stream):
        return next(iter(DataLoader(stream, batch_size=8)))["x0"]

    stream, _ = prepare_stream(modality, config, seed=0)
    first = first_batch(stream)
    assert torch.equal(first_batch(stream), first)
    stream.set_epoch(1)  # what the trainer's `train_dataloader.set_epoch(epoch)` reaches
    assert not torch.equal(first_batch(stream), first)
    assert not torch.equal(first_batch(prepare_stream(modality, config, seed=1)[0]), first)


def test_streaming_resume_lands_on_the_uninterrupted_weights(streamed_run, tmp_path):
    out, result, weights = streamed_run
    shutil.copytree(out / "checkpoint-4", tmp_path / "checkpoint-4")
    resumed = train(tiny(tmp_path, resume_from_checkpoint="latest"))
    assert resumed.initial_global_step == 4 and resumed.global_step == 6
    assert resumed.loss_history == result.loss_history
    assert_same_weights(unet_weights(resumed.pipeline), weights)


def test_streaming_table_trains_from_a_csv(tmp_path):
    path = tmp_path / "wine.csv"
    load_wine_frame().to_csv(path, index=False)
    config = TrainingConfig.from_dict(
        {**TABULAR, "dataset_name": str(path), "streaming": True, "max_train_steps": 7, "output_dir": str(tmp_path)}
        | {"eval_samples": 50, "validation_num_inference_steps": 4}
    )  # 178 rows in batches of 32: the 7th step is in the 2nd pass over the stream
    result = train(config)
    assert result.global_step == 7 and np.isfinite(result.loss_history).all()
    # 13 numbers + the 3 levels of cultivar (an int column with few values: categories)
    assert TabularXAIPipeline.from_pretrained(tmp_path).preprocessor.num_features == 16
    # the end-of-training evaluation reads its reference rows from the stream (the first 10,000: all 178 here)
    assert (result.evaluation.num_real, result.evaluation.num_generated) == (178, 50)


# ---- (d) bad input ----
def test_streaming_bad_input(tmp_path):
    with pytest.raises(ValueError, match=r"stream of unknown length.*set `max_train_steps`"):
        tiny(tmp_path, max_train_steps=None)
    with pytest.raises(ValueError, match=r"`validation_split` \(0.1\).*set `validation_split: 0`"):
        tiny(tmp_path, validation_split=0.1)
    with pytest.raises(ValueError, match="`shuffle_buffer_size` must be >= 1, got 0"):
        tiny(tmp_path, shuffle_buffer_size=0)
    empty = tmp_path / "empty.csv"
    pd.DataFrame({"x": [1.0]}).iloc[:0].to_csv(empty, index=False)
    with pytest.raises(ValueError, match="empty|streamed no rows"):
        train(
            TrainingConfig.from_dict({**TABULAR, "dataset_name": str(empty), "streaming": True, "max_train_steps": 1})
        )


# ---- (e) two processes ----
@pytest.mark.slow
def test_two_process_streaming_run_keeps_ranks_in_sync(tmp_path):
    from tests.test_multiprocess_training import launch
    from tests.test_multiprocess_training import unet_weights as saved_weights

    proc, ranks = launch(tmp_path, tmp_path / "a", "--streaming", "true", "--max_train_steps", "4")
    assert [r["num_processes"] for r in ranks] == [2, 2]
    assert ranks[0]["sha256"] == ranks[1]["sha256"]  # both ranks stepped on their own batches in lockstep
    assert "after 4 steps" in proc.stdout
    state = json.loads((tmp_path / "a" / "checkpoint-4" / "trainer_state.json").read_text())
    assert state["global_step"] == 4 and "stream_position" in state

    shutil.copytree(tmp_path / "a" / "checkpoint-2", tmp_path / "b" / "checkpoint-2")
    _, resumed = launch(
        tmp_path, tmp_path / "b", "--streaming", "true", "--max_train_steps", "4", "--resume_from_checkpoint", "latest"
    )
    assert resumed[0]["sha256"] == ranks[0]["sha256"]
    a, b = saved_weights(tmp_path / "a"), saved_weights(tmp_path / "b")
    assert all(torch.equal(a[k], b[k]) for k in a)
