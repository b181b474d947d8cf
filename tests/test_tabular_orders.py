"""Orders between columns: found in the training rows, written on generated rows (`tabular/orders.py`)."""

import os

import numpy as np
import pandas as pd
import pytest

from diffusers_xai.modalities.tabular import TabularPreprocessor
from diffusers_xai.modalities.tabular.orders import mark_orders, order_values, reduced_orders
from tests.test_tabular_schema import random_rows

OHLC = [("Low", "Open"), ("Close", "High"), ("Open", "High"), ("Adj. Close*", "Close"), ("Low", "Close")]


def msft():
    import matplotlib

    return pd.read_csv(os.path.join(matplotlib.get_data_path(), "sample_data", "msft.csv"))


def broken(rows: pd.DataFrame, orders) -> int:
    return int(sum((rows[low] > rows[high]).sum() for low, high in orders))


def test_a_stocks_high_low_open_and_close_keep_their_order():
    """matplotlib's msft.csv: a trained model wrote High < Low in 27 of 1,000 rows. The orders are found (the ones
    others imply left out of the list), rows decoded from noise break none, and the same rows decoded without them
    break many; real rows come back as they were."""
    table = msft()
    pre = TabularPreprocessor.fit(table)
    assert sorted(reduced_orders(pre.columns)) == sorted(OHLC)
    assert pre.inverse_transform(pre.transform(table))[["Open", "High", "Low", "Close"]].equals(
        table[["Open", "High", "Low", "Close"]]
    )
    x = random_rows(pre, n=2000)
    rows = pre.inverse_transform(x)
    assert broken(rows, OHLC) == 0
    for spec in pre.columns:
        spec.pop("at_least", None)
    unordered = pre.inverse_transform(x)
    assert broken(unordered, OHLC) > 500
    prices = ["Open", "High", "Low", "Close", "Adj. Close*"]
    for name in prices:  # a swap moves values between columns, never off the grid or out of the column's range
        assert rows[name].round(2).equals(rows[name])
        assert rows[name].between(table[name].min(), table[name].max()).all()
    same = np.sort(rows[prices].to_numpy(), axis=1) == np.sort(unordered[prices].to_numpy(), axis=1)
    assert same.all()  # each row holds the same prices, in other columns
    assert rows["Volume"].equals(unordered["Volume"])  # in no order


def test_dates_keep_their_order_where_both_are_present():
    """SDV's student_placements: 4 of 215 generated placements ended before they started. `end_date` is missing in
    a third of the rows; where both dates are present, generated ones are in order."""
    rng = np.random.default_rng(0)
    start = pd.Timestamp("2020-01-01") + pd.to_timedelta(rng.integers(0, 200, 300), unit="D")
    end = start + pd.to_timedelta(rng.integers(20, 200, 300), unit="D")
    table = pd.DataFrame(
        {
            "start_date": start.strftime("%Y-%m-%d"),
            "end_date": pd.Series(end.strftime("%Y-%m-%d")).where(rng.random(300) > 0.3),
            "salary": rng.normal(30_000, 5_000, 300).round(-2),
        }
    )
    pre = TabularPreprocessor.fit(table, nan_policy="model")
    assert reduced_orders(pre.columns) == [("start_date", "end_date")]
    x = random_rows(pre, n=2000)
    rows = pre.inverse_transform(x)
    both = rows["end_date"].notna()
    assert 0.1 < both.mean() < 0.9

    def ended_before_start(rows):
        return int((pd.to_datetime(rows["end_date"]) < pd.to_datetime(rows["start_date"])).sum())

    assert ended_before_start(rows) == 0
    pre.columns[1].pop("at_least")
    unordered = pre.inverse_transform(x)
    assert ended_before_start(unordered) > 50
    assert rows["end_date"].isna().equals(unordered["end_date"].isna())  # the orders leave missing values be


def test_order_values_swaps_until_no_order_is_broken():
    """A hand-worked case: b >= a and c >= b. Row 0 (3, 2, 1) is sorted by three swaps; row 1 holds already; row 2
    has `a` missing, so only b >= c's swap applies."""
    columns = [{"name": "a"}, {"name": "b", "at_least": ["a"]}, {"name": "c", "at_least": ["b"]}]
    values = {"a": np.array([3.0, 1.0, np.nan]), "b": np.array([2.0, 5.0, 1.0]), "c": np.array([1.0, 9.0, 0.0])}
    out = order_values(values, columns)
    np.testing.assert_array_equal(out["a"], [1.0, 1.0, np.nan])
    np.testing.assert_array_equal(out["b"], [2.0, 5.0, 0.0])
    np.testing.assert_array_equal(out["c"], [3.0, 9.0, 1.0])
    assert values["a"][0] == 3.0  # the arrays given are not changed


def chance_table(low_high: tuple[float, float], n: int = 124, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    low = rng.uniform(0.0, 1.0, n).round(2)
    return pd.DataFrame({"low": low, "high": rng.uniform(*low_high, n).round(2)})


@pytest.mark.parametrize(
    "low_high, is_order",
    [
        ((0.95, 4.0), False),  # like wine's hue under its total_phenols: in order on every row, as independent
        ((0.5, 1.5), True),  # columns of these values would be with probability 0.98; these, with probability 0.004
    ],
)
def test_an_order_is_one_independent_columns_would_rarely_hold(low_high, is_order):
    table = chance_table(low_high)
    table = table[table["low"] <= table["high"]].reset_index(drop=True)  # in order on every row
    columns = [{"name": n, "kind": "numerical", "integer": False, "decimals": 2} for n in table.columns]
    for spec in columns:
        spec.update(min=table[spec["name"]].min(), max=table[spec["name"]].max())
    assert bool(mark_orders(columns, table)) is is_order


def test_orders_are_off_with_derived_columns_off():
    pre = TabularPreprocessor.fit(msft(), derived_columns=False)
    assert reduced_orders(pre.columns) == []


def placements(n: int = 300, seed: int = 0) -> pd.DataFrame:
    """SDV's student_placements in miniature: a salary and the job's dates only for placed students, and a note
    missing exactly where the end date is."""
    rng = np.random.default_rng(seed)
    placed = rng.random(n) < 0.6
    start = pd.Timestamp("2020-01-01") + pd.to_timedelta(rng.integers(0, 200, n), unit="D")
    end = pd.Series((start + pd.to_timedelta(rng.integers(20, 200, n), unit="D")).strftime("%Y-%m-%d"))
    late = rng.random(n) < 0.5
    return pd.DataFrame(
        {
            "score": rng.normal(60, 10, n).round(1),
            "placed": placed,
            "salary": pd.Series(rng.normal(30_000, 5_000, n).round(-2)).where(placed),
            "end_date": end.where(placed & late),
            "end_note": pd.Series(rng.choice(["ok", "late"], n)).where(placed & late),
        }
    )


def test_a_column_missing_because_of_another_is_written_so():
    """student_placements: `salary` is missing exactly where `placed` is False; a trained model, deciding each gap
    from the column's own indicator, broke that in 9 of 215 rows. Here `end_date` and `end_note` are missing on the
    same rows (not decided by a level): decoded rows follow both rules, and do not without them."""
    table = placements()
    pre = TabularPreprocessor.fit(table)
    rules = {c["name"]: (c.get("missing_when"), c.get("missing_with")) for c in pre.missing}
    assert rules == {
        "salary": ({"column": "placed", "levels": [False]}, None),
        "end_date": (None, None),
        "end_note": (None, "end_date"),
    }
    back = pre.inverse_transform(pre.transform(table))
    pd.testing.assert_frame_equal(back.isna(), table.isna())
    x = random_rows(pre, n=2000)
    rows = pre.inverse_transform(x)
    assert rows["salary"].isna().equals(~rows["placed"]) and rows["end_note"].isna().equals(rows["end_date"].isna())
    assert 0.2 < rows["placed"].mean() < 0.8 and 0.1 < rows["end_date"].notna().mean() < 0.9
    for c in pre.columns:
        c.pop("missing_when", None), c.pop("missing_with", None)
    free = pre.inverse_transform(x)
    assert (free["salary"].isna() == free["placed"]).sum() > 100
    assert (free["end_note"].isna() != free["end_date"].isna()).sum() > 100


def test_a_column_of_small_levels_decides_no_gaps():
    """A code of 30 levels with two rows each splits any pattern of gaps that pairs its rows: not a rule."""
    rng = np.random.default_rng(0)
    pair = np.arange(60) // 2
    gap = rng.permutation(np.repeat([True, False], 15))[pair]  # 15 pairs of rows missing, 15 present
    table = pd.DataFrame(
        {
            "score": rng.normal(60, 10, 60).round(1),
            "pair": [f"p{i}" for i in pair],
            "salary": pd.Series(rng.normal(30_000, 5_000, 60).round(-2)).where(~gap),
        }
    )
    columns = TabularPreprocessor.fit(table, marginal_columns=None).columns
    assert {c["name"]: c.get("missing_when") for c in columns}["salary"] is None
    assert next(c for c in columns if c["name"] == "pair")["kind"] == "categorical"


def test_the_card_says_what_is_kept_by_rule():
    from types import SimpleNamespace

    from diffusers_xai.modalities.tabular.modality import TabularModality

    def notes(table):
        pre = TabularPreprocessor.fit(table)
        return [n for n in TabularModality().card_limitations(SimpleNamespace(preprocessor=pre)) if "by rule" in n]

    assert notes(msft()) == [
        "Kept by rule on every generated row, not by the denoiser (`derived_columns`): the orders `Low` ≤ `Open`, "
        "`Close` ≤ `High`, `Open` ≤ `High`, `Adj. Close*` ≤ `Close`, `Low` ≤ `Close` hold on every training row, "
        "and a generated row that breaks one has the two values swapped."
    ]
    assert notes(placements()) == [
        "Kept by rule on every generated row, not by the denoiser (`derived_columns`): `salary` is missing exactly "
        "where `placed` is `False`, as on training rows; `end_note` is missing exactly where `end_date` is, as on "
        "training rows."
    ]
    assert notes(placements().drop(columns=["salary", "end_note"])) == []
