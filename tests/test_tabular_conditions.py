"""Rows with given values from an unconditional table generator, by rejection (`sample_with_values`)."""

import numpy as np
import pandas as pd
import pytest
import torch

from diffusers_xai.modalities.tabular import sample_with_values
from diffusers_xai.testing import tiny_tabular_pipeline


def skewed_sampler(calls):
    """Rows whose class is u (70%), v (25%) or w (5%), x their draw number; records each call's (n, round)."""

    def sample(n, round_index):
        calls.append((n, round_index))
        rng = np.random.default_rng(round_index)
        start = sum(c[0] for c in calls[:-1])
        return pd.DataFrame(
            {"g": rng.choice(["u", "v", "w"], n, p=[0.7, 0.25, 0.05]), "x": np.arange(start, start + n)}
        )

    return sample


def test_rows_hold_the_given_values_in_order_and_are_each_values_first_draws():
    calls = []
    values = ["w", "u", "v", "u", "w", "w", "u", "v"] * 5  # 15 w's: more than one round's share
    rows = sample_with_values(skewed_sampler(calls), "g", values, progress=False)
    assert rows["g"].tolist() == values and rows.index.tolist() == list(range(40))
    drawn = pd.concat([skewed_sampler([])(n, r).assign(x=None) for n, r in calls], ignore_index=True)
    drawn["x"] = np.arange(len(drawn))
    for v, n in pd.Series(values).value_counts().items():
        # the kept rows of a value are its first n draws, in draw order: rejection, never a choice among matches
        assert rows.loc[rows["g"] == v, "x"].tolist() == drawn.loc[drawn["g"] == v, "x"].iloc[:n].tolist()
    # round 1 draws the 40 rows asked for; round 2 the rows each short value needs at its share of round 1's draws
    first = drawn.iloc[:40]
    wanted = pd.Series(values).value_counts()
    short = {v: wanted[v] - min((first.g == v).sum(), wanted[v]) for v in wanted.index}
    need = max(int(np.ceil(k * 40 / max((first.g == v).sum(), 1))) for v, k in short.items() if k)
    assert calls[0] == (40, 0) and calls[1] == (min(need, 400), 1)


def test_missing_values_match_missing_values():
    def sample(n, round_index):
        return pd.DataFrame(
            {"g": pd.array(["a", None] * n, dtype="string")[:n], "x": 100.0 * round_index + np.arange(n)}
        )

    rows = sample_with_values(sample, "g", [None, "a", np.nan], progress=False)
    assert rows["g"].isna().tolist() == [True, False, True] and rows["x"].tolist() == [1.0, 0.0, 101.0]
    assert rows["g"].dtype == "string"  # one iloc over the draws keeps every dtype


def test_several_columns_take_one_tuple_of_values_per_row():
    def sample(n, round_index):
        rng = np.random.default_rng(round_index)
        return pd.DataFrame({"g": rng.choice(["u", "v"], n), "h": rng.choice([1, 2, 3], n), "x": rng.normal(size=n)})

    values = [("u", 3), ("v", 1), ("u", 3), ("v", 2)] * 3
    rows = sample_with_values(sample, ["g", "h"], values, progress=False)
    assert list(zip(rows["g"], rows["h"], strict=True)) == values and rows["h"].dtype == np.int64
    as_array = sample_with_values(sample, ["g", "h"], np.array(values, dtype=object), progress=False)
    pd.testing.assert_frame_equal(as_array, rows)  # the rows of an array ask for the same values
    first = sample(12, 0)
    own = first[(first["g"] == "u") & (first["h"] == 3)]["x"].tolist()
    assert rows.loc[(rows["g"] == "u") & (rows["h"] == 3), "x"].tolist()[: len(own)] == own[:6]
    with pytest.raises(ValueError, match=r"^'u' is not a tuple of 2 values, one per column \['g', 'h'\]"):
        sample_with_values(sample, ["g", "h"], ["u"], progress=False)
    message = r"^After 2 rounds \(\d+ rows drawn\) the generator wrote too few rows with \('g', 'h'\) = "
    message += r"\('u', 4\) \(0 of 1\)"
    with pytest.raises(ValueError, match=message):
        sample_with_values(sample, ["g", "h"], [("u", 4)], max_rounds=2, progress=False)
    with pytest.raises(ValueError, match=r"^`column` is empty: name the column"):
        sample_with_values(sample, [], ["u"], progress=False)


def test_errors_name_the_input_and_the_fix():
    sample = skewed_sampler([])
    with pytest.raises(ValueError, match=r"^Column 'species' is not in the generated rows \(columns: \['g', 'x'\]\)"):
        sample_with_values(sample, "species", ["u"], progress=False)
    with pytest.raises(ValueError, match=r"^`values` is empty: give one value per row wanted"):
        sample_with_values(sample, "g", [], progress=False)
    with pytest.raises(ValueError, match=r"^`max_rounds` must be a positive int, got 0"):
        sample_with_values(sample, "g", ["u"], max_rounds=0, progress=False)
    message = (
        r"^After 3 rounds \(\d+ rows drawn\) the generator wrote too few rows with 'g' = 'z' \(0 of 2\): raise "
        r"`max_rounds`, or train with `condition_column: g` and pass `class_labels` to the pipeline\.$"
    )
    with pytest.raises(ValueError, match=message):
        sample_with_values(sample, "g", ["u", "z", "z"], max_rounds=3, progress=False)


def test_an_unconditional_pipeline_gives_the_exact_class_counts_of_its_own_rows():
    pipe, frame = tiny_tabular_pipeline(condition_column=None, seed=0)

    def sample(n, round_index):
        return pipe(num_rows=n, num_inference_steps=5, generator=torch.Generator().manual_seed(round_index)).rows

    labels = frame["cultivar"].sample(30, random_state=0).tolist()
    rows = sample_with_values(sample, "cultivar", labels, progress=False)
    assert rows["cultivar"].tolist() == labels and list(rows.columns) == list(frame.columns)
    assert rows.dtypes.to_dict() == sample(4, 0).dtypes.to_dict()
    # the first round's rows of a class are the generator's own rows of that class, unchanged
    first = sample(30, 0)
    for c in set(labels):
        own = first[first["cultivar"] == c].reset_index(drop=True)
        kept = rows[rows["cultivar"] == c].reset_index(drop=True).iloc[: len(own)]
        pd.testing.assert_frame_equal(kept, own.iloc[: len(kept)])


def test_rows_kept_from_several_rounds_get_fresh_identifiers_with_the_preprocessor():
    frame = pd.DataFrame({"id": np.arange(1, 41), "g": ["u", "v", "v", "v"] * 10, "x": np.linspace(0, 1, 40)})
    pipe, _ = tiny_tabular_pipeline(frame, condition_column=None)

    def sample(n, round_index):
        return pipe(num_rows=n, num_inference_steps=2, generator=torch.Generator().manual_seed(round_index)).rows

    wanted = ["u"] * 12
    plain = sample_with_values(sample, "g", wanted, progress=False)
    assert plain["id"].nunique() < 12  # each round numbers its rows from 0: kept rows of two rounds share ids
    fresh = sample_with_values(sample, "g", wanted, progress=False, preprocessor=pipe.preprocessor)
    assert fresh["id"].tolist() == list(range(41, 53))
    pd.testing.assert_frame_equal(fresh.drop(columns="id"), plain.drop(columns="id"))
