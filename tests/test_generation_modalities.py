"""Sharded generation of tables and time series: one sample function per modality, same guarantees as images."""

import hashlib

import datasets
import numpy as np
import pytest
import torch

from diffusers_xai.generation import generate_dataset, load_pipeline, model_fingerprint
from diffusers_xai.generation.card import dataset_card
from diffusers_xai.modalities.tabular.pipeline_tabular import TabularXAIPipeline
from diffusers_xai.modalities.timeseries.data import make_sines
from diffusers_xai.modalities.timeseries.pipeline_timeseries import TimeSeriesXAIPipeline
from diffusers_xai.modalities.timeseries.preprocessor import TimeSeriesPreprocessor
from diffusers_xai.models import TimeSeriesDenoiser

STEPS = 3


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def sines():
    pre = TimeSeriesPreprocessor.fit(make_sines(64, sequence_length=12), sequence_length=12)
    torch.manual_seed(0)
    model = TimeSeriesDenoiser(
        in_channels=5, sample_size=12, hidden_dim=16, num_layers=1, num_heads=2, time_embedding_dim=16
    ).eval()
    pipe = TimeSeriesXAIPipeline.from_denoiser(model, pre, "ddpm", num_train_timesteps=50)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _digests(paths):
    return [hashlib.sha256(p.read_bytes()).hexdigest() for p in paths]


def test_table_rows_keep_the_schema_and_do_not_depend_on_the_batch(wine_pipe, tmp_path):
    pipe, frame = wine_pipe
    result = generate_dataset(pipe, tmp_path / "a", 6, shard_size=3, batch_size=3, num_inference_steps=STEPS)
    ds = datasets.load_dataset(str(tmp_path / "a"), split="train")
    assert ds.num_rows == 6
    assert ds.column_names[: len(frame.columns)] == list(frame.columns)
    assert set(ds["cultivar"]) <= set(frame["cultivar"])
    assert [ds.features[name].dtype for name in frame.columns] == [str(t) for t in frame.dtypes]
    assert result.manifest.modality == "tabular"

    # row i is what the pipeline gives for its own generator (label drawn first from that generator)
    g = torch.Generator().manual_seed(4)
    label = torch.multinomial(pipe.preprocessor.class_probabilities.float(), 1, generator=g)
    alone = pipe(num_rows=1, generator=[g], class_labels=label, num_inference_steps=STEPS).rows
    assert {name: ds[4][name] for name in frame.columns} == pytest.approx(alone.iloc[0].to_dict(), rel=1e-12)

    card = dataset_card(result.output_dir, result.manifest)
    assert card.data.task_categories == ["tabular-classification", "tabular-regression"]


def test_table_identifiers_follow_the_sample_index_across_batches_and_shards(tmp_path):
    from diffusers_xai.modalities.tabular import load_wine_frame
    from diffusers_xai.testing import tiny_tabular_pipeline

    frame = load_wine_frame()
    frame.insert(0, "row_id", np.arange(1, len(frame) + 1))
    frame.insert(1, "code", [f"W-{i:04d}" for i in np.random.default_rng(0).permutation(len(frame))])
    pipe, _ = tiny_tabular_pipeline(frame, condition_column=None)
    generate_dataset(pipe, tmp_path / "ids", 10, shard_size=6, batch_size=3, num_inference_steps=STEPS)
    ds = datasets.load_dataset(str(tmp_path / "ids"), split="train")
    # every batch of 3 numbers its rows from 0 in the pipeline; the dataset numbers them by sample index
    assert ds["row_id"] == [179 + i for i in ds["sample_index"]] == list(range(179, 189))
    assert ds["code"] == [f"W-{178 + i:04d}" for i in range(10)]
    alone = pipe(num_rows=1, generator=[torch.Generator().manual_seed(4)], num_inference_steps=STEPS).rows
    assert ds[4]["alcohol"] == alone["alcohol"].iloc[0]  # only the identifiers are rewritten


def test_table_levels_drawn_from_the_posterior_do_not_depend_on_the_batch(tmp_path):
    from vega_datasets import local_data

    from diffusers_xai.testing import tiny_tabular_pipeline

    pipe, _ = tiny_tabular_pipeline(local_data.airports().head(600), condition_column=None)
    assert [c["name"] for c in pipe.preprocessor.categorical if c.get("level_stats")] == ["state"]
    rows = {}
    for batch_size in (1, 4):
        out = tmp_path / f"b{batch_size}"
        generate_dataset(pipe, out, 8, shard_size=8, batch_size=batch_size, num_inference_steps=STEPS)
        rows[batch_size] = datasets.load_dataset(str(out), split="train").to_pandas()
    # a row's state is drawn from p(state | its numbers, its bits) with its own generator, not the batch's first
    assert rows[1]["state"].tolist() == rows[4]["state"].tolist()
    assert rows[1]["state"].nunique() > 4  # drawn, not one level for every row


def test_table_datasets_keep_timestamps_time_zones_and_nullable_ints(tmp_path):
    import pandas as pd
    import pyarrow.parquet as pq

    from diffusers_xai.testing import tiny_tabular_pipeline
    from tests.test_tabular_schema import shop_frame

    frame = shop_frame()
    frame["returns"] = pd.array([None if i % 7 == 0 else i % 5 for i in range(len(frame))], dtype="Int64")
    frame["placed_paris"] = frame["placed"].dt.tz_localize("Europe/Paris")
    frame["store"] = frame["store"].astype("category")
    pipe, _ = tiny_tabular_pipeline(frame, condition_column=None)
    result = generate_dataset(pipe, tmp_path / "shop", 6, shard_size=6, batch_size=3, num_inference_steps=STEPS)
    schema = pq.read_schema(result.shard_paths[0])
    types = {name: str(schema.field(name).type) for name in frame.columns}
    assert types == {
        "order_id": "string",
        "temperature": "double",
        "weight": "double",
        "items": "int64",
        "express": "bool",
        "placed": "timestamp[ns]",
        "day": "string",
        "store": "string",  # a categorical dtype is written as its categories' type
        "returns": "int64",
        "placed_paris": "timestamp[ns, tz=Europe/Paris]",
    }
    written = pd.read_parquet(result.shard_paths[0], dtype_backend="numpy_nullable")
    generators = [torch.Generator().manual_seed(i) for i in range(6)]
    rows = pipe(num_rows=6, generator=generators, num_inference_steps=STEPS).rows
    for name in ["placed", "placed_paris", "returns", "express", "day"]:  # the values of the pipeline's own rows
        assert written[name].tolist() == rows[name].tolist(), name
    assert written["returns"].isna().tolist() == rows["returns"].isna().tolist()


def test_load_pipeline_finds_the_tabular_class(wine_pipe, tmp_path):
    pipe, _ = wine_pipe
    pipe.save_pretrained(tmp_path / "wine")
    loaded, revision = load_pipeline(str(tmp_path / "wine"))
    assert type(loaded) is TabularXAIPipeline and revision is None
    assert model_fingerprint(loaded) == model_fingerprint(pipe)


def test_table_summaries_without_attention(wine_pipe, tmp_path):
    pipe, _ = wine_pipe
    generate_dataset(pipe, tmp_path / "a", 4, shard_size=4, batch_size=2, num_inference_steps=STEPS, explain=True)
    ds = datasets.load_dataset(str(tmp_path / "a"), split="train")
    assert "attention_entropy" not in ds.column_names  # an MLP denoiser has no attention
    assert all(0 <= c < STEPS for c in ds["commit_step"])


def test_series_are_arrays_in_original_units(sines, tmp_path):
    kw = dict(shard_size=2, batch_size=2, num_inference_steps=STEPS, explain=True)
    result = generate_dataset(sines, tmp_path / "a", 5, **kw)
    ds = datasets.load_dataset(str(tmp_path / "a"), split="train").with_format("numpy")[:]
    assert ds["series"].shape == (5, 12, 5) and ds["series"].dtype == np.float32
    alone = sines(num_series=1, generator=torch.Generator().manual_seed(3), num_inference_steps=STEPS).series
    np.testing.assert_allclose(ds["series"][3], np.asarray(alone[0], dtype=np.float32), rtol=1e-6)
    entropy = np.asarray(ds["attention_entropy"])  # the transformer denoiser has attention
    assert ((entropy > 0) & (entropy <= 1)).all()
    assert result.manifest.modality == "timeseries"
    # same shards from another run with a different shard order (shard 1 regenerated alone)
    other = generate_dataset(
        sines, tmp_path / "b", 5, shard_size=2, batch_size=2, num_inference_steps=STEPS, explain=True
    )
    other.shard_paths[1].unlink()
    again = generate_dataset(
        sines, tmp_path / "b", 5, shard_size=2, batch_size=2, num_inference_steps=STEPS, explain=True
    )
    assert again.written == [1] and _digests(again.shard_paths) == _digests(result.shard_paths)


def test_generated_datasets_load_back_as_the_samples_evaluate_scores(wine_pipe, sines, tmp_path, capsys):
    import json

    from diffusers_xai.cli import main as cli_main
    from diffusers_xai.generation import load_generated_samples
    from diffusers_xai.testing import tiny_pipeline

    pipe, frame = wine_pipe
    generate_dataset(pipe, tmp_path / "t", 24, shard_size=10, batch_size=5, num_inference_steps=STEPS, explain=True)
    name, rows = load_generated_samples(tmp_path / "t")  # summaries, seeds and the like left out
    written = datasets.load_dataset(str(tmp_path / "t"), split="train").to_pandas()
    assert name == "tabular" and list(rows.columns) == list(frame.columns) and len(written.columns) > len(rows.columns)
    assert rows.equals(written[list(frame.columns)])
    frame.to_csv(tmp_path / "real.csv", index=False)
    argv = ["evaluate", "--samples", str(tmp_path / "t"), "--data", str(tmp_path / "real.csv"), "--target"]
    argv += ["cultivar", "--out", str(tmp_path / "report.json"), "--no_sdmetrics_privacy", "--no_progress"]
    assert cli_main(argv) == 0, capsys.readouterr().err
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["modality"] == "tabular" and report["num_generated"] == 24

    generate_dataset(sines, tmp_path / "s", 3, shard_size=2, batch_size=2, num_inference_steps=STEPS)
    name, windows = load_generated_samples(tmp_path / "s")
    series = datasets.load_dataset(str(tmp_path / "s"), split="train").with_format("numpy")[:]["series"]
    assert name == "timeseries" and windows.shape == (3, 12, 5) and np.array_equal(windows, series)

    generate_dataset(tiny_pipeline(), tmp_path / "i", 3, shard_size=3, num_inference_steps=STEPS)
    name, images = load_generated_samples(tmp_path / "i")
    assert name == "image" and [im.size for im in images] == [(8, 8)] * 3

    (tmp_path / "s" / "data" / "train-00001-of-00002.parquet").unlink()
    with pytest.raises(ValueError, match="lacks 1 of its 2 shards .e.g. train-00001-of-00002.parquet.; rerun"):
        load_generated_samples(tmp_path / "s")
    with pytest.raises(ValueError, match="holds no generation manifest"):
        load_generated_samples(tmp_path)
