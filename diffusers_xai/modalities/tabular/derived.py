"""Columns other columns determine (a country's continent and ISO code; a total and its parts): written from those
columns' generated values instead of modelled, so every generated row keeps the table's functional dependencies."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from .columns import MIN_ORDERING_ROWS, to_python

__all__ = [
    "MIN_RULE_ROWS",
    "argmax_values",
    "derived_values",
    "mark_argmax",
    "mark_derived",
    "mark_sums",
    "sum_values",
]

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


# a sum or a winner found on fewer training rows could hold by chance
MIN_RULE_ROWS = 20
# the rows a sum is looked for on (then checked on every row)
SUM_SEARCH_ROWS = 10_000


def _summable(spec: dict, df: pd.DataFrame, condition_column: str | None) -> bool:
    """A plain numerical column (no date), not the condition column, without missing or negative values."""
    if spec["kind"] != "numerical" or spec.get("datetime") or spec["name"] == condition_column:
        return False
    column = df[spec["name"]]
    return not column.isna().any() and bool((column >= 0).all())


def _tolerance(spec: dict, total: np.ndarray) -> float:
    """How far a total may sit from its parts' sum: half a unit of its last decimal (a total of rounded parts), or
    float error for a column without decimals."""
    decimals = 0 if spec["integer"] else spec.get("decimals")
    float_error = 1e-9 * max(1.0, float(np.abs(total).max()))
    return float_error if decimals is None else 0.5 * 10.0**-decimals + float_error


def _parts(total: np.ndarray, pool: list[str], values: dict[str, np.ndarray], tolerance: float) -> list[str]:
    """The columns of `pool` whose sum is `total` on every row (within `tolerance`), or `[]`. The least-squares
    coefficients over the pool, rounded, must be 0 or 1 with at least two 1s: a pool with an identity of its own
    (rank-deficient) gives fractional coefficients and no parts, so a sum is only found where it is the only one."""
    if len(pool) < 2:
        return []
    matrix = np.column_stack([values[name] for name in pool])
    search = slice(0, SUM_SEARCH_ROWS)
    coefficients = np.linalg.lstsq(matrix[search], total[search], rcond=None)[0]
    chosen = np.round(coefficients)
    if not np.isin(chosen, (0.0, 1.0)).all() or chosen.sum() < 2:
        return []
    if np.abs(matrix @ chosen - total).max() > tolerance:
        return []
    return [name for name, c in zip(pool, chosen) if c == 1.0]


def mark_sums(columns: list[dict], df: pd.DataFrame, condition_column: str | None) -> dict[str, list[str]]:
    """
    Turn every numerical column that is, on every training row, the sum of two or more other modelled numerical
    columns (within half a unit of its last decimal) into kind `"sum"` with its `parts`: a generated row writes it as
    their sum, rounded to its decimals ([`sum_values`]), and not clipped to its training range. Columns are taken
    smallest first, so a total of totals sums the columns modelled under them; a sum is never a part. Columns with
    missing or negative values, dates and the condition column are neither. Returns `{sum column: parts}`.

    Why: plotly's election table (`total` = the three candidates' votes) came back with a total that matched its
    parts in 2.4% of the rows; vega's us-employment nests its sectors' job counts in totals five levels deep. SDV
    has no constraint for a sum (a user writes a custom one); this finds the exact ones.
    """
    candidates = [c for c in columns if _summable(c, df, condition_column)]
    if len(df) < MIN_RULE_ROWS or len(candidates) < 3:
        return {}
    values = {c["name"]: df[c["name"]].to_numpy(dtype=np.float64) for c in candidates}
    sums: dict[str, list[str]] = {}
    for spec in sorted(candidates, key=lambda c: float(values[c["name"]].mean())):
        total, tolerance = values[spec["name"]], _tolerance(spec, values[spec["name"]])
        pool = [
            c["name"]
            for c in candidates
            if c["name"] != spec["name"] and c["name"] not in sums and (values[c["name"]] <= total + tolerance).all()
        ]
        parts = _parts(total, pool, values, tolerance)
        if parts:
            spec.update(kind="sum", parts=parts)
            sums[spec["name"]] = parts
            logger.info(f"Column {spec['name']!r} is the sum of {parts}: written as their sum, not modelled.")
    return sums


def sum_values(spec: dict, rows: dict) -> np.ndarray:
    """The `"sum"` column `spec` of generated rows: its parts' sum (`rows[part]`), rounded half up to its decimals
    (as published totals of rounded parts are: us-employment's `nonfarm` is 136,059 where its parts sum to 136,058.5;
    numpy's `round` goes to the even 136,058)."""
    total = np.sum([np.asarray(rows[part], dtype=np.float64) for part in spec["parts"]], axis=0)
    decimals = 0 if spec["integer"] else spec.get("decimals")
    if decimals is None:
        return total
    scale = 10.0**decimals
    return np.floor(total * scale + 0.5 + 1e-9) / scale  # + 1e-9: a sum's float error below the half


def mark_argmax(columns: list[dict], df: pd.DataFrame, condition_column: str | None) -> dict[str, list[str]]:
    """
    Turn every categorical column whose levels are names of modelled numerical columns, and whose value on every
    training row (at least `MIN_RULE_ROWS`) names the one of them that is strictly largest there, into kind
    `"argmax"` over those columns: a generated row writes the name of its largest ([`argmax_values`]). Not the
    condition column, nor a column with missing values. Returns `{column: the columns it names}`.

    Why: plotly's election table names each district's `winner`, the candidate with the most votes; through the
    recipe the generated winner had the most generated votes in 70-73% of the rows.
    """
    numerical = {c["name"] for c in columns if c["kind"] == "numerical"}
    found: dict[str, list[str]] = {}
    if len(df) < MIN_RULE_ROWS:
        return found
    for spec in columns:
        if spec["kind"] != "categorical" or spec["name"] == condition_column or df[spec["name"]].isna().any():
            continue
        over = [str(level) for level in spec["categories"]]
        if len(over) < 2 or not set(over) <= numerical:
            continue
        values = df[over].to_numpy(dtype=np.float64)
        top = np.sort(values, axis=1)
        largest = np.asarray(over)[values.argmax(axis=1)]
        if (top[:, -1] > top[:, -2]).all() and (largest == df[spec["name"]].astype(str).to_numpy()).all():
            spec.update(kind="argmax", over=over)
            found[spec["name"]] = over
            logger.info(f"Column {spec['name']!r} names the largest of {over} on every row: written so, not modelled.")
    return found


def argmax_values(spec: dict, rows: dict) -> list:
    """The `"argmax"` column `spec` of generated rows: the name of the largest of its columns (the first of ties),
    as the column's level (its categories keep their dtype)."""
    values = np.column_stack([np.asarray(rows[name], dtype=np.float64) for name in spec["over"]])
    return [spec["categories"][i] for i in values.argmax(axis=1)]
