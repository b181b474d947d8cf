"""Rows with given values in some columns, drawn from any table generator by rejection: SDV's `sample_from_conditions`
for models that were not trained on that column as a condition."""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

__all__ = ["sample_with_values"]

logger = logging.getLogger(__name__)

# a round draws at most this many times the rows asked for, however rare a value has looked so far
MAX_ROUND_FACTOR = 10


class _Missing:
    """The one key of pandas' missing values (NaN, None, NaT), which never equal each other, not even themselves."""

    def __repr__(self) -> str:
        return "missing"


MISSING = _Missing()


def _key(value) -> object:
    return MISSING if pd.api.types.is_scalar(value) and pd.isna(value) else value


def sample_with_values(
    sample: Callable[[int, int], pd.DataFrame],
    column: str | Sequence[str],
    values: Sequence,
    max_rounds: int = 20,
    progress: bool = True,
    preprocessor=None,
) -> pd.DataFrame:
    r"""
    Rows whose `column` holds `values[i]` in row `i`, drawn by rejection from an unconditional generator: draw rows,
    keep for each value the first rows that hold it, in the order drawn, and draw again until every value has as
    many rows as `values` asks for. Kept rows are exactly the generator's rows given the value (the first matches,
    never a choice among them), which is how SDV samples its CTGAN and TVAE synthesizers conditionally.

    Use it for columns the model generates (e.g. the class column of a model trained without `condition_column`).
    A model trained with `condition_column` conditions exactly and faster: `pipe(num_rows=n, class_labels=values)`.
    A generated dataset (`diffusers-xai generate --given_column`) rejects per sample instead, so that each sample
    depends on its index alone (`diffusers_xai.generation.given_values`).
    Each round draws the rows still missing divided by the rarest missing value's share so far (at most
    `MAX_ROUND_FACTOR` times the rows asked for), so a value the generator writes rarely costs many draws.

    Args:
        sample (`Callable[[int, int], pd.DataFrame]`): draws `n` rows in the training table's schema, with `round`
            = 0, 1, ... for seeding, e.g.
            `lambda n, r: pipe(num_rows=n, generator=torch.Generator().manual_seed(r)).rows`.
        column (`str` or `list[str]`): the column whose values are given, or several (SDV's `column_values`).
        values (`Sequence`): one value per wanted row (repeat a value for several rows), a tuple (or array row) of
            one value per column when `column` is a list; missing values (NaN, None) ask for rows where the column
            is missing.
        max_rounds (`int`, *optional*, defaults to 20): rounds of drawing before a value still short is an error.
        progress (`bool`, *optional*, defaults to `True`): a progress bar over rows kept.
        preprocessor ([`TabularPreprocessor`], *optional*): the pipeline's (`pipe.preprocessor`). Each call of
            `sample` numbers its rows from 0, so rows kept from different rounds may repeat identifiers; with it,
            the identifier columns of the rows returned are written afresh for rows 0..n-1 (`renumber_ids`).

    Returns:
        `pd.DataFrame`: `len(values)` rows with index 0..n-1, row `i` holding `values[i]` in `column`.
    """
    columns, keys = _wanted_keys(column, values)
    if max_rounds < 1:
        raise ValueError(f"`max_rounds` must be a positive int, got {max_rounds!r}.")
    wanted = Counter(keys)
    kept: dict[tuple, list[pd.DataFrame]] = {v: [] for v in wanted}
    found = dict.fromkeys(wanted, 0)  # rows kept per value
    seen = dict.fromkeys(wanted, 0)  # rows drawn per value, kept or not: the generator's share of it
    drawn = 0
    with tqdm(total=len(keys), desc="Rows with the given values", disable=not progress) as bar:
        for round_index in range(max_rounds):
            missing = {v: wanted[v] - found[v] for v in wanted if found[v] < wanted[v]}
            if not missing:
                break
            rows = sample(_round_size(missing, seen, drawn, len(keys)), round_index)
            drawn += len(rows)
            for v, positions in _positions_by_key(rows, columns).items():
                if v in wanted:
                    seen[v] += len(positions)
                    take = rows.iloc[positions[: wanted[v] - found[v]]]
                    kept[v].append(take)
                    found[v] += len(take)
                    bar.update(len(take))
    short = {v: f"{found[v]} of {wanted[v]}" for v in wanted if found[v] < wanted[v]}
    if short:
        shown = ", ".join(f"{_shown(v)} ({n})" for v, n in short.items())
        raise ValueError(
            f"After {max_rounds} rounds ({drawn} rows drawn) the generator wrote too few rows with "
            f"{_shown(tuple(columns))} = {shown}: raise `max_rounds`, or train with "
            f"`condition_column: {columns[0]}` and pass `class_labels` to the pipeline."
        )
    logger.info(f"Rejection sampling on {columns}: kept {len(keys)} of {drawn} drawn rows.")
    rows = _in_given_order(kept, keys)
    return rows if preprocessor is None else preprocessor.renumber_ids(rows)


def _wanted_keys(column: str | Sequence[str], values: Sequence) -> tuple[list[str], list[tuple]]:
    """The columns as a list and each wanted row's values as a tuple of keys, checked."""
    columns = [column] if isinstance(column, str) else list(column)
    if not columns:
        raise ValueError("`column` is empty: name the column (or columns) whose values are given.")
    if len(values) == 0:
        raise ValueError("`values` is empty: give one value per row wanted, e.g. the class of each row.")
    if len(columns) == 1:
        return columns, [(_key(v),) for v in values]
    keys = []
    for v in values:
        if isinstance(v, str) or not isinstance(v, (Sequence, np.ndarray)) or len(v) != len(columns):
            raise ValueError(
                f"{v!r} is not a tuple of {len(columns)} values, one per column {columns}: give one such tuple "
                "per row wanted."
            )
        keys.append(tuple(_key(x) for x in v))
    return columns, keys


def _positions_by_key(rows: pd.DataFrame, columns: list[str]) -> dict[tuple, list[int]]:
    """Row positions per tuple of the columns' keys, in row order (one pass over the rows)."""
    absent = [c for c in columns if c not in rows.columns]
    if absent:
        raise ValueError(
            f"Column {absent[0]!r} is not in the generated rows (columns: {list(rows.columns)}): "
            "name a column of the training table."
        )
    groups: dict[tuple, list[int]] = {}
    for i, key in enumerate(zip(*(rows[c].map(_key) for c in columns), strict=True)):
        groups.setdefault(key, []).append(i)
    return groups


def _shown(key: tuple) -> str:
    """A key as the error names it: the value itself for one column."""
    return repr(key[0]) if len(key) == 1 else repr(key)


def _round_size(missing: dict, seen: dict, drawn: int, asked: int) -> int:
    """Rows to draw so that each missing value is expected to be filled, judged by its share of the rows so far (a
    value not seen yet counts as seen once; before any draw, as many rows as are missing)."""
    if not drawn:
        return sum(missing.values())
    need = max(math.ceil(n * drawn / max(seen[v], 1)) for v, n in missing.items())
    return min(need, MAX_ROUND_FACTOR * asked)


def _in_given_order(kept: dict[object, list[pd.DataFrame]], keys: list) -> pd.DataFrame:
    """Row i of the result is the next kept row of `keys[i]`'s value (one `iloc`, so every dtype is kept)."""
    pools = [pd.concat(frames) for frames in kept.values()]
    start, offset = {}, 0
    for v, pool in zip(kept, pools, strict=True):
        start[v], offset = offset, offset + len(pool)
    positions = []
    for v in keys:
        positions.append(start[v])
        start[v] += 1
    return pd.concat(pools).iloc[positions].reset_index(drop=True)
