"""
Point masses at a numerical column's bounds: a share of the rows sitting exactly on the column's minimum or maximum
(sklearn's breast_cancer: its six concavity columns are 0.0 on the same 13 of 569 rows; vega's seattle-weather:
`precipitation` is 0.0 on 838 of 1,461 days).

Why: the quantile-normal transform describes a column by N // 30 quantiles (TabDDPM's rule), and a mass smaller than
one step of that grid is spread over the numbers next to it. A generated row then reaches the bound only where a
prediction is clipped onto it: trained on breast_cancer (`train/configs/wine.yaml`, no condition column), 2,000
generated rows held 0.6-1.2% zeros per concavity column against the real 2.3%. Giving the bound its share of the
column's own feature instead made the model write 1.9-5.0%, with rows that are zero in some concavity columns and not
in others, which no real row is (docs/tabular-benchmark.md, *Point masses at a column's bounds*).

So a bound is modelled as a missing value is: a ±1 indicator feature per bound (+1: the row is on it), decided at a
threshold calibrated on a sample of the trained model so that generated rows hold the training share
(`TabularPreprocessor.calibrate_missingness`), while the column's own feature is the quantile-normal value of its
other values (0, their median, on the bound's rows) and the grid is fitted on those values alone.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "BOUND_ENDS",
    "MIN_ATOM_ROWS",
    "MIN_ATOM_SHARE",
    "atom_rows",
    "bound_atoms",
    "bound_ends",
    "mark_bound_ties",
    "without_atoms",
]

# a bound is a point mass when this many training values, and this share of them, sit exactly on it
MIN_ATOM_ROWS = 3
MIN_ATOM_SHARE = 0.01
# and when enough other values are left to fit the column's quantile grid on
MIN_OTHER_ROWS = 10
# the two ends of a column, as the suffixes of their indicators' `feature_slices` keys, and the spec key of each value
BOUND_ENDS = ((":min", "min"), (":max", "max"))


def bound_atoms(finite: np.ndarray) -> list[float] | None:
    """`[low, high]`: the shares of the (finite) training values on the minimum and on the maximum that count as
    point masses (0.0 where the bound does not), or `None` when neither does. A bound counts when `MIN_ATOM_ROWS`
    values and `MIN_ATOM_SHARE` of them sit on it and it is more frequent than any value between the bounds: a floor
    or a ceiling (a concavity of 0.0, 0 mm of rain), not the end of a coarse grid whose values repeat (iris' petal
    width, 0.1 cm on 5 rows and 0.2 cm on 29; wine's magnesium, whole mg; a store id on 7 rows, as every other)."""
    n = len(finite)
    counts = np.unique(finite, return_counts=True)[1]
    inner = int(counts[1:-1].max()) if len(counts) > 2 else 0
    shares = []
    for count in (int(counts[0]), int(counts[-1])):
        shares.append(count / n if count >= max(MIN_ATOM_ROWS, MIN_ATOM_SHARE * n) and count > inner else 0.0)
    if not any(shares) or n * (1.0 - sum(shares)) < MIN_OTHER_ROWS:
        return None
    return shares


def bound_ends(spec: dict) -> list[tuple[int, str, str]]:
    """The ends of a column that are point masses: `(0 or 1, indicator suffix, spec key of the value)`."""
    shares = spec.get("atoms") or (0.0, 0.0)
    return [(end, suffix, key) for end, (suffix, key) in enumerate(BOUND_ENDS) if shares[end] > 0]


def atom_rows(values: np.ndarray, spec: dict) -> np.ndarray:
    """`[N, 2]` bools: the rows of a column's `values` on its low and on its high point mass."""
    low, high = spec.get("atoms") or (0.0, 0.0)
    with np.errstate(invalid="ignore"):
        return np.stack([(values == spec["min"]) & (low > 0), (values == spec["max"]) & (high > 0)], axis=1)


def without_atoms(values: np.ndarray, specs: list[dict]) -> np.ndarray:
    """`values` `[N, len(specs)]` with every value on a point mass set to NaN: what the quantile grid is fitted on."""
    values = values.copy()
    for j, spec in enumerate(specs):
        if spec.get("atoms"):
            values[atom_rows(values[:, j], spec).any(axis=1), j] = np.nan
    return values


def mark_bound_ties(specs: list[dict], values: np.ndarray) -> list[str]:
    """
    Point masses that fall on the same training rows as an earlier one, which then decides them:
    `spec["bound_with"] = {suffix: [column, suffix]}` (breast_cancer's six concavity columns are 0.0 on the same 13
    rows, and no real row is 0.0 in some of them only; decided apart, a trained model wrote 59 of 2,000 rows so).
    `values`: `[N, len(specs)]` training values. Returns the ties as `"b:min = a:min"` lines, for the log.
    """
    leaders: dict[bytes, tuple[str, str]] = {}
    said = []
    for j, spec in enumerate(specs):
        if not spec.get("atoms"):
            continue
        on = atom_rows(values[:, j], spec)
        for end, suffix, _ in bound_ends(spec):
            key = np.packbits(on[:, end]).tobytes()
            if key in leaders:
                spec.setdefault("bound_with", {})[suffix] = list(leaders[key])
                said.append(f"{spec['name']}{suffix} = {''.join(leaders[key])}")
            else:
                leaders[key] = (spec["name"], suffix)
    return said
