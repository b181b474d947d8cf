"""Levels nested in a coarser column's levels: found in the training rows, kept on generated rows
(`tabular/nesting.py`)."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

from diffusers_xai.modalities.tabular import TabularPreprocessor
from diffusers_xai.modalities.tabular.nesting import decoding_order, mark_nesting, nested_levels, nesting_chance
from tests.test_tabular_schema import random_rows


def cars() -> pd.DataFrame:
    from vega_datasets import local_data

    return local_data.cars().dropna().reset_index(drop=True)


def origin_of(table: pd.DataFrame) -> pd.Series:
    return table.groupby("Name").Origin.first()


def test_nesting_chance_known_answers():
    coarse = pd.Series(["a", "b"] * 3)  # p = (1/2, 1/2)
    fine = pd.Series(["x", "x", "y", "y", "y", "z"])  # x twice, y three times, z once (agrees with anything)
    assert nesting_chance(fine, coarse) == pytest.approx(math.log(0.5) + math.log(0.25))
    assert nesting_chance(pd.Series(list("uvwxyz")), coarse) == 0.0  # no level repeats: no evidence


def test_a_cars_name_goes_with_its_origin():
    """vega_datasets' cars: every name has one origin, and 22% of a trained model's rows wrote a name with another
    (the origin decoded from its one-hot features, the name from its analog bits). Found, kept on rows decoded from
    noise, real rows come back exactly, and the same rows decoded without the rule break it."""
    table = cars()
    pre = TabularPreprocessor.fit(table)
    name = next(c for c in pre.columns if c["name"] == "Name")
    assert [rule["column"] for rule in name["within"]] == ["Origin"]
    assert not any(c.get("within") for c in pre.columns if c["name"] != "Name")  # Cylinders and Year vary by name
    assert pre.inverse_transform(pre.transform(table))[["Name", "Origin"]].equals(table[["Name", "Origin"]])
    x = random_rows(pre, n=1000)
    rows = pre.inverse_transform(x, seed=0)
    assert (rows.Name.map(origin_of(table)) == rows.Origin).all()
    name.pop("within")
    free = pre.inverse_transform(x, seed=0)
    agree = free.Name.map(origin_of(table)) == free.Origin
    assert agree.mean() < 0.8
    assert rows.Name[agree].equals(free.Name[agree])  # a name that goes with its origin is left as decoded
    assert rows.drop(columns="Name").equals(free.drop(columns="Name"))  # and nothing else moves


def test_a_name_goes_with_the_origin_it_is_sampled_for():
    """With `Origin` as the condition column, the name follows the class a row is sampled for."""
    table = cars()
    pre = TabularPreprocessor.fit(table, condition_column="Origin")
    name = next(c for c in pre.columns if c["name"] == "Name")
    assert [rule["column"] for rule in name["within"]] == ["Origin"]
    labels = torch.arange(600) % 3
    rows = pre.inverse_transform(random_rows(pre, n=600), class_labels=labels, seed=0)
    assert rows.Origin.tolist() == [pre.condition["categories"][k] for k in labels.tolist()]
    assert (rows.Name.map(origin_of(table)) == rows.Origin).all()


def test_the_card_names_the_nesting():
    from types import SimpleNamespace

    from diffusers_xai.modalities.tabular.modality import TabularModality

    pre = TabularPreprocessor.fit(cars())
    notes = TabularModality().card_limitations(SimpleNamespace(preprocessor=pre))
    assert [n for n in notes if "by rule" in n] == [
        "Kept by rule on every generated row, not by the denoiser (`derived_columns`): each level of `Name` goes with "
        "the one level of `Origin` it has on training rows."
    ]


def test_a_rule_seen_on_few_repeated_levels_or_broken_once_is_not_kept():
    rng = np.random.default_rng(0)
    origin = rng.choice(["USA", "Europe", "Japan"], 200)
    names = [f"car {i}" for i in range(200)]
    few = pd.DataFrame({"Name": names[:198] + names[:2], "Origin": np.r_[origin[:198], origin[:2]]})
    assert mark_nesting(describe(few), few, None) == {}  # two repeated names in their origin: chance 0.1
    many = pd.DataFrame({"Name": names[:150] + names[:50], "Origin": np.r_[origin[:150], origin[:50]]})
    assert mark_nesting(describe(many), many, None) == {"Name": ["Origin"]}
    broken = many.copy()
    broken.loc[199, "Origin"] = "USA" if broken.loc[49, "Origin"] != "USA" else "Japan"
    assert mark_nesting(describe(broken), broken, None) == {}
    assert mark_nesting(describe(many), many, "Origin") == {"Name": ["Origin"]}  # a condition column is coarse too
    assert mark_nesting(describe(many), many, "Name") == {}  # ... never fine


def describe(table: pd.DataFrame) -> list[dict]:
    from diffusers_xai.modalities.tabular.columns import describe_column

    return [describe_column(name, table[name], True, False) for name in table.columns]


def test_nested_levels_redraws_only_the_rows_outside_and_by_frequency():
    allowed = np.array([[True, False, True], [False, True, True]] * 500)
    nearest = np.tile([0, 0], 500)  # row 0: allowed; row 1: not
    out = nested_levels(nearest, allowed, [1, 5, 3], np.random.default_rng(0))
    assert (out[0::2] == 0).all()
    drawn = out[1::2]
    assert set(drawn) == {1, 2}
    assert np.mean(drawn == 1) == pytest.approx(5 / 8, abs=0.05)  # its training frequency among the allowed ones
    per_row = nested_levels(nearest[:4], allowed[:4], [1, 5, 3], [np.random.default_rng(s) for s in range(4)])
    again = nested_levels(nearest[:4], allowed[:4], [1, 5, 3], [np.random.default_rng(s) for s in range(4)])
    assert per_row.tolist() == again.tolist()


def test_the_rule_survives_save_and_load(tmp_path):
    table = cars()
    pre = TabularPreprocessor.fit(table)
    pre.save_pretrained(tmp_path)
    loaded = TabularPreprocessor.from_pretrained(tmp_path)
    x = random_rows(pre, n=300)
    rows = loaded.inverse_transform(x, seed=1)
    assert rows.equals(pre.inverse_transform(x, seed=1))
    assert (rows.Name.map(origin_of(table)) == rows.Origin).all()


def test_nested_columns_are_decoded_after_their_coarse_columns_and_the_others_keep_their_order():
    """The others' order decides which random draws their posterior levels get: it must not move."""

    def spec(name, levels, within=False):
        return {"name": name, "categories": list(range(levels)), **({"within": [{"column": "x"}]} if within else {})}

    columns = [spec("a", 30), spec("fine", 10, True), spec("c", 2), spec("middle", 5, True), spec("e", 40)]
    assert [c["name"] for c in decoding_order(columns)] == ["a", "c", "e", "middle", "fine"]
