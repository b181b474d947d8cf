"""What a table's columns *are*, beyond their dtype: decimals, discrete supports, date formats, identifier columns and
mixed-type mistakes. Learned at fit time by [`TabularPreprocessor.fit`] and applied when rows are written back, so
that synthetic tables have the real table's exact schema (what SDV's RDT transformers do by default:
`learn_rounding_scheme`, `enforce_min_max_values`, datetime formats, `RegexGenerator` ids)."""

from __future__ import annotations

import itertools
import logging
import re
import string
import sys
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd

__all__ = [
    "DATETIME_UNITS",
    "MAX_DISCRETE_SUPPORT",
    "check_mixed_types",
    "datetime_spec",
    "decode_datetime",
    "encode_datetime",
    "fresh_ids",
    "from_weekday_count",
    "id_spec",
    "learn_decimals",
    "learn_lattice",
    "learn_step",
    "learn_weekdays",
    "season_features",
    "seasonal_cycles",
    "snap_to_support",
    "to_season",
    "to_weekday_count",
]

logger = logging.getLogger(__name__)

# rdt.transformers.utils.learn_rounding_digits: float64 carries 15 significant digits, 14 decimals are safe
MAX_DECIMALS = sys.float_info.dig - 1
# a value this many units in the last place from its rounding to d decimals has d decimals (float arithmetic's error)
DECIMAL_ULPS = 4
# a value this close to its rounding to d decimals (a share of the d-th decimal's unit), in at most this share of a
# column's values, has d decimals written with noise (`learn_decimals`)
NEAR_ROUNDED_UNIT = 1e-3
NEAR_ROUNDED_SHARE = 0.01
# numerical columns with at most this many distinct values are written back on their observed values only
MAX_DISCRETE_SUPPORT = 20
# a column's values lie on a grid coarser than their decimals (`learn_step`) only with at least this many distinct
# values: ten random integers share a common divisor > 1 of their differences with probability about 0.2%
MIN_STEP_VALUES = 10
# a column's numbers are written back on its observed values (`learn_lattice`) when fresh rows almost never take an
# unseen value (Good-Turing's estimate of that probability, the share of values seen once, at most this) ...
MAX_UNSEEN_MASS = 0.05
# ... and its distinct values fill at most this share of the points of its grid (decimals or step) between min and max
MAX_LATTICE_FILL = 0.5
# a lattice is stored in the preprocessor's config: larger supports are left to rounding
MAX_LATTICE_VALUES = 10_000
# an all-unique string (or contiguous integer) column of at least this many rows is an identifier
MIN_ID_ROWS = 10
_NS = {"D": 86_400 * 10**9, "h": 3_600 * 10**9, "min": 60 * 10**9, "s": 10**9, "ms": 10**6, "us": 10**3, "ns": 1}
# coarsest first: a column whose every value falls on Jan 1 (or the 1st of a month) at midnight is modelled in years
# (months), so written-back dates fall on the same grid; otherwise in the coarsest exact time unit
DATETIME_UNITS = ("Y", "M", *_NS)
# the date fields a file may write without their leading zero ("Jan 1 2000", "3/7/2021 9:05")
PADDED_FIELDS = ("%d", "%m", "%H", "%I")
# fields written as names, which a column may write in capitals (`SEP`, `MON`)
NAME_FIELDS = ("%b", "%B", "%a", "%A")
# the cycles a date/time column may carry as features (`seasonal_cycles`): the mean Gregorian year and the day, each
# when the column's unit is finer than it and its values span at least `MIN_CYCLES` of it
CYCLES = (("year", 365.2425 * 86_400 * 10**9), ("day", 86_400 * 10**9))
MIN_CYCLES = 2
# a daily date column keeps to the weekdays it holds (trading days: Monday to Friday) only when days spread over the
# whole week would miss the others this rarely: vega's ohlc, 44 trading days, (5/7)^44 = 4e-7
WEEKDAY_CHANCE = 0.01


# ---- numbers ----
def learn_decimals(values: np.ndarray, dtype=None) -> int | None:
    """
    The number of decimals every finite value has (RDT's `learn_rounding_digits`): 0 for whole numbers, 1 for
    `12.8, 13.3`, ..., `None` when some value needs more than 14 (a measured float: no rounding).

    A value within `DECIMAL_ULPS` units in the last place of its rounding counts as rounded: a file written from
    computed numbers holds `1.9300000000000002` for 1.93 (vega's driving `gas`, anscombe `Y`), where RDT's exact
    test finds no decimals and the generated column is written with 16 digits. In a single-precision column
    (`dtype` float32 or float16: a Parquet file written from numpy or torch) a value is its rounding when both are
    the same single-precision number: float32's 12.8 is 12.800000190734863 in float64, and the float64 test found
    no decimals. A value within `NEAR_ROUNDED_UNIT` of a unit of the last decimal from its rounding, in at most
    `NEAR_ROUNDED_SHARE` of the values, is that rounding written with noise: sklearn's wine `color_intensity` holds
    9.899999 among 177 values of at most two decimals, and its generated values were written with six.
    """
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0 or np.all(values % 1 == 0):
        return 0
    single = dtype is not None and np.dtype(dtype).kind == "f" and np.dtype(dtype).itemsize < 8
    for decimals in range(MAX_DECIMALS + 1):
        rounded = np.round(values, decimals)
        if single:
            exact = rounded.astype(dtype) == values.astype(dtype)
        else:
            exact = np.abs(values - rounded) <= DECIMAL_ULPS * np.spacing(np.abs(rounded))
        near = np.abs(values - rounded) <= NEAR_ROUNDED_UNIT * 10.0**-decimals
        if np.all(exact | near) and np.count_nonzero(~exact) <= NEAR_ROUNDED_SHARE * values.size:
            return decimals
    return None


def learn_step(values: np.ndarray, decimals: int | None) -> float | None:
    """
    The grid step of a column whose values are spaced more coarsely than their decimals: penguins' `body_mass_g` is
    weighed to 25 g (3750, 3800, 3325), so its step is 25; `None` when there is no such grid (the differences between
    the distinct values, in units of the last decimal, have no common divisor > 1) or fewer than `MIN_STEP_VALUES`
    distinct values. Written-back values are `min + k * step`, as the real ones are (SDV rounds to decimals only, and
    a detector then tells 3,811 g from the real multiples of 25).
    """
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if decimals is None or np.unique(values).size < MIN_STEP_VALUES:
        return None
    units = np.rint(values * 10.0**decimals)
    if np.abs(units).max() >= 2**53:  # beyond exact float64 integers
        return None
    unique = np.unique(units).astype(np.int64)
    step = int(np.gcd.reduce(unique[1:] - unique[0]))
    return step / 10.0**decimals if step > 1 else None


# the largest denominator of a column of fractions (`learn_denominator`)
MAX_DENOMINATOR = 60
# ... and how likely a rounded value may sit that close to a fraction by chance: q^2 / 10^decimals at most this
MAX_FRACTION_CHANCE = 0.01
# the relative error of a fraction computed in floats (carshare's 986.3333333335024 for 11,836 / 12: 1.7e-13)
FRACTION_FLOAT_ERROR = 1e-9
# the values a denominator is tried on before all of them
FRACTION_PROBE = 64


def learn_denominator(values: np.ndarray, decimals: int | None) -> int | None:
    """
    The smallest denominator q ≤ `MAX_DENOMINATOR` such that every value is a whole number of q-ths, for a column
    of fractions that no decimal grid describes, or `None`. Plotly's carshare stores averages of car hours over 12
    (`986.3333333335024` for 11,836 / 12, with the float error of their computation): generated numbers, written
    with 14 decimals, were on no such grid. A value counts as a q-th within `FRACTION_FLOAT_ERROR` relative to
    value × q (the chance of that by accident is below 1e-7 per value up to a million; it must hold for all of at
    least `MIN_STEP_VALUES` distinct values), or, for a column rounded to few `decimals`, within half its last
    decimal times q, where q is only tried while q² / 10^decimals ≤ `MAX_FRACTION_CHANCE`.
    Whole numbers and decimal grids (q dividing 10^decimals) are [`learn_step`]'s.
    """
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if np.unique(values).size < MIN_STEP_VALUES or np.all(values % 1 == 0):
        return None
    head = values[:FRACTION_PROBE]
    for q in range(2, MAX_DENOMINATOR + 1):
        rounding = 0.0
        if decimals is not None:
            if q * q > MAX_FRACTION_CHANCE * 10.0**decimals:
                return None
            if 10**decimals % q == 0:  # q-ths are a decimal grid: `learn_step`'s
                continue
            rounding = q * 0.5 * 10.0**-decimals
        # the first values first: a measured column fails there, so a large table is not scanned 59 times
        if _whole_qths(head, q, rounding) and _whole_qths(values, q, rounding):
            return q
    return None


def _whole_qths(values: np.ndarray, q: int, rounding: float) -> bool:
    """Whether every value is a whole number of q-ths, within float error plus `rounding`."""
    scaled = values * q
    return bool(
        np.all(np.abs(scaled - np.rint(scaled)) <= FRACTION_FLOAT_ERROR * np.maximum(1.0, np.abs(scaled)) + rounding)
    )


def learn_lattice(values: np.ndarray, decimals: int | None, step: float | None = None) -> list[float] | None:
    """
    The observed values of a column whose numbers sit on a sparse lattice of repeated values, or `None`.

    Temperatures measured in whole °F and stored in °C to one decimal (vega's seattle-weather: 12.8, 13.3, 13.9, 14.4)
    use 67 of the 373 points of their 0.1 grid, each value about 22 times. Rounded to one decimal, generated numbers
    fall between them (13.1), and a gradient-boosting detector told a trained model's rows from real ones at AUC
    0.89 on the value columns; written on the observed values, 0.51 (`bench/tabular_lattice.py`). A column is such
    a lattice when both hold:

    - fresh real rows almost never bring a new value: Good-Turing's estimate of that probability, the share of rows
      whose value occurs once (Good 1953), is at most `MAX_UNSEEN_MASS` (seattle's `temp_max`: 5 of 1,461 rows);
    - the values fill at most `MAX_LATTICE_FILL` of the grid points between min and max (the grid of `step`, else of
      `decimals`; a column without a decimal grid counts as unfilled), so values off the lattice are common.

    Measured floats (most values once) and dense grids (iris' petal widths: 21 of 25 points) are not lattices:
    rounding already writes them as the real ones are.
    """
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    unique, counts = np.unique(values, return_counts=True)
    if values.size == 0 or unique.size > MAX_LATTICE_VALUES or (counts == 1).sum() > MAX_UNSEEN_MASS * values.size:
        return None
    spacing = step or (10.0**-decimals if decimals is not None else None)
    if spacing is not None and unique.size > MAX_LATTICE_FILL * (round((unique[-1] - unique[0]) / spacing) + 1):
        return None
    return unique.tolist()


def snap_to_support(values: np.ndarray, support: list[float]) -> np.ndarray:
    """Each value replaced by the nearest of the (sorted) observed `support` values."""
    grid = np.asarray(support, dtype=np.float64)
    idx = np.clip(np.searchsorted(grid, values), 1, len(grid) - 1)
    left, right = grid[idx - 1], grid[idx]
    return np.where(np.abs(values - left) <= np.abs(right - values), left, right)


# ---- mixed types ----
def check_mixed_types(name: str, series: pd.Series) -> None:
    """
    Refuse an object column whose type changes midway: Python numbers beside strings, or strings that are numbers
    in most rows but not in some (a CSV column with a stray `"n/a"`). Raises a `ValueError` naming the column, an
    example of each kind and the fix.
    """
    values = series.dropna()
    if not pd.api.types.is_object_dtype(series.dtype) or values.empty:
        return
    is_str = values.map(lambda v: isinstance(v, str))
    is_num = values.map(lambda v: isinstance(v, (int, float, np.number)) and not isinstance(v, (bool, np.bool_)))
    if is_str.any() and is_num.any():
        raise ValueError(
            f"Column {name!r} mixes numbers and strings (e.g. {values[is_num].iloc[0]!r} at row "
            f"{values[is_num].index[0]} and {values[is_str].iloc[0]!r} at row {values[is_str].index[0]}); make it "
            "one type: convert it with pd.to_numeric(errors='coerce') (non-numbers become missing) or with "
            ".astype(str) and list it in `categorical_columns`."
        )
    if is_str.all():
        parsed = pd.to_numeric(values, errors="coerce")
        bad = parsed.isna()
        if bad.any() and bad.mean() < 0.5:
            raise ValueError(
                f"Column {name!r} holds numbers in {int((~bad).sum())} rows but non-numbers in {int(bad.sum())} "
                f"(e.g. {values[bad].iloc[0]!r} at row {values[bad].index[0]}); mark those as missing "
                "(pd.read_csv(..., na_values=[...]) or pd.to_numeric(errors='coerce')), or list the column in "
                "`categorical_columns` to model it as categories."
            )


# ---- dates and times ----
def _datetime_unit(ns: np.ndarray) -> str:
    stamps = pd.to_datetime(ns)
    midnight = (ns % _NS["D"]) == 0
    if midnight.all() and (stamps.day == 1).all():
        return "Y" if (stamps.month == 1).all() else "M"
    return next(unit for unit, size in _NS.items() if np.all(ns % size == 0))


def datetime_spec(name: str, series: pd.Series) -> dict | None:
    """
    The date/time description of a column, or `None` if it is not one: a datetime64 column, an object column whose
    strings all parse with one format (pandas' `guess_datetime_format` on the first values, or a quarter such as
    `1974Q1`: [`_quarter_format`]), or an integer column of `YYYYMMDD` dates ([`_int_dates`]). Keys: `source`
    (`"datetime64"`, `"string"` or `"int"`), `format` (strings and ints), `tz`, `unit` (see `DATETIME_UNITS`). A
    string column whose values mostly parse as dates but not all with one format raises a `ValueError` naming the
    column.
    """
    dtype = series.dtype
    if pd.api.types.is_datetime64_any_dtype(dtype):
        tz = str(dtype.tz) if getattr(dtype, "tz", None) is not None else None
        spec = {"source": "datetime64", "format": None, "tz": tz}
        parsed = series
    elif pd.api.types.is_object_dtype(dtype) or pd.api.types.is_string_dtype(dtype):
        values = series.dropna()
        if values.empty or not values.map(lambda v: isinstance(v, str)).all():
            return None
        if pd.to_numeric(values, errors="coerce").notna().any():
            return None  # numeric codes ("2001", "12") are not dates
        fmt, parsed = _best_format(values)
        if fmt is None:
            fmt, parsed = _quarter_format(values)
        if fmt is None:
            return None
        failed = values[parsed[values.index].isna()]
        if not failed.empty:
            if len(failed) > len(values) / 2:
                return None  # mostly not dates: a string category that happens to start with one
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                other = pd.to_datetime(failed, format="mixed", errors="coerce")
            kind = "in another date format" if other.notna().any() else "that are not dates"
            raise ValueError(
                f"Column {name!r} holds dates in format {fmt!r} (e.g. {values.iloc[0]!r}) but {len(failed)} values "
                f"{kind} (e.g. {failed.iloc[0]!r} at row {failed.index[0]}); write every date in one format, e.g. "
                f"df[{name!r}] = pd.to_datetime(df[{name!r}], format='mixed').dt.strftime({fmt!r}), or mark "
                "non-dates as missing."
            )
        spec = {"source": "string", "format": fmt, "tz": None}
        # Oracle writes month names in capitals (`19-SEP-03`); strptime reads them, strftime writes `Sep`
        upper = any(t in fmt for t in NAME_FIELDS) and bool((values == values.str.upper()).all())
        if upper:
            spec["upper"] = True
        unpadded = _unpadded_fields(values, parsed[values.index], fmt, upper)
        if unpadded:
            spec["unpadded"] = unpadded
    elif pd.api.types.is_integer_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype):
        parsed = _int_dates(series)
        if parsed is None:
            return None
        spec = {"source": "int", "format": INT_DATE_FORMAT, "tz": None}
    else:
        return None
    ns = _to_ns(parsed, spec["tz"])
    spec["unit"] = _datetime_unit(ns[~np.isnan(ns)].astype(np.int64))
    weekdays = learn_weekdays(ns / _NS["D"]) if spec["unit"] == "D" else None
    if weekdays is not None:
        spec["weekdays"] = weekdays
    return spec


def learn_weekdays(days: np.ndarray) -> list[int] | None:
    """
    The weekdays (Monday = 0) a daily date column keeps to, or `None` when it holds all seven, or when missing the
    others is likely by chance: n distinct days spread over the whole week would all fall on the k weekdays held
    with probability (k / 7)^n, which must be below `WEEKDAY_CHANCE`. Trading days (vega's ohlc) hold Monday to
    Friday; modelled as calendar days, 23.5% of ohlc's generated dates fell on a weekend. Such a date is modelled as a
    count of those weekdays instead ([`encode_datetime`]).
    """
    distinct = np.unique(np.rint(days[np.isfinite(days)])).astype(np.int64)
    weekdays = np.unique((distinct + 3) % 7)  # 1970-01-01, day 0, was a Thursday
    if len(weekdays) == 7 or (len(weekdays) / 7) ** len(distinct) >= WEEKDAY_CHANCE:
        return None
    return weekdays.tolist()


def _weekday_anchor(weekmask: list[bool]) -> np.datetime64:
    """The first day on one of the weekdays on or after 1970-01-01: day 0 of the weekday count."""
    return np.busday_offset(np.datetime64("1970-01-01"), 0, roll="forward", weekmask=weekmask)


def _weekmask(weekdays: Sequence[int]) -> list[bool]:
    return [day in weekdays for day in range(7)]


def to_weekday_count(days: np.ndarray, weekdays: Sequence[int]) -> np.ndarray:
    """Whole days since 1970 on `weekdays` → how many such days lie between the first of them in 1970 and each
    (negative before it); NaN stays NaN. Inverse: [`from_weekday_count`]."""
    mask = _weekmask(weekdays)
    out = np.full(np.shape(days), np.nan)
    finite = np.isfinite(days)
    dates = np.rint(np.asarray(days)[finite]).astype("datetime64[D]")
    out[finite] = np.busday_count(_weekday_anchor(mask), dates, weekmask=mask)
    return out


def from_weekday_count(counts: np.ndarray, weekdays: Sequence[int]) -> np.ndarray:
    """Whole counts of [`to_weekday_count`] → days since 1970 (each on one of `weekdays`)."""
    mask = _weekmask(weekdays)
    return np.busday_offset(_weekday_anchor(mask), counts.astype(np.int64), weekmask=mask).astype(np.int64)


# integers that are dates: 19580329 (statsmodels' co2); written back as integers
INT_DATE_FORMAT = "%Y%m%d"
# an integer column is read as YYYYMMDD dates from this many distinct values: a number of 8 digits with a plausible
# year is a valid YYYYMMDD with probability about 12/100 · 30.4/100 ≈ 3.6%, so 10 by chance have odds below 1e-14
MIN_INT_DATES = 10
# a quarter's field in a format of ours (strftime and pandas have none): `%Y` and `%q` in `1974Q1` (`%YQ%q`)
QUARTER = "%q"
_QUARTER = re.compile(r"^(?:(\d{4})([-\s:/]?)([Qq])[1-4]|([Qq])[1-4]([-\s:/]?)(\d{4}))$")


def _int_dates(series: pd.Series) -> pd.Series | None:
    """
    An integer column whose values all read as `YYYYMMDD` dates (statsmodels' co2: `19580329`, 2,284 weekly dates),
    parsed; else `None`. Modelled as a number, 89% of co2's generated `date`s were not dates (`19993320`).
    """
    if series.isna().any():  # a nullable integer column with missing values: not read as dates
        return None
    if series.nunique() < MIN_INT_DATES or not series.between(10_000_101, 29_991_231).all():
        return None
    parsed = pd.to_datetime(series.astype(np.int64).astype(str), format=INT_DATE_FORMAT, errors="coerce")
    return parsed if parsed.notna().all() else None


def _quarter_format(values: pd.Series) -> tuple[str | None, pd.Series | None]:
    """
    The format of quarters written as a year and `Q1`-`Q4` (`1974Q1`, `1974-Q1`, `Q1 1974`; statsmodels'
    danish_data), with `QUARTER` for the quarter's digit, and the values parsed (the quarter's first day), when every
    value matches the first one's layout; else `(None, None)`. pandas guesses no format for them, and as codes
    their fresh values counted on in base 11 (`1987QQ`, `198800`).
    """
    match = _QUARTER.match(str(values.iloc[0]))
    if match is None:
        return None, None
    year_first, sep, q, q_first, sep_after, _ = match.groups()
    fmt = f"%Y{sep}{q}{QUARTER}" if year_first else f"{q_first}{QUARTER}{sep_after}%Y"
    parsed = parse_datetime(values, fmt)
    return (fmt, parsed) if parsed.notna().all() else (None, None)


def parse_datetime(values: pd.Series, fmt: str, errors: str = "coerce") -> pd.Series:
    """`pd.to_datetime(values, format=fmt)`, which also reads the quarters of [`_quarter_format`] (their first day)."""
    if QUARTER not in fmt:
        return pd.to_datetime(values, format=fmt, errors=errors)
    fields = {"%Y": r"(?P<year>\d{4})", QUARTER: r"(?P<quarter>[1-4])"}
    pattern = "^" + "".join(fields.get(token, re.escape(token)) for token in _tokens(fmt)) + "$"
    values = pd.Series(values, dtype=object)
    found = values.astype(str).str.extract(pattern).astype(float)
    unread = found["year"].isna().to_numpy() & values.notna().to_numpy()  # a missing value stays missing (NaT)
    if errors == "raise" and unread.any():
        raise ValueError(f"{values[unread].iloc[0]!r} is not a quarter in format {fmt!r}.")
    months = (found["quarter"] - 1) * 3 + 1
    return pd.to_datetime({"year": found["year"], "month": months, "day": 1}, errors="coerce")


# Formats pandas' `guess_datetime_format` never returns (it guesses no two-digit year, and no month without a day),
# tried after its guesses: Yahoo Finance's and Oracle's `19-Sep-03` (matplotlib's packaged msft.csv), `03/15/99`,
# `Sep 2003`, `09/2003`. Month-first before day-first, as for the guesses. Not `%d.%m.%y`: version strings
# (`1.2.10`) would read as dates.
UNGUESSED_DATE_FORMATS = (
    "%d-%b-%y",
    "%m/%d/%y",
    "%d/%m/%y",
    "%m-%d-%y",
    "%d-%m-%y",
    "%d %b %y",
    "%b-%y",
    "%b %Y",
    "%b-%Y",
    "%m/%Y",
)


def _best_format(values: pd.Series) -> tuple[str | None, pd.Series | None]:
    """The date format (guessed from the first values, month-first and day-first, then `UNGUESSED_DATE_FORMATS`)
    that parses the most values."""
    from pandas.tseries.api import guess_datetime_format

    candidates = []  # month-first guesses first: they win ties ("2006-01-01" is %Y-%m-%d, not %Y-%d-%m)
    for dayfirst in (False, True):
        for value in values.iloc[:20]:
            with warnings.catch_warnings():  # "Parsing dates in %d/%m/%Y format when dayfirst=False": we try both
                warnings.simplefilter("ignore")
                fmt = guess_datetime_format(value, dayfirst=dayfirst)
            if fmt is not None and fmt not in candidates and any(d in fmt for d in ("%Y", "%y", "%d", "%b", "%B")):
                candidates.append(fmt)
    head = values.iloc[:20]  # a format that reads none of the first values is not tried on the whole column
    candidates += [
        fmt
        for fmt in UNGUESSED_DATE_FORMATS
        if fmt not in candidates and pd.to_datetime(head, format=fmt, errors="coerce").notna().any()
    ]
    best, best_parsed = None, None
    for fmt in candidates:
        parsed = pd.to_datetime(values, format=fmt, errors="coerce")
        if best_parsed is None or parsed.notna().sum() > best_parsed.notna().sum():
            best, best_parsed = fmt, parsed
    if best_parsed is None or not best_parsed.notna().any():
        return None, None  # no format reads a value (quarters are tried next)
    return best, best_parsed


def _unpadded_fields(values: pd.Series, parsed: pd.Series, fmt: str, upper: bool = False) -> list[str]:
    """The fields of `fmt` the strings write without a leading zero (`"Jan 1 2000"`: `["%d"]`), the fewest that
    reproduce every value (in capitals if `upper`); none if no choice does (padding mixed within the column)."""
    present = [field for field in PADDED_FIELDS if field in _tokens(fmt)]
    for n in range(len(present) + 1):
        for fields in itertools.combinations(present, n):
            text = format_datetime(parsed, fmt, fields)
            if ((text.str.upper() if upper else text) == values).all():
                return list(fields)
    return []


def _tokens(fmt: str) -> list[str]:
    return re.findall(r"%.|[^%]+", fmt)


def format_datetime(stamps: pd.Series, fmt: str, unpadded: Sequence[str] = ()) -> pd.Series:
    """`stamps.dt.strftime(fmt)` with the `unpadded` fields (of `PADDED_FIELDS`) written without their leading zero,
    and `QUARTER` as the quarter's digit. Done here because strftime's `%-d` exists only in glibc (not on Windows or
    in pandas' own formatter), and no strftime writes quarters."""
    if not unpadded and QUARTER not in fmt:
        return stamps.dt.strftime(fmt)
    out = pd.Series("", index=stamps.index, dtype=object)
    for token in _tokens(fmt):
        if token == QUARTER:
            piece = ((stamps.dt.month.fillna(1).astype(int) - 1) // 3 + 1).astype(str)
        else:
            piece = stamps.dt.strftime(token)
        out = out + (piece.str.lstrip("0").replace("", "0") if token in unpadded else piece)
    return out


def _to_ns(parsed: pd.Series, tz: str | None) -> np.ndarray:
    parsed = pd.Series(parsed)
    if tz is not None:
        parsed = parsed.dt.tz_convert("UTC").dt.tz_localize(None)
    out = parsed.astype("datetime64[ns]").to_numpy().astype(np.int64).astype(np.float64)
    out[parsed.isna().to_numpy()] = np.nan
    return out


def encode_datetime(series: pd.Series, spec: dict) -> np.ndarray:
    """A date/time column → float64 numbers in its `unit` since 1970 (years/months counted from 1970-01); NaT → NaN."""
    if spec["source"] == "datetime64":
        parsed = series
    else:  # an int date's digits are its string (non-missing: an integer column holds none)
        text = series.astype(np.int64).astype(str) if spec["source"] == "int" else series
        parsed = parse_datetime(text, spec["format"], errors="raise")
    ns = _to_ns(parsed, spec["tz"])
    if spec["unit"] in ("Y", "M"):
        stamps = pd.to_datetime(np.nan_to_num(ns).astype(np.int64))
        months = (stamps.year.to_numpy() - 1970) * 12 + stamps.month.to_numpy() - 1
        out = months / 12.0 if spec["unit"] == "Y" else months.astype(np.float64)
        return np.where(np.isnan(ns), np.nan, out)
    if spec.get("weekdays"):
        return to_weekday_count(ns / _NS["D"], spec["weekdays"])
    return ns / _NS[spec["unit"]]


def seasonal_cycles(values: np.ndarray, unit: str, weekdays: Sequence[int] | None = None) -> list[list]:
    """
    The cycles a date/time column carries as features, `[[name, period in the column's unit], ...]`: the year when
    the unit is finer than a month, the day when it is finer than a day, each when the values span at least
    `MIN_CYCLES` of it (`[]` otherwise).

    A date is modelled as one number (units since 1970), and on vega's seattle-weather (four years of days) the model
    learnt the temperature's four yearly cycles over that number only in part: the pair (date, temp_max) told its
    rows from real ones at AUC 0.74, the date alone at 0.44. A cycle's sine and cosine make the time of year (of day)
    a feature the other columns can follow directly ([`season_features`]); written back, a date moves to the phase
    they give ([`to_season`]). With the year's, the whole table read 0.54 (0.73 without). A date counted in the
    `weekdays` it keeps to ([`learn_weekdays`]) has periods shorter by their share of the week.
    """
    if unit in ("Y", "M"):
        return []
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return []
    span = values.max() - values.min()
    share = len(weekdays) / 7 if weekdays else 1.0  # a count of trading days: 5/7 of the year's days on average
    cycles = [[name, ns / _NS[unit] * share] for name, ns in CYCLES if ns > _NS[unit]]
    return [[name, period] for name, period in cycles if span >= MIN_CYCLES * period]


def season_features(values: np.ndarray, cycles: list[list]) -> np.ndarray:
    """`[N, 2 * len(cycles)]`: √2 · (sin, cos) of each value's phase in each cycle's period (unit variance, as the
    other features); a missing value gives zeros."""
    values = np.asarray(values, dtype=np.float64)
    parts = []
    for _, period in cycles:
        angle = 2.0 * np.pi * values / period
        parts += [np.sin(angle), np.cos(angle)]
    return np.nan_to_num(np.sqrt(2.0) * np.stack(parts, axis=1), nan=0.0)


def to_season(values: np.ndarray, features: np.ndarray, cycles: list[list], low: float, high: float) -> np.ndarray:
    """
    Each generated date moved, cycle by cycle from the longest, by less than half its period to the phase its
    generated [`season_features`] give (the year from the date, the time of year and of day from the features), then
    by a whole period back inside [low, high] when the move left it by more than half a unit (less is float error of
    the quantile transform at the range's ends, which the decoder's clip absorbs).
    """
    out = np.asarray(values, dtype=np.float64)
    for k, (_, period) in enumerate(cycles):
        target = np.arctan2(features[:, 2 * k], features[:, 2 * k + 1])
        delta = np.mod(target - 2.0 * np.pi * out / period + np.pi, 2.0 * np.pi) - np.pi
        out = out + delta / (2.0 * np.pi) * period
        out = np.where(out > high + 0.5, out - period, out)
        out = np.where(out < low - 0.5, out + period, out)
    return out


def decode_datetime(values: np.ndarray, spec: dict, dtype: str) -> pd.Series:
    """Numbers of [`encode_datetime`] (rounded to whole units) → the column in its original dtype and format."""
    missing = np.isnan(values)
    units = np.rint(np.nan_to_num(values)).astype(np.int64)
    if spec.get("weekdays"):
        units = from_weekday_count(units, spec["weekdays"])
    if spec["unit"] in ("Y", "M"):
        months = units * 12 if spec["unit"] == "Y" else units
        stamps = pd.to_datetime({"year": 1970 + months // 12, "month": months % 12 + 1, "day": 1})
    else:
        stamps = pd.to_datetime(units * _NS[spec["unit"]])
    stamps = pd.Series(stamps).where(~missing, pd.NaT)
    if spec["tz"] is not None:
        stamps = stamps.dt.tz_localize("UTC").dt.tz_convert(spec["tz"])
    if spec["source"] == "int":
        return format_datetime(stamps, spec["format"]).astype(np.int64).astype(dtype)
    if spec["source"] == "string":
        text = format_datetime(stamps, spec["format"], spec.get("unpadded", ()))
        text = text.str.upper() if spec.get("upper") else text
        return pd.Series(text.where(~missing, np.nan), dtype=object)
    return stamps.astype(dtype)


# ---- identifiers ----
# words that name unique integers as identifiers rather than measurements: statsmodels' fair_pt `identifier` (601
# survey ids between 4 and 9,029) was modelled as a number and came back with 75 ids repeated in 601 rows
ID_NAME_TOKENS = frozenset({"id", "identifier"})


def name_tokens(name: str) -> list[str]:
    """The lower-case words of a column name, split at `_`, `-`, spaces and camelCase (`customerId`, `Customer ID`,
    `customer_id`: [..., "id"]), as SDV's `_tokenize_column_name` splits them."""
    return [word.lower() for word in re.findall(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+", str(name))]


def id_spec(name: str, series: pd.Series) -> dict | None:
    """
    The identifier description of a column whose values are all present and unique, or `None`: codes (their
    common prefix, lengths, tail characters and where fresh tails start, see [`fresh_ids`]), free text (numbered
    labels), or integers forming a contiguous range (a row number) or named as identifiers (`ID_NAME_TOKENS`, as
    SDV's metadata detection reads an `id` word). Such a column carries no distribution to learn and would be copied
    row for row. Unique integers named otherwise are measurements (statsmodels' cancer: `population`).
    """
    if len(series) < MIN_ID_ROWS or series.isna().any() or not series.is_unique:
        return None
    if pd.api.types.is_integer_dtype(series.dtype) and not pd.api.types.is_bool_dtype(series.dtype):
        lo, hi = int(series.min()), int(series.max())
        named = ID_NAME_TOKENS.intersection(name_tokens(name))
        return {"type": "int", "min": lo, "max": hi} if hi - lo == len(series) - 1 or named else None
    if not (pd.api.types.is_object_dtype(series.dtype) or pd.api.types.is_string_dtype(series.dtype)):
        return None
    if not series.map(lambda v: isinstance(v, str)).all():
        return None
    values = series.tolist()
    prefix = _common_prefix(values)
    tails = [v[len(prefix) :] for v in values]
    if not _code_like(tails):
        return _text_id_spec(name, values)
    alphabet = _id_alphabet("".join(tails))
    return {
        "type": "str",
        "prefix": prefix,
        "lengths": sorted({len(v) for v in values}),
        "alphabet": alphabet,
        "next_rank": _next_rank(values, prefix, alphabet),  # fresh tails start after the largest training tail
    }


# the tails of codes (after their common prefix): at most this long when their lengths differ, in these characters
MAX_CODE_TAIL = 16
CODE_CHARACTERS = frozenset(string.ascii_letters + string.digits + "-_")


def _code_like(tails: list[str]) -> bool:
    """
    Whether unique strings read as codes that continue by counting (`ORD-00178`, airport codes, UUIDs: tails of one
    length, or short tails of letters and digits), not as unique free text: districts' names
    (`"101-Bois-de-Liesse"`, 12 to 51 characters) counted on from the largest read as a mangled real name.
    """
    if len({len(t) for t in tails}) == 1:
        return True
    return max(len(t) for t in tails) <= MAX_CODE_TAIL and set("".join(tails)) <= CODE_CHARACTERS


def _text_id_spec(name: str, values: list[str]) -> dict:
    """Unique free text is written as `"<column>_<n>"`, numbered after any training value of that form; the spec
    stores no training value."""
    label = f"{name}_"
    taken = [int(v[len(label) :]) for v in values if v.startswith(label) and v[len(label) :].isdigit()]
    return {"type": "text", "label": label, "start": max(taken, default=0) + 1}


def _common_prefix(values: list[str]) -> str:
    first, last = min(values), max(values)
    n = next((i for i, (a, b) in enumerate(zip(first, last)) if a != b), min(len(first), len(last)))
    return first[:n]


def fresh_ids(spec: dict, indices) -> list:
    """
    The identifiers of generated rows number `indices` (0, 1, ... in one pipeline call; a sample's index in a
    generated dataset): a function of the index alone, distinct for distinct indices, in the training column's
    format, and never equal to a training identifier of the same length. Rows generated in batches, shards or
    rounds therefore never repeat an identifier (SDV's id generators keep a counter across `sample` calls for the
    same reason).

    - integers continue after the training range: `max + 1 + index`;
    - strings keep the training values' common prefix and continue after the largest training tail of the longest
      length, the tail read as a number whose digits are the tails' characters in sorted order (`ORD-00000` to
      `ORD-00177` continue at `ORD-00178`); past the last value of that length the tail gains a character, as a
      number gains a digit.
    - unique free text (names, addresses: see `_code_like`) is numbered: `district_1`, `district_2`, ...

    Not drawn at random: the model stores no training identifier but the largest, so random strings could repeat
    real ones, and independent draws repeat each other across calls.
    """
    indices = np.asarray(indices, dtype=np.int64).reshape(-1)
    if spec["type"] == "int":
        return (spec["max"] + 1 + indices).tolist()
    if spec["type"] == "text":
        return [f"{spec['label']}{spec['start'] + int(i)}" for i in indices]
    alphabet = _id_alphabet(spec.get("alphabet") or "")
    prefix = spec.get("prefix") or ""
    width = max(max(spec.get("lengths") or [len(prefix) + 8]) - len(prefix), 1)
    first = int(spec.get("next_rank", 0))
    return [prefix + _base_digits(first + int(i), alphabet, width) for i in indices]


def _id_alphabet(characters: str) -> str:
    """The sorted distinct `characters`: the digits of fresh tails (one character spells no numbers: the digits are
    added)."""
    alphabet = "".join(sorted(set(characters)))
    return alphabet if len(alphabet) >= 2 else "".join(sorted(set(alphabet + string.digits)))


def _base_digits(rank: int, alphabet: str, width: int) -> str:
    """`rank` written in base `len(alphabet)` with `alphabet` as digits, left-padded to `width`."""
    base, digits = len(alphabet), []
    while rank or len(digits) < width:
        rank, digit = divmod(rank, base)
        digits.append(alphabet[digit])
    return "".join(reversed(digits))


def _next_rank(values: list[str], prefix: str, alphabet: str) -> int:
    """1 + the rank of the largest tail of the longest length: where fresh tails of that length start."""
    width = max(len(v) for v in values) - len(prefix)
    position = {c: i for i, c in enumerate(alphabet)}
    ranks = []
    for v in values:
        if len(v) - len(prefix) == width:
            rank = 0
            for c in v[len(prefix) :]:
                rank = rank * len(alphabet) + position[c]
            ranks.append(rank)
    return max(ranks) + 1
