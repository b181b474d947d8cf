"""
Order between columns: a column that is at least another on every training row (a stock's `High` and its `Low`, an
`end_date` and its `start_date`) is written so on every generated row.

Why: on matplotlib's packaged msft.csv (65 trading days) the trained model wrote `High < Low` in 27 of 1,000 rows and
`High < Close` in 149; on SDV's student_placements demo, 4 of 215 rows ended before they started. SDV enforces such
rules only when the user declares them (its `Inequality` constraint); these are found in the training rows.

A generated row that breaks an order has the two values swapped, repeatedly until it breaks none: a swap moves each
value by the violation alone and keeps both on their columns' grid and in their ranges (the columns of an order share
their decimals, step and date unit, and the lower column's range lies below the higher one's). Each swap increases
sum(rank(column) * value) over a fixed linear extension of the order, so the repeats end.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .schema import encode_datetime

__all__ = ["MAX_ORDER_CHANCE", "MIN_ORDER_ROWS", "mark_orders", "order_values", "reduced_orders"]

# an order is read from at least this many rows where both columns are present
MIN_ORDER_ROWS = 20
# ... and only if it would hold on every row by chance with at most this probability, were the two columns
# independent: wine's `hue` (0.48-1.71) sits below its `total_phenols` (0.98-3.88) on all 124 training rows, which two
# independent columns of those values would do with probability 0.46; breast_cancer's mean and worst radius: 1e-78
MAX_ORDER_CHANCE = 0.01
# candidate orders are read from this many first rows, then checked on all
ORDER_PROBE = 1_000
# at most this many passes over the orders when writing them (the swaps end well before: see the module docstring)
MAX_ORDER_PASSES = 1_000


def _grid(spec: dict) -> tuple | None:
    """The grid a numerical column's values lie on: columns of an order share it, so a swapped value stays on it."""
    if spec["kind"] != "numerical" or spec.get("bins") or spec.get("support") or spec.get("lattice"):
        return None
    date = spec.get("datetime")
    if date is not None:
        return ("date", date["unit"], tuple(date.get("weekdays") or ()))
    return ("number", bool(spec["integer"]), spec.get("decimals"), spec.get("step"), spec.get("denominator"))


def _values(df: pd.DataFrame, spec: dict) -> np.ndarray:
    if spec.get("datetime") is not None:
        return encode_datetime(df[spec["name"]], spec["datetime"])
    return df[spec["name"]].to_numpy(dtype=np.float64, na_value=np.nan)


def mark_orders(columns: list[dict], df: pd.DataFrame) -> dict[str, list[str]]:
    """
    Find the orders of `df` and store them in the specs: `spec["at_least"]` of a column lists the columns it is at
    least on every row where both are present. An order needs the two on one grid ([`_grid`]), both present on
    `MIN_ORDER_ROWS` rows, the higher column strictly above on one row at least, and a chance below
    `MAX_ORDER_CHANCE` that two independent columns of their values would hold it on every row ([`_log_chance`]:
    for columns whose ranges do not overlap that is certain, and each column's own range keeps the order anyway).
    Returns `{column: [columns it is at least]}`.
    """
    groups: dict[tuple, list[dict]] = {}
    for spec in columns:
        key = _grid(spec)
        if key is not None:
            groups.setdefault(key, []).append(spec)
    found: dict[str, list[str]] = {}
    for specs in groups.values():
        if len(specs) < 2:
            continue
        v = np.stack([_values(df, s) for s in specs], axis=1)  # [n, k]
        for j, high in enumerate(specs):
            lows = [specs[i]["name"] for i in _probe(v[:ORDER_PROBE], j) if i != j and _is_order(v[:, i], v[:, j])]
            if lows:
                high["at_least"] = lows
                found[high["name"]] = lows
    return found


def _probe(head: np.ndarray, j: int) -> np.ndarray:
    """The columns of `head` (`[rows, k]`) that column `j` is at least on every row where both are present: the
    only candidates for an order, checked on all rows by [`_is_order`] (k columns cost k x k x `ORDER_PROBE`
    comparisons, not k x k x all rows)."""
    with np.errstate(invalid="ignore"):
        broken = head[:, [j]] < head  # False where either is NaN
    return np.flatnonzero(~broken.any(0))


def _is_order(low: np.ndarray, high: np.ndarray) -> bool:
    """Whether `low <= high` is an order of the table (see [`mark_orders`])."""
    both = ~np.isnan(low) & ~np.isnan(high)
    low, high = low[both], high[both]
    if len(low) < MIN_ORDER_ROWS or (high < low).any() or not (high > low).any():
        return False
    return _log_chance(low, high) < np.log(MAX_ORDER_CHANCE)


def _log_chance(low: np.ndarray, high: np.ndarray) -> float:
    """log P(every row holds low <= high) for two independent columns with these values: the share q of all
    (low value, high value) pairs in order, to the power of the rows. 0 (certain) when the ranges do not overlap,
    where each column's own range already keeps the order."""
    q = np.searchsorted(np.sort(high), low, side="left").sum()  # pairs with high < low
    q = 1.0 - q / (len(low) * len(high))
    return len(low) * np.log(q) if q < 1.0 else 0.0


def reduced_orders(columns: list[dict]) -> list[tuple[str, str]]:
    """The orders `(low, high)` without those two others imply (`Low <= Open <= High` leaves out `Low <= High`)."""
    above = {c["name"]: set(c.get("at_least", ())) for c in columns}
    return [
        (low, high)
        for high, lows in above.items()
        for low in sorted(lows)
        if not any(low in above.get(mid, ()) for mid in lows - {low})
    ]


def order_values(values: dict[str, np.ndarray], columns: list[dict]) -> dict[str, np.ndarray]:
    """
    `values` (`{column: [N] numbers}`, NaN where a row's value is missing) with every order of `columns` holding on
    each row where both are present, by swapping the two values of a row that breaks one. Returns new arrays for the
    columns in orders; the others are returned as given.
    """
    pairs = [(low, c["name"]) for c in columns for low in c.get("at_least", ()) if low in values]
    if not pairs:
        return values
    out = dict(values)
    for name in {n for pair in pairs for n in pair}:
        out[name] = np.array(values[name], dtype=np.float64, copy=True)
    for _ in range(MAX_ORDER_PASSES):
        swapped = False
        for low, high in pairs:
            with np.errstate(invalid="ignore"):
                broken = out[low] > out[high]  # False where either is NaN
            if broken.any():
                # both sides are read before either is written: a mask index returns copies
                out[low][broken], out[high][broken] = out[high][broken], out[low][broken]
                swapped = True
        if not swapped:
            break
    return out
