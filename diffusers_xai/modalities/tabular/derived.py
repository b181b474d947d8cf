"""Columns other columns determine (a country's continent and ISO code; a total and its parts; an amount, its price
and its quantity): written from those columns' generated values instead of modelled, so every generated row keeps the
table's functional dependencies."""

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
    "mark_products",
    "mark_sums",
    "product_values",
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


# a sum, a product or a winner found on fewer training rows could hold by chance
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


def _round_half_up(values: np.ndarray, decimals: int | None) -> np.ndarray:
    """`values` rounded half away from zero (half up for the positive ones) to `decimals`, as published totals and
    products of rounded values are (us-employment's `nonfarm` is 136,059 where its parts sum to 136,058.5; numpy's
    `round` goes to the even 136,058); a value within four float spacings below a half counts as the half (star98's
    93.6691875 multiplies to 93.66918749999999)."""
    if decimals is None:
        return values
    scale = 10.0**decimals
    scaled = np.abs(values) * scale
    return np.sign(values) * np.floor(scaled + 0.5 + 1e-9 + 4 * np.finfo(np.float64).eps * scaled) / scale


def sum_values(spec: dict, rows: dict) -> np.ndarray:
    """The `"sum"` column `spec` of generated rows: its parts' sum (`rows[part]`), rounded half up to its decimals
    ([`_round_half_up`])."""
    total = np.sum([np.asarray(rows[part], dtype=np.float64) for part in spec["parts"]], axis=0)
    return _round_half_up(total, 0 if spec["integer"] else spec.get("decimals"))


# the rows a product is checked on after the first, before all of them (as `schema.FRACTION_PROBE`)
PRODUCT_PROBE = 64


def _multipliable(spec: dict, df: pd.DataFrame, condition_column: str | None) -> bool:
    """A plain numerical column (no date), or a column of a few numbers modelled as levels (a quantity of 1 to 10,
    a 0/1 indicator: a factor, never a product), not the condition column, without missing values. Negative values
    are kept: a product is checked and written by multiplying, never through logarithms, so its sign is its
    factors'."""
    column = df[spec["name"]]
    if spec["name"] == condition_column or spec.get("datetime") or column.isna().any():
        return False
    if spec["kind"] == "categorical":
        return pd.api.types.is_numeric_dtype(column.dtype) and not pd.api.types.is_bool_dtype(column.dtype)
    return spec["kind"] == "numerical"


def _shown(total: np.ndarray, values: np.ndarray, tolerance: float) -> bool:
    """Whether each factor of the product `total` of the columns of `values` (`[rows, factors]`) is shown by at least
    `MIN_RULE_ROWS` rows where leaving it out moves the product beyond `tolerance`: a factor of 1 changes nothing, so
    a column times a column of 1s, or one that is its factor on every row, is no product. An indicator can be a
    factor (a refund is the shipping times 0 or 1): its 0s move the product."""
    for k in range(values.shape[1]):
        without = np.delete(values, k, axis=1).prod(axis=1)
        if int((np.abs(without - total) > tolerance).sum()) < MIN_RULE_ROWS:
            return False
    return True


def _only_factors(total: np.ndarray, matrix: np.ndarray, options: np.ndarray, tolerance: float) -> list[int]:
    """The one set of columns among `options` (`[k, factors]` column indices of `matrix`) whose product is `total`
    on every row (within `tolerance`) and is shown, or `[]` when none or several are: a product is only found where
    it is the only one. Shown: `total` is not 0 on `MIN_RULE_ROWS` rows (0 is 0 times anything, so a column mostly 0
    is no product) and each factor matters ([`_shown`]). Checked on the first row where `total` is not 0 (where no
    zero factor matches it), then the first `PRODUCT_PROBE`, then all of them, so that the thousands of pairs of a
    wide table cost one row each (300 columns, half their values 0: 3.4 s from the first row, 0.36 s so)."""
    nonzero = np.flatnonzero(np.abs(total) > tolerance)
    if len(nonzero) < MIN_RULE_ROWS:
        return []
    for rows in (slice(nonzero[0], nonzero[0] + 1), slice(0, PRODUCT_PROBE), slice(PRODUCT_PROBE, None)):
        product = matrix[rows][:, options].prod(axis=-1)
        options = options[(np.abs(product - total[rows, None]) <= tolerance).all(axis=0)]
    sets = {tuple(sorted(o)) for o in options.tolist() if _shown(total, matrix[:, o], tolerance)}
    return list(sets.pop()) if len(sets) == 1 else []


def _pair_options(free: np.ndarray) -> np.ndarray:
    """Every pair of the columns `free` (`[k, 2]`)."""
    first, second = np.triu_indices(len(free), 1)
    return np.column_stack([free[first], free[second]])


def _triple_options(free: np.ndarray, pairs: list[list[int]]) -> np.ndarray:
    """The two factors of each product of `pairs` with each column of `free` that is neither (`[k, 3]`): a triple
    product is looked for where one of its pairs is a column of its own (star98's interactions), from that pair's
    factors, not from the pair's rounded column (off star98's triples on 45 to 257 of their 303 rows)."""
    options = [[*pair, int(third)] for pair in pairs for third in free if third not in pair]
    return np.asarray(options, dtype=np.int64).reshape(-1, 3)


def mark_products(columns: list[dict], df: pd.DataFrame, condition_column: str | None) -> dict[str, list[str]]:
    """
    Turn every numerical column that is, on every training row, the product of two other modelled numerical
    columns (within half a unit of its last decimal, as sums), or of the two factors of such a product and a third
    column, into kind `"product"` with its `factors`: a generated row writes it as their product, rounded half up to
    its decimals ([`product_values`]), and not clipped to its training range. Columns are taken in table order; a
    product is never a factor, nor a factor a product; a product must be the only one that holds and be shown by
    `MIN_RULE_ROWS` rows ([`_shown`]). A factor can be a column of a few numbers modelled as levels (a quantity of 1
    to 10). Columns with missing values, dates, the condition column and sums are neither. Returns
    `{product column: factors}`.

    Why: statsmodels' star98 ships interaction columns (`PERMINTE_AVYRSEXP` = `PERMINTE` x `AVYRSEXP`, and two of
    three factors); modelled through the recipe, 303 generated rows had them off their factors' product by a median
    of 1.2 to 449 per column. An invoice's amount is its price times its quantity.
    """
    candidates = [c for c in columns if _multipliable(c, df, condition_column)]
    if len(df) < MIN_RULE_ROWS or len(candidates) < 3:
        return {}
    matrix = np.column_stack([df[c["name"]].to_numpy(dtype=np.float64) for c in candidates])
    found: dict[int, list[int]] = {}
    used: set[int] = set()
    for triples in (False, True):
        pairs = [factors for factors in found.values() if len(factors) == 2]
        for target, spec in enumerate(candidates):
            if spec["kind"] != "numerical" or target in found or target in used:
                continue
            free = np.asarray([i for i in range(len(candidates)) if i != target and i not in found], dtype=np.int64)
            options = _triple_options(free, pairs) if triples else _pair_options(free)
            total = matrix[:, target]
            factors = _only_factors(total, matrix, options, _tolerance(spec, total))
            if factors:
                found[target] = factors
                used.update(factors)
    products = {}
    for target, factors in found.items():
        spec, names = candidates[target], [candidates[i]["name"] for i in factors]
        spec.update(kind="product", factors=names)
        products[spec["name"]] = names
        logger.info(f"Column {spec['name']!r} is the product of {names}: written as their product, not modelled.")
    return products


def product_values(spec: dict, rows: dict) -> np.ndarray:
    """The `"product"` column `spec` of generated rows: its factors' product (`rows[factor]`), rounded half up to
    its decimals ([`_round_half_up`]), as star98's interaction columns were published: numpy's `round` (half to even)
    misses 5 of their 2,424 values, ties of factors with 6 decimals."""
    product = np.prod([np.asarray(rows[factor], dtype=np.float64) for factor in spec["factors"]], axis=0)
    return _round_half_up(product, 0 if spec["integer"] else spec.get("decimals"))


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
