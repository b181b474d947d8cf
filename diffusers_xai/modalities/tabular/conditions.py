"""Rows with given values in one column, drawn from any table generator by rejection: SDV's `sample_from_conditions`
for models that were not trained on that column as a condition."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence

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
    return MISSING if pd.isna(value) else value


def sample_with_values(
    sample: Callable[[int, int], pd.DataFrame],
    column: str,
    values: Sequence,
    max_rounds: int = 20,
    progress: bool = True,
) -> pd.DataFrame:
    r"""
    Rows whose `column` holds `values[i]` in row `i`, drawn by rejection from an unconditional generator: draw rows,
    keep for each value the first rows that hold it, in the order drawn, and draw again until every value has as
    many rows as `values` asks for. Kept rows are exactly the generator's rows given the value (the first matches,
    never a choice among them), which is how SDV samples its CTGAN and TVAE synthesizers conditionally.

    Use it for a column the model generates (e.g. the class column of a model trained without `condition_column`).
    A model trained with `condition_column` conditions exactly and faster: `pipe(num_rows=n, class_labels=values)`.
    Each round draws the rows still missing divided by the rarest missing value's share so far (at most
    `MAX_ROUND_FACTOR` times the rows asked for), so a value the generator writes rarely costs many draws.

    Args:
        sample (`Callable[[int, int], pd.DataFrame]`): draws `n` rows in the training table's schema, with `round`
            = 0, 1, ... for seeding, e.g.
            `lambda n, r: pipe(num_rows=n, generator=torch.Generator().manual_seed(r)).rows`.
        column (`str`): the column whose values are given.
        values (`Sequence`): one value per wanted row (repeat a value for several rows); missing values (NaN, None)
            ask for rows where `column` is missing.
        max_rounds (`int`, *optional*, defaults to 20): rounds of drawing before a value still short is an error.
        progress (`bool`, *optional*, defaults to `True`): a progress bar over rows kept.

    Returns:
        `pd.DataFrame`: `len(values)` rows with index 0..n-1, row `i` holding `values[i]` in `column`.
    """
    if len(values) == 0:
        raise ValueError("`values` is empty: give one value per row wanted, e.g. the class of each row.")
    if max_rounds < 1:
        raise ValueError(f"`max_rounds` must be a positive int, got {max_rounds!r}.")
    wanted = pd.Series([_key(v) for v in values]).value_counts().to_dict()
    kept: dict[object, list[pd.DataFrame]] = {v: [] for v in wanted}
    found = dict.fromkeys(wanted, 0)  # rows kept per value
    seen = dict.fromkeys(wanted, 0)  # rows drawn per value, kept or not: the generator's share of it
    drawn = 0
    with tqdm(total=len(values), desc="Rows with the given values", disable=not progress) as bar:
        for round_index in range(max_rounds):
            missing = {v: wanted[v] - found[v] for v in wanted if found[v] < wanted[v]}
            if not missing:
                break
            rows = sample(_round_size(missing, seen, drawn, len(values)), round_index)
            if column not in rows.columns:
                raise ValueError(
                    f"Column {column!r} is not in the generated rows (columns: {list(rows.columns)}): "
                    "name a column of the training table."
                )
            keys = rows[column].map(_key)
            drawn += len(rows)
            for v in wanted:
                match = rows[(keys == v).to_numpy()]
                seen[v] += len(match)
                take = match.iloc[: wanted[v] - found[v]]
                kept[v].append(take)
                found[v] += len(take)
                bar.update(len(take))
    short = {v: f"{found[v]} of {wanted[v]}" for v in wanted if found[v] < wanted[v]}
    if short:
        raise ValueError(
            f"After {max_rounds} rounds ({drawn} rows drawn) the generator wrote too few rows with {column!r} = "
            f"{', '.join(f'{v!r} ({n})' for v, n in short.items())}: raise `max_rounds`, or train with "
            f"`condition_column: {column}` and pass `class_labels` to the pipeline."
        )
    logger.info(f"Rejection sampling on {column!r}: kept {len(values)} of {drawn} drawn rows.")
    return _in_given_order(kept, [_key(v) for v in values])


def _round_size(missing: dict, seen: dict, drawn: int, asked: int) -> int:
    """Rows to draw so that each missing value is expected to be filled, judged by its share of the rows so far (a
    value not seen yet counts as one in `drawn + 1`; before any draw, as many rows as are missing)."""
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
