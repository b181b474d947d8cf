"""The `validation_split` holdout of a table: stratified by the condition column, the shared draw otherwise."""

import logging

import datasets
import numpy as np
import pandas as pd
import pytest

from diffusers_xai.modalities import get_modality
from diffusers_xai.modalities.base import Modality
from diffusers_xai.modalities.tabular.data import load_wine_frame
from diffusers_xai.training import TrainingConfig
from tests.test_tabular_training import TINY


def _config(tmp_path, **kw):
    return TrainingConfig.from_dict({**TINY, "validation_split": 0.2, "output_dir": str(tmp_path), **kw})


def test_conditional_holdout_keeps_the_class_proportions(tmp_path):
    tabular = get_modality("tabular")
    config = _config(tmp_path, dataset_name="wine", condition_column="cultivar")
    dataset = tabular.load_dataset(config)
    train_rows, holdout = tabular.holdout_split(dataset, config)
    # 178 rows (59 / 71 / 48 per cultivar): round(35.6) = 36 held out, 11.9 / 14.4 / 9.7 of them proportional
    counts = holdout.to_pandas()["cultivar"].value_counts().sort_index().tolist()
    assert counts == [12, 14, 10] and len(train_rows) == 142
    # the end-of-run evaluation measures against the very rows the trainer held out
    real, held_out = tabular._train_and_holdout(config, 10_000)
    pd.testing.assert_frame_equal(held_out, holdout.to_pandas())
    assert len(real) == 142 and len(pd.concat([real, held_out]).drop_duplicates()) == 178


def test_unconditional_holdout_is_the_shared_datasets_draw(tmp_path):
    tabular = get_modality("tabular")
    config = _config(tmp_path, dataset_name="wine", seed=3)
    dataset = tabular.load_dataset(config)
    _, holdout = tabular.holdout_split(dataset, config)
    expected = dataset.train_test_split(test_size=36, seed=3, shuffle=True)["test"]
    pd.testing.assert_frame_equal(holdout.to_pandas(), expected.to_pandas())
    _, base = Modality.holdout_split(tabular, dataset, config)
    pd.testing.assert_frame_equal(holdout.to_pandas(), base.to_pandas())


def test_numerical_condition_is_stratified_by_its_quantile_bins(tmp_path):
    frame = pd.DataFrame({"y": np.arange(100.0), "x": np.random.default_rng(0).normal(size=100)})
    path = tmp_path / "numeric.csv"
    frame.to_csv(path, index=False)
    tabular = get_modality("tabular")
    config = _config(tmp_path, dataset_name=str(path), condition_column="y", condition_bins=4)
    _, holdout = tabular.holdout_split(tabular.load_dataset(config), config)
    quartiles = (holdout.to_pandas()["y"] // 25).value_counts().sort_index().tolist()
    assert quartiles == [5, 5, 5, 5]


def test_a_class_too_rare_to_split_falls_back_to_the_shared_draw(tmp_path, caplog):
    frame = load_wine_frame()
    frame["cultivar"] = frame["cultivar"].astype(str)
    frame.loc[0, "cultivar"] = "unique"
    tabular = get_modality("tabular")
    config = _config(tmp_path, dataset_name="wine", condition_column="cultivar")
    dataset = datasets.Dataset.from_pandas(frame, preserve_index=False)
    with caplog.at_level(logging.WARNING, logger="diffusers_xai.modalities.tabular.modality"):
        _, holdout = tabular.holdout_split(dataset, config)
    assert "The 36-row holdout is drawn unstratified, not by 'cultivar': The least populated class" in caplog.text
    assert "['unique']" in caplog.text
    expected = dataset.train_test_split(test_size=36, seed=0, shuffle=True)["test"]
    pd.testing.assert_frame_equal(holdout.to_pandas(), expected.to_pandas())


def test_a_holdout_of_every_row_is_refused_by_name(tmp_path, caplog):
    tabular = get_modality("tabular")
    config = _config(tmp_path, dataset_name="wine", condition_column="cultivar", validation_split=0.999)
    with (
        caplog.at_level(logging.WARNING),
        pytest.raises(
            ValueError,
            match=r"^`validation_split` 0.999 holds out 178 of the 178 examples and leaves none to train on: "
            r"lower it \(e.g. 0.2\), or set it to 0 with a dataset of many examples.$",
        ),
    ):
        tabular.holdout_split(tabular.load_dataset(config), config)
    assert "unstratified" not in caplog.text  # refused before any split is tried


def test_a_single_example_is_told_to_hold_none_out():
    """`lower it (e.g. 0.2)` was the advice at 0.2 itself: one example cannot be split at any positive share."""
    from diffusers_xai.modalities.base import holdout_size

    assert holdout_size(2, 0.2) == 1 and holdout_size(178, 0.2) == 36
    with pytest.raises(
        ValueError,
        match=r"^`validation_split` 0.2 holds out 1 of the 1 examples and leaves none to train on: one example cannot "
        r"be split; set it to 0, and train on many examples.$",
    ):
        holdout_size(1, 0.2)
