"""Columns another column determines (a country's continent and ISO code): written from that column's generated level
instead of modelled, so every generated row keeps the table's functional dependencies."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from .columns import MIN_ORDERING_ROWS, to_python

__all__ = ["derived_values", "mark_derived"]

logger = logging.getLogger(__name__)


def _sources(df: pd.DataFrame, columns: list[dict], condition_column: str | None) -> list[dict]:
    """Modelled categorical columns whose levels hold at least `MIN_ORDERING_ROWS` rows at the median (so a level's
    rows can show that another column is constant on them) and no missing value; most levels first."""
    candidates = [
        c
        for c in columns
        if c["kind"] == "categorical"
        and c["name"] != condition_column
        and len(c["categories"]) >= 2
        and np.median(c["counts"]) >= MIN_ORDERING_ROWS
        and not df[c["name"]].isna().any()
    ]
    return sorted(candidates, key=lambda c: -len(c["categories"]))


def _can_derive(spec: dict, df: pd.DataFrame, condition_column: str | None) -> bool:
    """A categorical or plain numerical column (no date), not the condition column, without missing values, with at
    least two values."""
    kind_ok = spec["kind"] == "categorical" or (spec["kind"] == "numerical" and not spec.get("datetime"))
    column = df[spec["name"]]
    return kind_ok and spec["name"] != condition_column and not column.isna().any() and column.nunique() >= 2


def mark_derived(columns: list[dict], df: pd.DataFrame, condition_column: str | None) -> dict[str, str]:
    """
    Turn every column that a categorical source column determines into kind `"derived"`: on every training row its
    value is the one its source level maps to (`mapping`, `[[level, value], ...]`), and a generated row gets it from
    its generated source level ([`derived_values`]). Sources are taken most levels first, a derived column is never a
    source, and a source is never derived. Returns `{derived column: source column}`.

    Why: gapminder (plotly's packaged copy: 142 countries x 12 years) through the recipe wrote a continent that
    matched the generated country in 30% of the rows ("France, Americas"): the country is drawn by its posterior
    from the generated numbers, the continent from its own one-hot features, and nothing tied them.
    """
    derived: dict[str, str] = {}
    for source in _sources(df, columns, condition_column):
        if source["name"] in derived:
            continue
        groups = df.groupby(source["name"], sort=False)
        for spec in columns:
            name = spec["name"]
            if name == source["name"] or name in derived or name in derived.values():
                continue
            if not _can_derive(spec, df, condition_column) or groups[name].nunique().max() != 1:
                continue
            first = groups[name].first()
            spec.update(
                kind="derived",
                source=source["name"],
                mapping=[[to_python(k, source["name"]), to_python(v, name)] for k, v in first.items()],
            )
            derived[name] = source["name"]
            logger.info(f"Column {name!r} is determined by {source['name']!r}: written from its level, not modelled.")
    return derived


def derived_values(spec: dict, source_values: pd.Series) -> list:
    """The values of the `"derived"` column `spec` for generated levels `source_values` of its source column."""
    mapping = {level: value for level, value in spec["mapping"]}
    return [mapping[level] for level in source_values]
