"""What each column of a table is, learnt before any fitting: its kind (numerical, categorical, constant, id,
marginal), dtype and what writing it back exactly needs (categories, range, decimals, date format), its encoding
and missingness, and the bad input refused with the column named. [`TabularPreprocessor.fit`] builds its column
specs here; the model-space transforms stay in `data.py`."""

from __future__ import annotations

import logging
from typing import Any, Literal

import numpy as np
import pandas as pd

from .atoms import bound_atoms
from .codes import code_width, leading_word_groups
from .schema import (
    MAX_DISCRETE_SUPPORT,
    check_mixed_types,
    datetime_spec,
    encode_datetime,
    id_spec,
    learn_decimals,
    learn_denominator,
    learn_lattice,
    learn_step,
    seasonal_cycles,
)

__all__ = [
    "CATEGORICAL_ENCODINGS",
    "MAX_MARGINAL_HINT_ROWS",
    "MAX_ONEHOT_LEVELS",
    "MIN_ORDERING_ROWS",
    "NAN_POLICIES",
    "CategoricalEncoding",
    "IdPolicy",
    "NanPolicy",
    "auto_marginal_columns",
    "check_policies",
    "check_table",
    "describe_column",
    "first_words_repeat",
    "groups_hold_rows",
    "is_binnable",
    "marginal_draws",
    "mark_marginal",
    "once_seen_hint",
    "quantile_bins",
    "resolve_columns",
    "resolve_encoding",
    "to_python",
]

logger = logging.getLogger(__name__)

CategoricalEncoding = Literal["auto", "onehot", "analog_bits", "analog_bits_ordered"]
CATEGORICAL_ENCODINGS = ("auto", "onehot", "analog_bits", "analog_bits_ordered")
NanPolicy = Literal["model", "impute", "raise"]
IdPolicy = Literal["regenerate", "drop"]
NAN_POLICIES = ("model", "impute", "raise")
# `categorical_encoding="auto"`: one-hot up to this many levels, analog bits (⌈log2 K⌉ features) above
MAX_ONEHOT_LEVELS = 32
# `auto` orders analog-bit codes by the levels' centroids only when the median level has this many training rows
MIN_ORDERING_ROWS = 2
# up to this many rows, a column of mostly once-seen levels is pointed to `marginal_columns` in the log (la-riots: 50)
MAX_MARGINAL_HINT_ROWS = 1000
_NESTED = (list, dict, set, tuple, np.ndarray)


# ---- JSON-safe values ----
def to_python(value: Any, column: str) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(
        f"Column {column!r} holds a {type(value).__name__} category ({value!r}) that cannot be saved as JSON; convert "
        "the column to str, int or bool first."
    )


def _check_supported(name: str, series: pd.Series) -> None:
    """Refuse what no column kind can hold (timedeltas, complex numbers, nested objects; an entirely missing column
    is refused by [`check_table`])."""
    dtype = series.dtype
    if pd.api.types.is_timedelta64_dtype(dtype):
        raise TypeError(
            f"Column {name!r} has dtype {dtype}, which is not supported; convert it to a number (e.g. "
            "`df[col].dt.total_seconds()`) or drop it."
        )
    if pd.api.types.is_complex_dtype(dtype) or isinstance(dtype, (pd.PeriodDtype, pd.IntervalDtype)):
        raise TypeError(f"Column {name!r} has unsupported dtype {dtype}; convert it to float, int, bool or str.")
    if pd.api.types.is_object_dtype(dtype):
        nested = series.dropna().map(lambda v: isinstance(v, _NESTED))
        if nested.any():
            example = series.dropna()[nested].iloc[0]
            raise TypeError(
                f"Column {name!r} holds nested objects (e.g. a {type(example).__name__}: {str(example)[:40]!r}); "
                "flatten it into scalar columns (or json.dumps it into a string category) before fitting."
            )


def _describe_categorical(name: str, series: pd.Series, condition: bool) -> dict:
    dtype, values = series.dtype, series.dropna()
    if isinstance(dtype, pd.CategoricalDtype):
        present = set(values.unique().tolist())
        categories = [c for c in dtype.categories.tolist() if c in present]
    else:
        categories = sorted(values.unique().tolist(), key=lambda v: (str(type(v)), v))
    categories = [to_python(c, name) for c in categories]
    if len(categories) < 2:
        if condition:
            raise ValueError(
                f"The condition column {name!r} has a single level {categories[0]!r}: there is nothing to condition "
                "on; train unconditionally (leave `condition_column` unset) or pick a column with several levels."
            )
        return {"name": name, "kind": "constant", "dtype": str(dtype), "value": categories[0], "datetime": None}
    counts = values.map({c: i for i, c in enumerate(categories)}).value_counts().sort_index()
    return {
        "name": name,
        "kind": "categorical",
        "dtype": str(dtype),
        "categories": categories,
        "counts": [int(counts.get(i, 0)) for i in range(len(categories))],
        "fill": categories[int(np.argmax(counts.reindex(range(len(categories)), fill_value=0)))],
    }


def _describe_numerical(name: str, values: np.ndarray, dtype, date: dict | None) -> dict:
    """A numerical (or date, as numbers) column: range, decimals, small discrete support, fill value."""
    finite = values[np.isfinite(values)]
    vmin, vmax = float(finite.min()), float(finite.max())
    if vmin == vmax:
        value = vmin if date is not None else to_python(pd.Series(finite[:1]).astype(dtype).iloc[0], name)
        return {"name": name, "kind": "constant", "dtype": str(dtype), "value": value, "datetime": date}
    integer = pd.api.types.is_integer_dtype(dtype)
    unique = np.unique(finite)
    # a few repeated values (counts, ratings, years): write back observed values only, never 3.4 children; not
    # on small tables, where every column has few distinct values and snapping would copy rows
    discrete = len(unique) <= min(MAX_DISCRETE_SUPPORT, len(finite) // 4)
    decimals = 0 if integer or date is not None else learn_decimals(finite, dtype)
    step = None if discrete else learn_step(finite, decimals)
    denominator = None if discrete or step else learn_denominator(finite, decimals)
    lattice = None if discrete else learn_lattice(finite, decimals, step)
    if lattice is not None:
        logger.info(
            f"Column {name!r} repeats {len(lattice)} values on a sparse grid: generated numbers are written back on "
            "them."
        )
    return {
        "name": name,
        "kind": "numerical",
        "dtype": str(dtype),
        "min": vmin,
        "max": vmax,
        "integer": bool(integer),
        "decimals": decimals,
        "step": step,
        "denominator": denominator,
        "support": unique.tolist() if discrete else None,
        "lattice": lattice,
        "season": (seasonal_cycles(finite, date["unit"], date.get("weekdays")) or None) if date is not None else None,
        "datetime": date,
        "fill": float(np.median(finite)),
    }


def describe_column(name: str, series: pd.Series, categorical: bool, condition: bool = False) -> dict:
    """
    The schema of one column: kind (`numerical`, `categorical`, `constant` or `id`), dtype, and what is needed to
    write it back exactly (categories, range, decimals, date format, identifier format). Raises on unsupported or
    inconsistent input, naming the column.
    """
    _check_supported(name, series)
    dtype = series.dtype
    if not categorical:
        check_mixed_types(name, series)
        date = datetime_spec(name, series)
        if date is not None:
            return _describe_numerical(name, encode_datetime(series, date), dtype, date)
        ids = id_spec(name, series) if not condition else None
        if ids is not None:
            return {"name": name, "kind": "id", "dtype": str(dtype), "id": ids}
    is_numeric = pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype)
    if categorical or not is_numeric:
        return _describe_categorical(name, series, condition)
    numbers = series.to_numpy(dtype=np.float64, na_value=np.nan)
    spec = _describe_numerical(name, numbers, dtype, None)
    if spec.get("support") and not condition:
        # A few repeated numbers (years, counts, cylinders) are levels, modelled as categories and written back as
        # numbers of the column's dtype. Through the quantile transform their lowest and highest values sit at the
        # x0 clip bound (±QUANTILE_NORMAL_BOUND), where clipped predictions pile up: penguins' `year` came back
        # 43% / 3% / 54% for a real 30% / 33% / 37%, and a GBM told the rows apart on it alone (AUC 0.61).
        logger.info(f"Column {name!r} has {len(spec['support'])} distinct numbers: modelled as categories.")
        return _describe_categorical(name, series, condition)
    if spec["kind"] == "numerical" and not condition:
        spec["atoms"] = _bound_atoms(name, spec, numbers[np.isfinite(numbers)])
    return spec


def _bound_atoms(name: str, spec: dict, finite: np.ndarray) -> list[float] | None:
    """The point masses on a modelled numerical column's bounds (`atoms.bound_atoms`), said when there are some."""
    atoms = bound_atoms(finite)
    if atoms:
        said = [f"{share:.1%} on its {end} {spec[end]:g}" for share, end in zip(atoms, ("min", "max")) if share]
        logger.info(f"Column {name!r} has {' and '.join(said)}: generated rows keep those shares exactly there.")
    return atoms


def check_table(df: pd.DataFrame) -> None:
    """Refuse a table no column can be learnt from: fewer than 2 rows, duplicate column names, entirely missing
    columns (all of them named at once)."""
    if len(df) < 2:
        raise ValueError(
            f"The table has {len(df)} row(s); a generative model needs many rows to learn from (at least 2, in "
            "practice hundreds): pass the whole table, not a single record."
        )
    if df.columns.duplicated().any():
        raise ValueError(f"Duplicate column names: {df.columns[df.columns.duplicated()].tolist()}; rename them.")
    empty = [str(name) for name in df.columns if df[name].isna().all()]
    if len(empty) == 1:
        raise ValueError(
            f"Column {empty[0]!r} is entirely missing ({len(df)} NaN values); drop it before fitting (it cannot be "
            "learned) and add it back after sampling if needed."
        )
    if empty:  # all at once: named one at a time, statsmodels' fertility was refused for '2012', then for '2013'
        raise ValueError(
            f"Columns {empty} are entirely missing ({len(df)} NaN values each); drop them before fitting (they "
            "cannot be learned) and add them back after sampling if needed."
        )


def check_policies(nan_policy: str, id_columns: str) -> None:
    if nan_policy not in NAN_POLICIES:
        raise ValueError(
            f"`nan_policy` must be one of {list(NAN_POLICIES)}, got {nan_policy!r} (drop incomplete rows with "
            "df.dropna())."
        )
    if id_columns not in ("regenerate", "drop"):
        raise ValueError(f"`id_columns` must be 'regenerate' or 'drop', got {id_columns!r}.")


def is_binnable(df: pd.DataFrame, name: str, categorical_columns: list[str], bins: int) -> bool:
    """A numerical (or date) condition column with more distinct values than `bins` is binned at its quantiles."""
    if name not in df.columns or name in categorical_columns:
        return False
    series = df[name]
    numeric = pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)
    if not (numeric or pd.api.types.is_datetime64_any_dtype(series)):
        return False
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 2:
        raise ValueError(f"`condition_bins` must be an int >= 2, got {bins!r}.")
    return series.nunique() > bins


def quantile_bins(spec: dict, series: pd.Series, bins: int) -> dict:
    """Quantile bin edges of a numerical condition column (in model units), with the training count of each bin."""
    values = encode_datetime(series, spec["datetime"]) if spec.get("datetime") else series.to_numpy(np.float64)
    edges = np.unique(np.quantile(values, np.linspace(0, 1, bins + 1)))
    if len(edges) < 3:
        raise ValueError(
            f"The condition column {spec['name']!r} has too few distinct values to bin ({len(edges) - 1} bin); "
            "list it in `categorical_columns` to condition on its levels."
        )
    index = np.searchsorted(edges[1:-1], values, side="right")
    counts = np.bincount(index, minlength=len(edges) - 1)
    labels = [f"[{lo:.4g}, {hi:.4g}]" for lo, hi in zip(edges[:-1], edges[1:])]
    return {"bins": edges.tolist(), "counts": counts.tolist(), "categories": labels}


def resolve_encoding(encoding: str, num_categories: int) -> str:
    if encoding != "auto":
        return encoding
    return "onehot" if num_categories <= MAX_ONEHOT_LEVELS else "analog_bits_ordered"


def resolve_columns(columns: list[dict], df: pd.DataFrame, encoding: str, nan_policy: str, id_columns: str) -> None:
    """Per-column encodings, missingness indicators and identifier handling, said in the log; refuses NaNs under
    `nan_policy="raise"`."""
    missing = {c["name"]: int(df[c["name"]].isna().sum()) for c in columns if df[c["name"]].isna().any()}
    if missing and nan_policy == "raise":
        raise ValueError(
            f"The table has missing values in {missing} (column: count). Pass nan_policy='model' to generate them "
            "at the real rate, 'impute' to fill them with the median / most frequent level, or drop incomplete "
            "rows with df.dropna() before fitting."
        )
    for c in columns:
        c["missing"] = nan_policy == "model" and c["name"] in missing
        if c["missing"]:
            c["missing_rate"] = missing[c["name"]] / len(df)
        if c["kind"] == "categorical":
            c["encoding"] = resolve_encoding(encoding, len(c["categories"]))
            if encoding == "auto" and c["encoding"] != "onehot":
                logger.warning(
                    f"Column {c['name']!r} has {len(c['categories'])} levels (> {MAX_ONEHOT_LEVELS}): encoded as "
                    f"{code_width(len(c['categories']))} analog bits instead of one-hot (codes ordered by the levels' "
                    "numerical centroids; a column of mostly once-seen levels by their first words' if those repeat)."
                    + once_seen_hint(c, len(df))
                )
        elif c["kind"] == "id":
            c["drop"] = id_columns == "drop"
            logger.warning(
                f"Column {c['name']!r} looks like an identifier (all {len(df)} values unique): it is not modelled "
                f"and {'left out of generated tables' if c['drop'] else 'written as fresh unique values'} "
                "(id_columns='regenerate'/'drop'; list it in `categorical_columns` to model it anyway)."
            )


def once_seen_hint(spec: dict, num_rows: int) -> str:
    """For a column most of whose levels occur once in a small table (`MAX_MARGINAL_HINT_ROWS`): `marginal_columns`.
    Not for a column whose first words repeat (cars' `Name` by its makes): its codes are ordered by them on purpose,
    and `marginal_columns: auto` keeps it modelled."""
    counts = np.asarray(spec["counts"], dtype=np.float64)
    if num_rows > MAX_MARGINAL_HINT_ROWS or np.median(counts) >= MIN_ORDERING_ROWS:
        return ""
    if first_words_repeat(spec["categories"], counts):
        return ""
    return (
        f" Most of its levels occur once in {num_rows} rows: if it is a name or an address, `marginal_columns: "
        f"[{spec['name']}]` draws it from its training frequencies outside the model, which the model can then not "
        "copy rows by."
    )


def first_words_repeat(categories: list, counts: np.ndarray) -> bool:
    """Whether the levels' first words (`leading_word_groups`) hold `MIN_ORDERING_ROWS` training rows at the median:
    cars' makes do, airports' names and cities do not."""
    return groups_hold_rows(leading_word_groups(categories), counts)


def groups_hold_rows(groups: np.ndarray, counts: np.ndarray) -> bool:
    """[`first_words_repeat`] on groups already computed: fewer groups than levels, and `MIN_ORDERING_ROWS` training
    rows in the median group."""
    group_rows = np.bincount(groups, weights=counts)
    return len(group_rows) < len(counts) and np.median(group_rows) >= MIN_ORDERING_ROWS


def auto_marginal_columns(columns: list[dict], encoding: str, condition_column: str | None) -> list[str]:
    """
    The columns `marginal_columns="auto"` draws outside the model: categoricals with fewer than `MIN_ORDERING_ROWS`
    (2) training rows per level on average, i.e. more levels than half the rows, whose first words do not repeat
    either (airports' `name` and `city`; la-riots' `last_name`, `address` and `neighborhood`). Such a column is
    close to a key of the rows: its levels get no ordered codes (`_pooled_by_leading_word` keeps sorted labels), and
    what a denoiser can learn of them, one-hot or bits, is which row they came from. A column whose first words
    repeat (cars' `Name`, 35 makes) stays modelled, its codes ordered by the makes.
    Measured: README "Names drawn outside the model".
    """
    if encoding != "auto":
        return []
    out = []
    for c in columns:
        if c["kind"] != "categorical" or c["name"] == condition_column:
            continue
        counts = np.asarray(c["counts"], dtype=np.float64)
        if counts.sum() < MIN_ORDERING_ROWS * len(counts) and not first_words_repeat(c["categories"], counts):
            out.append(c["name"])
    return out


def mark_marginal(columns: list[dict], names: list[str], condition_column: str | None) -> None:
    """
    Turn the `marginal_columns` into kind `"marginal"`: not modelled, each generated row draws its level from the
    training frequencies (`marginal_draws`). Why: on vega's 63-row la-riots, `last_name` and `address` have 48
    levels in 50 training rows; modelled, they give the denoiser a key to each row, and it went from not learnt to
    copying within 250 updates (Quality 0.632, detection 0.853 against GaussianCopula's 0.679 / 0.773); drawn from
    their frequencies beside a model of the other columns, 0.723 / 0.500 (`bench/tabular_table.py`). The pairs of
    such a column carry nothing a generated row could keep without copying its training row.
    """
    by_name = {c["name"]: c for c in columns}
    for name in names:
        spec = by_name.get(name)
        if spec is None:
            raise ValueError(f"`marginal_columns` names {name!r}, which is not in the table: {list(by_name)}.")
        if name == condition_column:
            raise ValueError(f"`marginal_columns` names the condition column {name!r}: it is given, not drawn.")
        if spec["kind"] != "categorical":
            raise ValueError(
                f"`marginal_columns` takes categorical columns; {name!r} is {spec['kind']}: leave it out of the list."
            )
        spec["kind"] = "marginal"


def marginal_draws(spec: dict, rng: np.random.Generator | list[np.random.Generator], num_rows: int) -> list:
    """Levels of a `"marginal"` column drawn from its training counts: one generator for the rows, or one per row."""
    p = np.asarray(spec["counts"], dtype=np.float64)
    p /= p.sum()
    if isinstance(rng, list):
        index = [int(g.choice(len(p), p=p)) for g in rng]
    else:
        index = rng.choice(len(p), size=num_rows, p=p).tolist()
    return [spec["categories"][i] for i in index]
