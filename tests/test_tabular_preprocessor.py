"""TabularPreprocessor: schema round trips, exact persistence, sklearn equality, and bad input."""

import datetime

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.preprocessing import QuantileTransformer

from diffusers_xai.modalities.tabular.data import (
    load_breast_cancer_frame,
    load_table,
    load_tabular_dataset,
    load_wine_frame,
)
from diffusers_xai.modalities.tabular.preprocessor import TabularPreprocessor


def mixed_frame(n=120, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "height": rng.normal(170, 10, n),
            "weight32": rng.gamma(5, 10, n).astype(np.float32),
            "age": rng.integers(18, 90, n).astype(np.int64),
            "smoker": rng.random(n) < 0.3,
            "city": pd.Categorical(rng.choice(["paris", "oslo", "rome"], n), categories=["rome", "oslo", "paris"]),
            "blood": rng.choice(["A", "B", "AB", "O"], n).astype(object),
            "grade": rng.integers(1, 4, n).astype(np.int64),  # an int code declared categorical
        }
    )


@pytest.mark.parametrize("encoding", ["onehot", "analog_bits"])
def test_schema_round_trip_mixed_types(encoding):
    df = mixed_frame()
    pre = TabularPreprocessor.fit(df, categorical_columns=["grade"], categorical_encoding=encoding)
    assert [c["kind"] for c in pre.columns] == ["numerical"] * 3 + ["categorical"] * 4
    widths = {"onehot": 2 + 3 + 4 + 3, "analog_bits": 1 + 2 + 2 + 2}[encoding]
    assert pre.num_features == 3 + widths
    x = pre.transform(df)
    assert x.shape == (len(df), pre.num_features) and x.dtype == torch.float32
    back = pre.inverse_transform(x)
    assert list(back.columns) == list(df.columns)
    assert back.dtypes.to_dict() == df.dtypes.to_dict()
    assert list(back["city"].cat.categories) == ["rome", "oslo", "paris"]
    for col in ["smoker", "city", "blood", "grade", "age"]:  # discrete columns come back exactly
        assert back[col].tolist() == df[col].tolist(), col
    np.testing.assert_allclose(back["height"], df["height"], atol=1e-3)
    np.testing.assert_allclose(back["weight32"], df["weight32"], rtol=1e-4)


def test_quantile_normal_equals_sklearn_and_training_range_is_kept():
    # the six concavity columns are 0.0 on 13 rows, point masses whose grid leaves them out (test_tabular_atoms.py)
    df = load_breast_cancer_frame()
    df = df.drop(columns=[name for name in df if "concav" in name])
    pre = TabularPreprocessor.fit(df, n_quantiles=50)
    assert not any(c["atoms"] for c in pre.numerical)
    names = [c["name"] for c in pre.numerical]
    values = df[names].to_numpy(np.float64)
    qt = QuantileTransformer(n_quantiles=50, output_distribution="normal", subsample=10**9).fit(values)
    probe = np.concatenate([values, values * 2.0, values - 1.0])
    np.testing.assert_array_equal(pre._quantile_normal(probe), qt.transform(probe))
    z = np.random.default_rng(0).normal(size=(300, len(names))) * 4
    np.testing.assert_array_equal(pre._quantile_normal(z, inverse=True), qt.inverse_transform(z))
    # far-out samples are clipped to the training range; the default n_quantiles is TabDDPM's rule
    rows = pre.inverse_transform(torch.full((4, pre.num_features), 9.0))
    assert (rows[names].to_numpy() == df[names].max().to_numpy()).all()
    assert TabularPreprocessor.fit(df).config.n_quantiles == max(min(len(df) // 30, 1000), 10) == 18


def test_save_and_reload_is_exact(tmp_path):
    df = load_wine_frame()
    pre = TabularPreprocessor.fit(df, condition_column="cultivar", categorical_encoding="analog_bits")
    pre.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "diffusion_pytorch_model.safetensors"]
    loaded = TabularPreprocessor.from_pretrained(tmp_path)
    assert loaded.quantiles.dtype == torch.float64
    assert torch.equal(loaded.quantiles, pre.quantiles) and torch.equal(loaded.references, pre.references)
    assert loaded.columns == pre.columns and loaded.feature_slices == pre.feature_slices
    assert torch.equal(loaded.transform(df), pre.transform(df))
    z = torch.randn(50, pre.num_features, generator=torch.Generator().manual_seed(0))
    labels = torch.arange(50) % 3
    pd.testing.assert_frame_equal(loaded.inverse_transform(z, labels), pre.inverse_transform(z, labels))


def test_condition_column_labels_and_frequencies():
    df = load_wine_frame()
    pre = TabularPreprocessor.fit(df, condition_column="cultivar")
    assert pre.num_features == 13 and pre.num_classes == 3
    assert pre.condition["categories"] == [0, 1, 2] and pre.condition["counts"] == [59, 71, 48]
    np.testing.assert_allclose(pre.class_probabilities.numpy(), np.array([59, 71, 48]) / 178)
    assert pre.encode_labels(df).tolist() == df["cultivar"].tolist()
    with pytest.raises(ValueError, match=r"'cultivar' has levels \[7\] unseen"):
        pre.encode_labels([0, 7])
    with pytest.raises(ValueError, match="conditions on 'cultivar'"):
        pre.inverse_transform(pre.transform(df))


def test_feature_names_and_slices():
    pre = TabularPreprocessor.fit(mixed_frame(), categorical_columns=["grade"])
    names = pre.feature_names()
    assert names[:3] == ["height", "weight32", "age"] and names[3:5] == ["smoker=False", "smoker=True"]
    assert pre.feature_slices["blood"] == slice(8, 12) and len(names) == pre.num_features


def test_inputs_csv_parquet_and_hf_dataset(tmp_path):
    df = load_wine_frame()
    df.to_csv(tmp_path / "wine.csv", index=False)
    df.to_parquet(tmp_path / "wine.parquet")
    for source in [tmp_path / "wine.csv", tmp_path / "wine.parquet", load_tabular_dataset("wine"), "wine"]:
        pd.testing.assert_frame_equal(load_table(source).reset_index(drop=True), df, check_dtype=False)
    with pytest.raises(ValueError, match="neither a file nor a built-in"):
        load_table("no_such_table.csv")


# ---- bad input ----
def test_nested_objects_are_refused_naming_the_column():
    df = mixed_frame(20)
    df["tags"] = [["a", "b"]] * 20
    with pytest.raises(TypeError, match=r"Column 'tags' holds nested objects \(e.g. a list"):
        TabularPreprocessor.fit(df)


def test_all_missing_column_is_refused():
    df = mixed_frame(20)
    df["empty"] = np.nan
    with pytest.raises(ValueError, match="Column 'empty' is entirely missing"):
        TabularPreprocessor.fit(df)


def test_nans_are_modelled_by_default_imputed_or_refused_on_request():
    df = mixed_frame(60)
    df.loc[[3, 7], "height"] = np.nan
    df.loc[5, "blood"] = None
    with pytest.raises(ValueError, match=r"missing values in \{'height': 2, 'blood': 1\}.*nan_policy='model'"):
        TabularPreprocessor.fit(df, nan_policy="raise")
    pre = TabularPreprocessor.fit(df, nan_policy="impute")
    x = pre.transform(df)
    assert torch.isfinite(x).all() and pre.num_features == 15  # the 3 levels of `grade` are one-hot
    median = df["height"].median()
    expected = pre.transform(df.assign(height=df["height"].fillna(median)))
    assert torch.equal(x[3, 0], expected[3, 0])
    modelled = TabularPreprocessor.fit(df)  # default: one missingness indicator per column with NaNs
    assert modelled.config.nan_policy == "model" and modelled.num_features == 15 + 2
    assert modelled.feature_names()[-2:] == ["height=NaN", "blood=NaN"]
    xm = modelled.transform(df)
    assert xm[:, -2].eq(1).nonzero().flatten().tolist() == [3, 7] and xm[:, -1].eq(1).nonzero().item() == 5
    back = modelled.inverse_transform(xm)
    assert back["height"].isna().tolist() == df["height"].isna().tolist()
    assert back["blood"].isna().tolist() == df["blood"].isna().tolist()
    clean = TabularPreprocessor.fit(df.dropna())
    with pytest.raises(ValueError, match=r"Column 'height' has 2 missing values .*df\.dropna"):
        clean.transform(df)


def test_a_batch_where_a_column_is_empty_is_encoded():
    """matplotlib's Stocks.csv has DELL in 14% of its rows: a batch of `datasets` rows (dict of lists) without one
    holds None only, which pandas types as object, and the trainer stopped with "Numerical column 'DELL' holds
    non-numeric values". Such a batch encodes as the same rows typed float do."""
    df = mixed_frame(60)
    df.loc[df.index % 3 == 0, "height"] = np.nan
    pre = TabularPreprocessor.fit(df)
    batch = df.iloc[[0, 3, 6]]
    as_lists = pd.DataFrame({k: [None if pd.isna(v) else v for v in batch[k]] for k in batch.columns})
    assert as_lists["height"].dtype == object
    assert torch.equal(pre.transform(as_lists), pre.transform(batch))


def test_constant_columns_are_kept_and_a_one_level_condition_is_refused():
    df = mixed_frame(20)
    pre = TabularPreprocessor.fit(df.assign(only="x", const=3.0))
    assert {c["name"]: c["kind"] for c in pre.columns}["only"] == "constant" and pre.num_features == 15
    back = pre.inverse_transform(torch.zeros(4, 15))
    assert back["only"].tolist() == ["x"] * 4 and back["const"].tolist() == [3.0] * 4
    assert back["const"].dtype == np.float64 and list(back.columns) == list(df.columns) + ["only", "const"]
    with pytest.raises(ValueError, match="The condition column 'only' has a single level 'x'.*train unconditionally"):
        TabularPreprocessor.fit(df.assign(only="x"), condition_column="only")


def test_unsupported_dtypes_and_bad_arguments():
    df = mixed_frame(20)
    with pytest.raises(TypeError, match="Column 'wait' has dtype timedelta64"):
        TabularPreprocessor.fit(df.assign(wait=pd.to_timedelta(range(20), "D")))
    with pytest.raises(TypeError, match="Column 'day' holds a date category"):
        TabularPreprocessor.fit(df.assign(day=[datetime.date(2024, 1, 1 + i % 2) for i in range(20)]))
    with pytest.raises(ValueError, match=r"Columns \['nope'\] are not in the table"):
        TabularPreprocessor.fit(df, categorical_columns=["nope"])
    with pytest.raises(ValueError, match="condition_column"):
        TabularPreprocessor(columns=[], condition_column="x")
    with pytest.raises(ValueError, match=r"`nan_policy` must be one of \['model', 'impute', 'raise'\], got 'drop'"):
        TabularPreprocessor.fit(df, nan_policy="drop")
    pre = TabularPreprocessor.fit(df)
    with pytest.raises(ValueError, match=r"lacks columns \['age'\]"):
        pre.transform(df.drop(columns="age"))
    with pytest.raises(ValueError, match=r"levels \['Z'\] unseen at fit time"):
        pre.transform(df.assign(blood="Z"))
    with pytest.raises(ValueError, match=r"Expected rows of shape \[N, 15\].*do not match"):
        pre.inverse_transform(torch.zeros(2, 9))


def test_unseen_levels_of_held_out_rows_map_to_the_nearest_known_level():
    """`unseen_levels="nearest"` (the trainer's holdout rows): an unseen number of a few-valued number column is
    encoded as the nearest known one, an unseen string as the most frequent level; the default still raises."""
    rng = np.random.default_rng(0)
    df = pd.DataFrame(
        {
            "width": rng.choice([2.2, 2.5, 3.0, 3.4], 80),  # 4 distinct numbers: modelled as levels
            "colour": rng.choice(["red", "red", "blue"], 80).astype(object),
            "x": rng.normal(size=80),
        }
    )
    pre = TabularPreprocessor.fit(df)
    assert {c["name"]: c["kind"] for c in pre.columns}["width"] == "categorical"
    held_out = df.head(3).assign(width=[2.0, 3.3, 2.5], colour=["green", "blue", "red"])
    expected = df.head(3).assign(width=[2.2, 3.4, 2.5], colour=["red", "blue", "red"])
    torch.testing.assert_close(pre.transform(held_out, unseen_levels="nearest"), pre.transform(expected))
    with pytest.raises(ValueError, match=r"'width' has levels \[2.0, 3.3\] unseen at fit time"):
        pre.transform(held_out)
    with pytest.raises(ValueError, match=r"`unseen_levels` must be 'raise' or 'nearest', got 'mode'"):
        pre.transform(held_out, unseen_levels="mode")
