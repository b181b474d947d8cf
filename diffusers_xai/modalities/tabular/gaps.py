"""
Where a column is missing because of another column: a value that is missing exactly when another column holds some
levels (a salary when a student was not placed), or exactly when another column is missing (an end date and a
duration). Generated rows are written so, from the other column's generated value, instead of from the column's own
missingness indicator.

Why: on SDV's student_placements demo (215 rows), `salary`, `end_date` and `duration` are missing exactly when
`placed` is False. A trained model, deciding each column's gap from its own indicator, wrote 9 of 215 rows with a
salary missing for a placed student and 4 where `end_date` and `duration` disagreed.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from .columns import to_python
from .derived import MIN_RULE_ROWS

__all__ = ["MAX_GAP_SOURCE_LEVELS", "MIN_GAP_LEVEL_ROWS", "gap_masks", "is_ruled", "mark_gap_rules"]

logger = logging.getLogger(__name__)

# a column whose levels decide another's gaps has at most this many levels (with many, e.g. one level per row, any
# pattern of gaps would split along them)
MAX_GAP_SOURCE_LEVELS = 32
# ... and at least this many rows in its median level (a level of one row agrees with any gap)
MIN_GAP_LEVEL_ROWS = 5


def _sources(columns: list[dict], df: pd.DataFrame) -> list[dict]:
    """Modelled categorical columns (the condition column too) with 2 to `MAX_GAP_SOURCE_LEVELS` levels,
    `MIN_GAP_LEVEL_ROWS` rows in the median level and no missing value: decoded before the gaps are decided."""
    return [
        c
        for c in columns
        if c["kind"] == "categorical"
        and 2 <= len(c["categories"]) <= MAX_GAP_SOURCE_LEVELS
        and np.median(c["counts"]) >= MIN_GAP_LEVEL_ROWS
        and not df[c["name"]].isna().any()
    ]


def _levels_deciding(gap: np.ndarray, source: pd.Series) -> list | None:
    """The levels of `source` on whose rows `gap` is always true, if on every other level's rows it is always false
    (and there is one level of each kind); else `None`."""
    share = pd.Series(gap).groupby(source.to_numpy()).mean()
    if not share.isin([0.0, 1.0]).all() or share.nunique() != 2:
        return None
    return share.index[share == 1.0].tolist()


def mark_gap_rules(columns: list[dict], df: pd.DataFrame) -> dict[str, str]:
    """
    For each column with a missingness indicator (`missing`) that is missing on `MIN_RULE_ROWS` rows and present on
    as many, store the rule that decides its gaps: `missing_when` (`{"column": ..., "levels": [...]}`), the levels of
    a categorical column on whose rows it is missing, on every training row; or else `missing_with`, an earlier column
    missing on exactly the same rows. Returns `{column: the column that decides its gaps}`.
    """
    ruled: dict[str, str] = {}
    masks: dict[str, np.ndarray] = {}
    sources = _sources(columns, df)
    for spec in columns:
        if not spec.get("missing"):
            continue
        name = spec["name"]
        gap = df[name].isna().to_numpy()
        masks[name] = gap
        if min(gap.sum(), (~gap).sum()) < MIN_RULE_ROWS:
            continue
        for source in sources:
            levels = source["name"] != name and _levels_deciding(gap, df[source["name"]])
            if levels:
                spec["missing_when"] = {
                    "column": source["name"],
                    "levels": [to_python(v, source["name"]) for v in levels],
                }
                ruled[name] = source["name"]
                break
        else:
            twin = next((m for m, other in masks.items() if m != name and np.array_equal(other, gap)), None)
            if twin is not None:
                spec["missing_with"] = ruled[name] = twin
    for name, source in ruled.items():
        logger.info(f"Column {name!r} is missing exactly where {source!r} says: written so on generated rows.")
    return ruled


def is_ruled(spec: dict) -> bool:
    """Whether another column decides where this one is missing ([`mark_gap_rules`])."""
    return spec.get("missing_when") is not None or spec.get("missing_with") is not None


def gap_masks(columns: list[dict], decoded: dict[str, pd.Series], own: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """
    The rows where each column with a missingness indicator is missing: by its rule ([`mark_gap_rules`]) from the
    `decoded` values of the column that decides it, else its `own` indicator's decision (`{column: [N] bool}`).
    """
    gaps: dict[str, np.ndarray] = {}
    for spec in columns:
        if not spec.get("missing"):
            continue
        name, rule = spec["name"], spec.get("missing_when")
        if rule is not None:
            gaps[name] = decoded[rule["column"]].isin(rule["levels"]).to_numpy()
        elif spec.get("missing_with") is not None:
            gaps[name] = gaps[spec["missing_with"]]
        else:
            gaps[name] = own[name]
    return gaps
