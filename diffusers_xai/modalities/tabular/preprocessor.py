"""Tables → model space and back: `TabularPreprocessor` (quantile-normal numericals, ±1 one-hot / analog-bit
categoricals, an optional conditioning column)."""

from __future__ import annotations

import logging
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from scipy.special import ndtr, ndtri

from .atoms import BOUND_ENDS, atom_rows, bound_ends, mark_bound_ties, without_atoms
from .codes import bisection_codes, codebook, leading_word_groups, level_centroids, pooled_centroids
from .columns import (
    CATEGORICAL_ENCODINGS,
    MIN_ORDERING_ROWS,
    CategoricalEncoding,
    IdPolicy,
    NanPolicy,
    auto_marginal_columns,
    check_policies,
    check_table,
    describe_column,
    groups_hold_rows,
    is_binnable,
    marginal_draws,
    mark_marginal,
    quantile_bins,
    resolve_columns,
    resolve_encoding,
    to_python,
)
from .data import load_table
from .derived import (
    argmax_values,
    derived_values,
    mark_argmax,
    mark_derived,
    mark_products,
    mark_sums,
    product_values,
    sum_values,
)
from .gaps import gap_masks, is_ruled, mark_gap_rules
from .levels import level_statistics, posterior_levels
from .nesting import allowed_levels, decoding_order, mark_nesting, nested_levels
from .orders import mark_orders, order_values, reduced_orders
from .schema import (
    decode_datetime,
    encode_datetime,
    fresh_ids,
    season_features,
    snap_to_support,
    to_season,
)

# the threshold of a missingness indicator for samplers that add noise at each step (DDPM), beside
# `missing_threshold`, the ODE samplers' (DDIM). On titanic (Age missing in 19.9% of rows), 2,000 rows read 19.6%
# missing under DDIM-50 and 11.7% under DDPM-1000 at DDIM's threshold: the two draw the indicator differently.
STOCHASTIC_THRESHOLD = "missing_threshold_stochastic"
# the calibrated thresholds of a column's bound indicators (`atoms.py`), `{":min": t, ":max": t}`, and with
# `_stochastic` those for samplers that add noise at each step
BOUND_THRESHOLDS = "bound_thresholds"
BOUND_THRESHOLDS_STOCHASTIC = f"{BOUND_THRESHOLDS}_stochastic"

__all__ = ["MISSING_SUFFIX", "QUANTILE_NORMAL_BOUND", "SEASON_SUFFIX", "TabularPreprocessor"]

logger = logging.getLogger(__name__)

# feature_slices key of a column's missingness indicator
MISSING_SUFFIX = ":missing"
# feature_slices key of a date column's season features (`schema.season_features`: two per cycle)
SEASON_SUFFIX = ":season"
# sklearn.preprocessing._data.BOUNDS_THRESHOLD and the clip values QuantileTransformer derives from it
_BOUNDS_THRESHOLD = 1e-7
_CLIP_MIN = float(ndtri(_BOUNDS_THRESHOLD - np.spacing(1)))
_CLIP_MAX = float(ndtri(1 - (_BOUNDS_THRESHOLD - np.spacing(1))))
# every feature of a preprocessed row lies in [-QUANTILE_NORMAL_BOUND, QUANTILE_NORMAL_BOUND] (about 5.1993)
QUANTILE_NORMAL_BOUND = _CLIP_MAX


def _level_generators(seed: Any, num_rows: int) -> np.random.Generator | list[np.random.Generator]:
    """The generator of the posterior level draws: one for the rows, or one per row from per-row seeds."""
    if seed is None or isinstance(seed, (int, np.integer)):
        return np.random.default_rng(None if seed is None else [int(seed), 16])
    seeds = [int(s) for s in seed]
    if len(seeds) != num_rows:
        raise ValueError(f"Got {len(seeds)} level seeds for {num_rows} rows; give one seed, or one per row.")
    return [np.random.default_rng([s, 16]) for s in seeds]


def _spelled_levels(levels: list, values: Any) -> list:
    """`values` with each string that is not itself a level but the text of exactly one level (`"1"` for the level
    `1`, as a command line or a form gives it) replaced by that level."""
    texts = pd.Series([str(c) for c in levels]).value_counts()
    by_text = {str(c): c for c in levels if texts[str(c)] == 1}
    return [by_text.get(v, v) if isinstance(v, str) and v not in levels else v for v in values]


def _column_specs(
    df: pd.DataFrame,
    categorical_columns: list[str] | None,
    condition_column: str | None,
    categorical_encoding: CategoricalEncoding,
    nan_policy: NanPolicy,
    id_columns: IdPolicy,
    condition_bins: int,
    marginal_columns: list[str] | Literal["auto"] | None,
    derived_columns: bool = True,
) -> list[dict]:
    """Each column's kind, encoding and spec (the config's `columns`), from the arguments of
    [`TabularPreprocessor.fit`], with their checks: the part of the fit that reads no numbers' quantiles."""
    categorical_columns = list(categorical_columns or [])
    binned = condition_column is not None and is_binnable(df, condition_column, categorical_columns, condition_bins)
    if condition_column is not None and not binned and condition_column not in categorical_columns:
        categorical_columns.append(condition_column)
    unknown = [c for c in categorical_columns if c not in df.columns]
    if unknown:
        raise ValueError(f"Columns {unknown} are not in the table; its columns are {df.columns.tolist()}.")
    check_policies(nan_policy, id_columns)
    if condition_column is not None and df[condition_column].isna().any():
        raise ValueError(
            f"The condition column {condition_column!r} has {int(df[condition_column].isna().sum())} missing "
            "values; drop those rows (df.dropna(subset=[...])) or fill them with a level of their own first."
        )
    columns = [
        describe_column(str(name), df[name], name in categorical_columns, name == condition_column)
        for name in df.columns
    ]
    if marginal_columns == "auto":
        marginal_columns = auto_marginal_columns(columns, categorical_encoding, condition_column)
        for name in marginal_columns:
            logger.warning(
                f"Column {name!r} has more levels than half its rows and their first words do not repeat (a "
                "name, an address): drawn from its training frequencies outside the model (marginal_columns: "
                "auto; pass a list of the columns to draw so, or [] to model every column)."
            )
    elif isinstance(marginal_columns, str):
        raise ValueError(
            f'`marginal_columns` must be a list of column names, "auto" or None, got {marginal_columns!r}.'
        )
    mark_marginal(columns, list(marginal_columns or []), condition_column)
    if derived_columns:  # before the encodings: a derived column has none
        mark_derived(columns, df, condition_column)
        mark_sums(columns, df, condition_column)
        mark_products(columns, df, condition_column)
        mark_argmax(columns, df, condition_column)
    resolve_columns(columns, df, categorical_encoding, nan_policy, id_columns)
    if binned:
        spec = next(c for c in columns if c["name"] == condition_column)
        spec.update(quantile_bins(spec, df[condition_column], condition_bins))
    if derived_columns:
        if mark_orders(columns, df):
            shown = ", ".join(f"{low!r} <= {high!r}" for low, high in reduced_orders(columns))
            logger.info(f"Orders that hold on every row, kept on generated rows: {shown}.")
        mark_gap_rules(columns, df)
        mark_nesting(columns, df, condition_column)
    return columns


# the rate at the ODE samplers' threshold holds on a noise-adding sampler's rows when within this many standard errors
RATE_HOLDS_SE = 3.0


def _rate_holds(score: np.ndarray, threshold: float | None, rate: float) -> bool:
    """Whether `score > threshold` gives the missing `rate` within `RATE_HOLDS_SE` binomial standard errors (titanic's
    `Embarked`, 2 gaps in 891 rows: DDPM rows at DDIM's threshold read 0 of 891; recalibrated on 2,000 rows, whose
    0.28% quantile rests on 6 of them, 8 of 891)."""
    if threshold is None:
        return False
    return abs(float(np.mean(score > threshold)) - rate) <= RATE_HOLDS_SE * np.sqrt(rate * (1 - rate) / len(score))


def _calibrated_threshold(score: np.ndarray, rate: float, ode_threshold: float | None, stochastic: bool) -> float:
    """The threshold above which `rate` of an indicator's `score`s lie; for a noise-adding sampler the ODE samplers'
    threshold where it already gives the rate (`_rate_holds`): a tail quantile of a rare gap moves more than the rate
    does."""
    if stochastic and _rate_holds(score, ode_threshold, rate):
        return ode_threshold
    return float(np.quantile(score, 1 - rate))


class TabularPreprocessor(ModelMixin, ConfigMixin):
    r"""
    Maps a table to the Gaussian-diffusion space of [`TabularDenoiser`] and back, with the table's exact schema.

    - **Numerical** columns (float and int) go through a quantile transform to a standard normal, as in TabDDPM
      ([Kotelnikov et al., 2023](https://arxiv.org/abs/2209.15421)). It is *fitted* with scikit-learn's
      `QuantileTransformer`; its fitted `quantiles_` and `references_` are stored as float64 buffers (safetensors)
      and the transformer is rebuilt from them, so a reloaded preprocessor is bit-exact and nothing is pickled.
      Samples are mapped back, clipped to the training range (SDV's `enforce_min_max_values`), rounded to the
      column's learned number of decimals (SDV's `learn_rounding_scheme`: 12.8 stays 12.8, not 12.8392...), snapped
      to the observed values when a column has only a few (at most 20, and at most a quarter of the rows) or repeats
      its values on a sparse lattice (temperatures converted from whole °F: `schema.learn_lattice`), and cast back
      (ints stay ints).
    - **Dates and times** (datetime64 columns, and string columns whose values all parse with one format) are
      modelled as numbers in their coarsest exact unit (years, months, days, ..., nanoseconds) and written back in
      the original dtype or string format; one spanning at least two years in a unit finer than a month also
      carries its time of year as two features (sine and cosine, after the missingness indicators), one spanning two
      days in a unit finer than a day its time of day, and a generated date is written at the times they give
      (`schema.seasonal_cycles`).
    - **Categorical** columns (object/str, `category`, bool, or any column listed in `categorical_columns`) are
      embedded as ±1 codes *inside the Gaussian process*: one-hot (width K) or analog bits (width ⌈log2 K⌉, Chen et
      al. 2023, https://arxiv.org/abs/2208.04202) and decoded to the nearest code. `categorical_encoding="auto"`
      (default) picks one-hot up to 32 levels and analog bits above, per column, and logs the switch; above 32 the
      codes are assigned by the levels' numerical centroids (`"analog_bits_ordered"`: neighbouring levels share
      leading bits), not by sorted label, which left the denoiser a jagged map from bits to numbers; in a column of
      mostly once-seen levels (names) a level seen once is placed by its first word's rows (a car's make), never by
      its one row, or, when first words do not repeat either, the column keeps sorted labels. Generated rows
      (the pipeline: `inverse_transform(..., levels="posterior")`) draw the level of a column ordered by its own
      rows from p(level | the row's generated numbers and bits) under per-level Gaussians (`levels.py`), so that a
      state goes with its coordinates. TabDDPM
      instead runs a separate multinomial diffusion for them; we keep one Gaussian process so that every diffusers
      scheduler (DDPM, DDIM, DPM-Solver), the trace and gradient attributions w.r.t. $x_t$ apply to every column.
    - **Identifier** columns (all values present and unique: strings, or integers forming a contiguous range) carry
      no distribution and would be copied row for row: they are not modelled; `id_columns="regenerate"` (default)
      writes fresh unique values in the same format, `"drop"` leaves them out. Both log a warning.
    - **Marginal** columns (`marginal_columns`: names or addresses of mostly once-seen levels, listed, or chosen by
      `"auto"`, the training recipe's default) are not modelled either: each generated row draws their level from
      the training frequencies.
    - **Derived** columns (`derived_columns`, on by default), which a categorical column whose levels hold rows of
      their own determines on every training row (a country's continent and ISO code), are written from that column's
      generated level (`derived.mark_derived`), so generated rows keep the dependency; and **sums**, numerical
      columns that equal the sum of other numerical columns on every training row (a total and its parts), are
      written as that sum (`derived.mark_sums`); and **products**, numerical columns that equal the product of two
      (or three) other numerical columns on every training row (an amount, its price and its quantity; star98's
      interaction columns), are written as that product (`derived.mark_products`); and **winners**, categorical
      columns that name the largest of the numerical columns they name on every training row, are written as that
      name (`derived.mark_argmax`). A column of mostly once-seen levels cannot decide another that way (one row
      agrees with anything); when each of its levels still goes with one level of a coarser categorical column (a
      car's name with its origin; evidence from its repeated levels, `nesting.mark_nesting`), the coarse column stays
      modelled and a generated row whose decoded level goes with another coarse level draws one that goes with its
      own, by training frequency (`nesting.nested_levels`).
    - **Constant** columns are kept and written back as they were.
    - An optional **condition column** (categorical) is taken out of the features and given to the denoiser as
      `class_labels`; its empirical class frequencies are stored to sample labels when none are given.

    Missing values: `nan_policy="model"` (default) adds one ±1 missingness indicator per column that has NaNs (as
    SDV's `missing_value_generation="random"` and synthcity do), fills the value itself with the training median /
    most frequent level, and writes NaN wherever the generated indicator is positive, so synthetic tables carry
    missing values at the real rate and jointly with the other columns. `"impute"` fills NaNs and never generates
    them; `"raise"` refuses them, naming the columns.

    The preprocessor is a diffusers `ModelMixin` only to reuse its persistence (config JSON + safetensors), which
    is what lets `DiffusionPipeline.save_pretrained`/`from_pretrained` save and load it as a pipeline component.
    Build it with [`TabularPreprocessor.fit`].

    Example:

    ```py
    >>> pre = TabularPreprocessor.fit(load_wine_frame(), condition_column="cultivar")
    >>> x0 = pre.transform(load_wine_frame()); x0.shape, pre.feature_slices["alcohol"]
    >>> pre.inverse_transform(x0, class_labels=pre.encode_labels(load_wine_frame()["cultivar"])).dtypes
    ```
    """

    _supports_gradient_checkpointing = False

    @register_to_config
    def __init__(
        self,
        columns: list[dict] | None = None,
        categorical_encoding: CategoricalEncoding = "onehot",
        condition_column: str | None = None,
        n_quantiles: int = 10,
        nan_policy: NanPolicy = "raise",
        id_columns: IdPolicy = "regenerate",
        num_rows: int | None = None,
    ):
        super().__init__()
        if categorical_encoding not in CATEGORICAL_ENCODINGS:
            raise ValueError(
                f"`categorical_encoding` must be one of {list(CATEGORICAL_ENCODINGS)}, got {categorical_encoding!r}."
            )
        check_policies(nan_policy, id_columns)
        self.columns = [dict(c) for c in (columns or [])]
        if condition_column is not None:
            spec = next((c for c in self.columns if c["name"] == condition_column), None)
            if spec is None or not (spec["kind"] == "categorical" or spec.get("bins")):
                raise ValueError(
                    f"`condition_column` {condition_column!r} must be one of the categorical columns or a binned "
                    "numerical one."
                )
        self.numerical = [c for c in self.columns if c["kind"] == "numerical"]
        self._numerical_index = {c["name"]: j for j, c in enumerate(self.numerical)}
        self.categorical = [c for c in self.columns if c["kind"] == "categorical" and c["name"] != condition_column]
        self.condition = next((c for c in self.columns if c["name"] == condition_column), None)
        self.missing = [c for c in self.columns if c.get("missing")]
        for c in self.categorical:  # saved before per-column encodings existed: the config's one
            c.setdefault("encoding", resolve_encoding(categorical_encoding, len(c["categories"])))
        self.codebooks = {
            c["name"]: codebook(len(c["categories"]), c["encoding"], c.get("codes")) for c in self.categorical
        }
        self.feature_slices: dict[str, slice] = {}
        start = 0
        for c in self.numerical:
            self.feature_slices[c["name"]] = slice(start, start + 1)
            start += 1
        for c in self.categorical:
            width = self.codebooks[c["name"]].shape[1]
            self.feature_slices[c["name"]] = slice(start, start + width)
            start += width
        for c in self.missing:  # the missingness indicators, after every column's own features
            self.feature_slices[f"{c['name']}{MISSING_SUFFIX}"] = slice(start, start + 1)
            start += 1
        self.seasonal = [c for c in self.numerical if c.get("season")]
        for c in self.seasonal:  # then the dates' season features (sin, cos per cycle)
            self.feature_slices[f"{c['name']}{SEASON_SUFFIX}"] = slice(start, start + 2 * len(c["season"]))
            start += 2 * len(c["season"])
        self.bounded = [c for c in self.numerical if c.get("atoms")]
        for c in self.bounded:  # last, the ±1 indicators of point masses at a column's bounds (`atoms.py`)
            for _, suffix, _ in bound_ends(c):
                self.feature_slices[f"{c['name']}{suffix}"] = slice(start, start + 1)
                start += 1
        self.num_features = start
        self.column_names = [c["name"] for c in self.columns]
        # the fitted QuantileTransformer, as data (filled by `fit` or by `from_pretrained`'s state dict)
        self.register_buffer("quantiles", torch.zeros(n_quantiles, len(self.numerical), dtype=torch.float64))
        self.register_buffer("references", torch.zeros(n_quantiles, dtype=torch.float64))

    # ---- fitting ----
    @classmethod
    def fit(
        cls,
        data: Any,
        categorical_columns: list[str] | None = None,
        condition_column: str | None = None,
        categorical_encoding: CategoricalEncoding = "auto",
        nan_policy: NanPolicy = "model",
        n_quantiles: int | None = None,
        seed: int = 0,
        id_columns: IdPolicy = "regenerate",
        condition_bins: int = 10,
        marginal_columns: list[str] | Literal["auto"] | None = None,
        derived_columns: bool = True,
    ) -> TabularPreprocessor:
        """
        Learn the schema and the quantile transform of a table.

        Args:
            data (`pd.DataFrame`, path, built-in name or `datasets.Dataset`): the training table (see [`load_table`]).
            categorical_columns (`list[str]`, *optional*): columns to treat as categorical although numeric
                (e.g. an integer class code). Object, string, `category` and bool columns always are, unless their
                strings are dates.
            condition_column (`str`, *optional*): a column to condition on (given as `class_labels`): categorical, or
                numerical with more than `condition_bins` distinct values, which is then binned at its quantiles
                (the bin is the class; the value itself is still generated, inside the bin).
            categorical_encoding (`"auto"`, `"onehot"`, `"analog_bits"` or `"analog_bits_ordered"`, *optional*,
                defaults to `"auto"`): `"analog_bits"` gives level i (sorted labels) the bits of i;
                `"analog_bits_ordered"` assigns the same ⌈log2 K⌉-bit codes by the levels' geometry: each level's
                centroid in the training rows' quantile-normal numericals, split recursively at the median of the
                first principal axis, one bit per split (`codes.bisection_codes`), so that levels that are close in
                the data (neighbouring states) share their leading bits and each bit is a half-space the denoiser
                can learn; the codes are stored in the config. `"auto"` is one-hot up to 32 levels and
                `"analog_bits_ordered"` above, per column; when most levels occur once (names), a level seen once is
                placed by the centroid of its first word's rows (a car's make) if first words repeat, else the
                column keeps sorted-label `"analog_bits"`.
            nan_policy (`"model"`, `"impute"` or `"raise"`, *optional*, defaults to `"model"`): see the class doc.
            n_quantiles (`int`, *optional*): defaults to TabDDPM's `max(min(N // 30, 1000), 10)`.
            seed (`int`, *optional*, defaults to 0): `random_state` of the `QuantileTransformer`.
            id_columns (`"regenerate"` or `"drop"`, *optional*, defaults to `"regenerate"`): what to write for
                identifier columns (all values unique), which are never modelled.
            condition_bins (`int`, *optional*, defaults to 10): quantile bins of a numerical `condition_column`.
            marginal_columns (`list[str]` or `"auto"`, *optional*): categorical columns drawn from their training
                frequencies, each row independently, outside the model (see [`mark_marginal`]): names or addresses
                whose levels nearly all occur once, which a model can learn only by learning its rows. `"auto"` (the
                training recipe's default): the columns of [`auto_marginal_columns`].
            derived_columns (`bool`, *optional*, defaults to `True`): columns that a categorical column determines on
                every training row (a country's continent and ISO code) are written from its generated level
                instead of modelled (see [`mark_derived`]), a column that is the sum of others on every training
                row is written as their sum (see [`mark_sums`]), one that is the product of others as their product
                (see [`mark_products`]), and one that names the largest of the columns it names, as that name (see
                [`mark_argmax`]); orders between columns and gaps another column decides are kept, and a column of
                mostly once-seen levels nested in a coarser one's levels follows them (see [`mark_nesting`]).
        """
        from sklearn.preprocessing import QuantileTransformer

        df = load_table(data)
        check_table(df)
        columns = _column_specs(
            df,
            categorical_columns,
            condition_column,
            categorical_encoding,
            nan_policy,
            id_columns,
            condition_bins,
            marginal_columns,
            derived_columns,
        )
        numerical = [c["name"] for c in columns if c["kind"] == "numerical"]
        if n_quantiles is None:
            n_quantiles = max(min(len(df) // 30, 1000), 10)
        n_quantiles = int(min(n_quantiles, len(df)))
        pre = cls(
            columns=columns,
            categorical_encoding=categorical_encoding,
            condition_column=condition_column,
            n_quantiles=n_quantiles,
            nan_policy=nan_policy,
            id_columns=id_columns,
            num_rows=len(df),  # the training rows (`hidden_dims: auto` sizes the denoiser by them)
        )
        if numerical:
            raw = pre._numerical_values(df, fill=False)
            ties = mark_bound_ties(pre.numerical, raw) if derived_columns else []
            if ties:
                logger.info(f"Point masses on the same rows, the first deciding: {', '.join(ties)}.")
                pre.register_to_config(columns=[dict(c) for c in pre.columns])
            values = without_atoms(raw, pre.numerical)
            qt = QuantileTransformer(
                n_quantiles=n_quantiles, output_distribution="normal", subsample=10**9, random_state=seed
            ).fit(values)  # NaNs are ignored by the fit (np.nanpercentile)
            pre.quantiles.copy_(torch.from_numpy(np.ascontiguousarray(qt.quantiles_)))
            pre.references.copy_(torch.from_numpy(np.ascontiguousarray(qt.references_)))
        pre._order_levels(df)
        return pre

    def _order_levels(self, df: pd.DataFrame) -> None:
        """The codes of the `analog_bits_ordered` columns, from their levels' centroids in the quantile-normal
        numericals of `df` (the training rows), written into the column specs, the codebooks and the config. With
        no numerical column there is no geometry: the sorted-label order is kept (and said); so it is under `auto`
        for a column whose median level occurs fewer than `MIN_ORDERING_ROWS` (2) times (names, near-identifiers),
        where a centroid is one row's numbers."""
        ordered = [c for c in self.categorical if c["encoding"] == "analog_bits_ordered"]
        if not ordered:
            return
        if not self.numerical:
            logger.info(f"No numerical columns to order {[c['name'] for c in ordered]} by: sorted-label codes.")
            return
        values = self._normal(self._numerical_values(df))
        for c in ordered:
            index = self._category_indices(self._filled(df, c), c)
            centroids, counts = level_centroids(index, values, len(c["categories"]))
            if np.median(counts) >= MIN_ORDERING_ROWS:  # levels with rows of their own: `posterior` decoding
                observed = np.where(df[c["name"]].isna().to_numpy(), -1, index)
                c["level_stats"] = level_statistics(observed, values, len(c["categories"]), MIN_ORDERING_ROWS)
            elif self.config.categorical_encoding == "auto":
                centroids = self._pooled_by_leading_word(c, centroids, counts)
                if centroids is None:
                    c["encoding"] = "analog_bits"
                    continue
            c["codes"] = bisection_codes(centroids, counts)
            self.codebooks[c["name"]] = codebook(len(c["categories"]), c["encoding"], c["codes"])
        self.register_to_config(columns=[dict(c) for c in self.columns])

    @staticmethod
    def _pooled_by_leading_word(spec: dict, centroids: np.ndarray, counts: np.ndarray) -> np.ndarray | None:
        """Centroids to order a near-unique column's codes by (`auto`, median level seen once), or `None` for
        sorted-label codes. A level's own centroid is then one training row's numbers, and codes ordered by it tie
        the level to that row (vega cars' 223 `Name`s in 274 rows: DCR ratio 1.016 -> 0.971 and 1.027 -> 0.924 at
        seeds 0 and 1, detection AUC 0.772 -> 0.792 and 0.723 -> 0.779). When the levels' first words repeat (the
        median first word has `MIN_ORDERING_ROWS` rows: cars' 35 makes, 5 rows each), levels are ordered by
        `pooled_centroids`: their own if seen that often, else their first word's, so the leading bits follow the
        makes' geometry and no single row's; otherwise (airports' names and cities) sorted labels."""
        groups = leading_word_groups(spec["categories"])
        if not groups_hold_rows(groups, counts):
            logger.info(f"Column {spec['name']!r}: most levels occur once, sorted-label analog bits.")
            return None
        pooled, own = pooled_centroids(centroids, counts, groups, MIN_ORDERING_ROWS)
        words = int(groups.max()) + 1  # group indices run 0..G-1 in order of first appearance
        logger.info(
            f"Column {spec['name']!r}: most levels occur once; codes ordered by the centroids of the {own} levels "
            f"seen at least {MIN_ORDERING_ROWS} times and of the other levels' first words ({words} groups)."
        )
        return pooled

    def _normal(self, values: np.ndarray) -> np.ndarray:
        """The numerical columns' features of filled `values` `[N, len(numerical)]`: quantile-normal, and 0 (the
        median of a column's other values) on a point mass at one of its bounds, which its indicator carries."""
        normal = self._quantile_normal(values)
        for j, c in enumerate(self.numerical):
            if c.get("atoms"):
                normal[atom_rows(values[:, j], c).any(axis=1), j] = 0.0
        return normal

    def _quantile_normal(self, values: np.ndarray, inverse: bool = False) -> np.ndarray:
        """
        scikit-learn's `QuantileTransformer(output_distribution="normal")` transform (or its inverse), computed from
        the stored `quantiles_`/`references_`.

        This reproduces `QuantileTransformer._transform_col` line by line, with `scipy.special.ndtri`/`ndtr` in
        place of `scipy.stats.norm.ppf`/`cdf` (the functions those call): the stats wrappers cost about 4 ms per
        column per call, which made the per-batch transform of the training loop 10x slower than the training
        step itself. `tests/test_tabular_preprocessor.py` checks that the result equals sklearn's exactly.
        """
        quantiles = self.quantiles.detach().cpu().numpy().astype(np.float64)
        references = self.references.detach().cpu().numpy().astype(np.float64)
        out = np.array(values, dtype=np.float64, copy=True)
        for j in range(out.shape[1]):
            col, q = out[:, j], quantiles[:, j]
            with np.errstate(invalid="ignore"):
                if inverse:
                    col = ndtr(col)
                    lower_x, upper_x, lower_y, upper_y = 0.0, 1.0, q[0], q[-1]
                else:
                    lower_x, upper_x, lower_y, upper_y = q[0], q[-1], 0.0, 1.0
                lower = col - _BOUNDS_THRESHOLD < lower_x
                upper = col + _BOUNDS_THRESHOLD > upper_x
            finite = ~np.isnan(col)
            if inverse:
                col[finite] = np.interp(col[finite], references, q)
            else:
                # mean of the ascending and descending interpolation, for repeated quantiles
                col[finite] = 0.5 * (
                    np.interp(col[finite], q, references) - np.interp(-col[finite], -q[::-1], -references[::-1])
                )
            col[upper] = upper_y
            col[lower] = lower_y
            if not inverse:
                with np.errstate(invalid="ignore", divide="ignore"):
                    col = np.clip(ndtri(col), _CLIP_MIN, _CLIP_MAX)
            out[:, j] = col
        return out

    # ---- properties ----
    def _bin_indices(self, values: Any) -> np.ndarray:
        """Values of a binned numerical condition column → bin indices (values outside the range: the end bins)."""
        spec = self.condition
        numbers = encode_datetime(pd.Series(values), spec["datetime"]) if spec.get("datetime") else None
        numbers = numbers if numbers is not None else pd.to_numeric(pd.Series(values), errors="coerce").to_numpy()
        if np.isnan(numbers).any():
            raise ValueError(
                f"Values of the binned condition column {spec['name']!r} must be numbers, got {values!r}."
            )
        inner = np.asarray(spec["bins"][1:-1], dtype=np.float64)
        return np.searchsorted(inner, numbers, side="right").astype(np.int64)

    @property
    def num_classes(self) -> int | None:
        """Number of levels of the condition column (the denoiser's `num_class_embeds`, one more with a null class), or
        `None`."""
        return len(self.condition["categories"]) if self.condition is not None else None

    @property
    def class_probabilities(self) -> torch.Tensor | None:
        """Training frequencies of the condition column's levels, `[num_classes]`."""
        if self.condition is None:
            return None
        counts = torch.tensor(self.condition["counts"], dtype=torch.float64)
        return counts / counts.sum()

    def feature_names(self) -> list[str]:
        """One name per model feature: the column name, with `=level` (one-hot) or `#bit` (analog bits), and
        `=NaN` for missingness indicators, `@cycle:sin|cos` for a date's season and `=value` for a point mass at a
        bound."""
        names = [c["name"] for c in self.numerical]
        for c in self.categorical:
            if c["encoding"] == "onehot":
                names += [f"{c['name']}={v}" for v in c["categories"]]
            else:
                names += [f"{c['name']}#{b}" for b in range(self.codebooks[c["name"]].shape[1])]
        names += [f"{c['name']}=NaN" for c in self.missing]
        names += [
            f"{c['name']}@{cycle}:{part}" for c in self.seasonal for cycle, _ in c["season"] for part in ("sin", "cos")
        ]
        return names + [f"{c['name']}={c[key]:g}" for c in self.bounded for _, _, key in bound_ends(c)]

    def column_slices(self, name: str) -> list[slice]:
        """The model features written from column `name`: its own, then a date's season features and the indicators
        of its bounds' point masses (not its missingness indicator, which [`feature_slices`] keys apart)."""
        keys = [name, f"{name}{SEASON_SUFFIX}", *(f"{name}{suffix}" for suffix, _ in BOUND_ENDS)]
        return [self.feature_slices[key] for key in keys if key in self.feature_slices]

    # ---- table -> model space ----
    def _check_frame(self, df: pd.DataFrame, needed: list[dict]) -> None:
        absent = [c["name"] for c in needed if c["name"] not in df.columns]
        if absent:
            raise ValueError(
                f"The table lacks columns {absent} that this preprocessor was fitted on; its columns are "
                f"{df.columns.tolist()}."
            )

    def _missing_error(self, name: str, count: int) -> ValueError:
        return ValueError(
            f"Column {name!r} has {count} missing values and this preprocessor was fitted on a column without any "
            f"(nan_policy={self.config.nan_policy!r}); drop those rows (df.dropna()) or refit on data with missing "
            "values (nan_policy='model' or 'impute')."
        )

    def _can_fill(self, spec: dict) -> bool:
        return self.config.nan_policy == "impute" or bool(spec.get("missing"))

    def _numerical_values(self, df: pd.DataFrame, fill: bool = True) -> np.ndarray:
        """The numerical columns, float64 `[N, len(numerical)]` (dates as numbers); NaNs filled unless `fill=False`."""
        columns = []
        for c in self.numerical:
            col = df[c["name"]]
            if col.isna().all():  # rows where it is empty: a batch of `datasets` rows holds None, typed object
                columns.append(np.full(len(col), np.nan))
            elif c.get("datetime"):
                columns.append(encode_datetime(col, c["datetime"]))
            elif not pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col):
                raise TypeError(f"Numerical column {c['name']!r} holds non-numeric values; convert them to numbers.")
            else:
                columns.append(col.to_numpy(dtype=np.float64, na_value=np.nan))
        values = np.stack(columns, axis=1)
        return self._fill_missing(values) if fill else values

    def _fill_missing(self, values: np.ndarray) -> np.ndarray:
        """`values` (`_numerical_values(df, fill=False)`) with each NaN replaced by its column's fill value; raises for
        a column whose policy does not fill."""
        missing = np.isnan(values)
        if missing.any():
            counts = missing.sum(axis=0)
            for j in np.flatnonzero(counts):
                if not self._can_fill(self.numerical[j]):
                    raise self._missing_error(self.numerical[j]["name"], int(counts[j]))
            fill_values = np.array([c["fill"] for c in self.numerical])
            values = np.where(missing, fill_values[None, :], values)
        return values

    def _filled(self, df: pd.DataFrame, spec: dict) -> pd.Series:
        col = df[spec["name"]]
        if col.isna().any():
            if not self._can_fill(spec):
                raise self._missing_error(spec["name"], int(col.isna().sum()))
            col = col.astype(object).where(col.notna(), spec["fill"])
        return col

    def _category_indices(self, series: pd.Series, spec: dict, unseen_levels: str = "raise") -> np.ndarray:
        lookup = {v: i for i, v in enumerate(spec["categories"])}
        values = [to_python(v, spec["name"]) for v in series.tolist()]
        unseen = sorted({v for v in values if v not in lookup}, key=str)
        if unseen and unseen_levels == "nearest":
            return np.asarray([lookup.get(v, self._nearest_level(v, spec)) for v in values], dtype=np.int64)
        if unseen:
            raise ValueError(
                f"Column {spec['name']!r} has levels {unseen[:5]} unseen at fit time (known: {spec['categories']}); "
                "map them to known levels or refit the preprocessor on data that contains them."
            )
        return np.asarray([lookup[v] for v in values], dtype=np.int64)

    @staticmethod
    def _nearest_level(value: Any, spec: dict) -> int:
        """An unseen level's stand-in: the nearest known number (a few-valued number column), else the mode."""
        numbers = [c for c in spec["categories"] if isinstance(c, (int, float)) and not isinstance(c, bool)]
        if isinstance(value, (int, float)) and not isinstance(value, bool) and len(numbers) == len(spec["categories"]):
            return int(np.argmin(np.abs(np.asarray(numbers, dtype=np.float64) - float(value))))
        return spec["categories"].index(spec["fill"])

    def transform(self, data: Any, unseen_levels: Literal["raise", "nearest"] = "raise") -> torch.Tensor:
        """
        The features $x_0$ of every row, `[N, num_features]` float32: quantile-normal numericals, the ±1 codes of
        the categoricals, then the ±1 missingness indicators (+1 = missing), the dates' season features and the ±1
        indicators of point masses at a column's bounds (+1 = on it; `atoms.py`); see `feature_slices`. The condition
        column is not included (see `encode_labels`); identifier and constant columns are not needed.

        A level not seen at fit time raises, unless `unseen_levels="nearest"`: then it is encoded as the nearest
        known level of a few-valued number column (iris' sepal width 2.0 as 2.2) or as the most frequent level. That
        is for held-out rows scored against a model (the trainer's validation loss), never for rows to train on.
        """
        if unseen_levels not in ("raise", "nearest"):
            raise ValueError(f"`unseen_levels` must be 'raise' or 'nearest', got {unseen_levels!r}.")
        df = load_table(data)
        self._check_frame(df, self.numerical + self.categorical + self.missing)
        parts = []
        raw = self._numerical_values(df, fill=False) if self.numerical else None  # dates encoded once
        if self.numerical:
            parts.append(self._normal(self._fill_missing(raw)))
        for c in self.categorical:
            parts.append(self.codebooks[c["name"]][self._category_indices(self._filled(df, c), c, unseen_levels)])
        for c in self.missing:
            parts.append(np.where(df[c["name"]].isna().to_numpy(), 1.0, -1.0)[:, None])
        for c in self.seasonal:  # the date's own numbers (NaN where missing: no season)
            parts.append(season_features(raw[:, self._numerical_index[c["name"]]], c["season"]))
        for c in self.bounded:
            on = atom_rows(raw[:, self._numerical_index[c["name"]]], c)
            parts += [np.where(on[:, end], 1.0, -1.0)[:, None] for end, _, _ in bound_ends(c)]
        x = np.concatenate(parts, axis=1) if parts else np.zeros((len(df), 0))
        return torch.from_numpy(x.astype(np.float32))

    def encode_labels(self, values: Any) -> torch.Tensor:
        """Condition-column values (or a table holding that column) → `[N]` long class indices. A string that is not
        itself a level but is the text of exactly one level (`"1"` for the level `1`, as a command line or a form
        gives it) stands for that level."""
        if self.condition is None:
            raise ValueError(
                "This preprocessor has no condition column; fit it with condition_column=... to condition."
            )
        if isinstance(values, pd.DataFrame):
            self._check_frame(values, [self.condition])
            values = values[self.condition["name"]]
        if self.condition.get("bins"):
            return torch.from_numpy(self._bin_indices(list(values)))
        values = _spelled_levels(self.condition["categories"], values)
        return torch.from_numpy(self._category_indices(pd.Series(values, dtype=object), self.condition))

    @property
    def level_columns(self) -> list[dict]:
        """The generated columns of levels a row can be asked to hold ([`column_levels`], `sample_with_values`, the
        Space's *Rows with a given value*): the modelled categorical columns (not the condition column), then those
        written from other columns (a country's continent, a winner)."""
        written = [c for c in self.columns if c["kind"] in ("derived", "argmax") and "categories" in c]
        return self.categorical + written

    def column_levels(self, column: str, values: Any) -> pd.Series:
        """
        The levels of the generated categorical column `column` that `values` name, in the column's dtype (a string
        that is the text of exactly one level stands for it, as in [`encode_labels`]): what rows kept by rejection
        must hold. `ValueError` naming the column or value and the fix for the condition column, a numerical,
        identifier or unknown column, or a value that is not one of the column's levels.
        """
        spec = next((c for c in self.level_columns if c["name"] == column), None)
        if spec is None:
            raise ValueError(self._not_a_level_column(column))
        levels = spec["categories"]
        values = _spelled_levels(levels, values)
        unknown = [v for v in values if v not in levels]
        if unknown:
            raise ValueError(
                f"Column {column!r} has no level {unknown[0]!r} (its levels: {levels}); give one of them."
            )
        return self._restore_dtype(values, spec)

    def _not_a_level_column(self, column: str) -> str:
        names = [c["name"] for c in self.categorical]
        if self.condition is not None and column == self.condition["name"]:
            return (
                f"{column!r} is the model's condition column: it samples its values exactly; pass them as "
                "`class_labels` alone (drop --given_column)."
            )
        if any(c["name"] == column for c in self.numerical):
            return (
                f"Column {column!r} is numerical: its continuous values never equal a given value; train with "
                f"`condition_column: {column}` (binned by `condition_bins`) to condition on it, or give a "
                f"categorical column ({names})."
            )
        if not names:
            message = f"{column!r} is not a generated categorical column: this table generates none"
            if self.condition is not None:
                condition = self.condition["name"]
                message += f" (its condition column {condition!r}: pass its values as `class_labels` alone)"
            return message + "."
        return f"{column!r} is not a generated categorical column of this table; give one of {names}."

    # ---- model space -> table ----
    def _decode_categorical(self, x: np.ndarray, spec: dict) -> np.ndarray:
        # nearest ±1 code: all codes have the same norm, so the nearest is the one with the largest inner product
        return np.argmax(x @ self.codebooks[spec["name"]].T, axis=1)

    def _restore_dtype(self, values: list | np.ndarray, spec: dict) -> pd.Series:
        dtype = spec["dtype"]
        if dtype == "category":
            return pd.Series(pd.Categorical(values, categories=spec.get("categories")))
        if dtype in ("object", "str", "string"):
            return pd.Series(list(values), dtype=object if dtype != "string" else "string")
        return pd.Series(values).astype(dtype)

    def _round(self, values: np.ndarray, spec: dict) -> np.ndarray:
        """Decoded numbers on the column's grid: observed values, q-ths, its step, whole date units, ints, decimals."""
        observed = spec.get("support") or spec.get("lattice")
        if observed:
            return snap_to_support(values, observed)
        if spec.get("denominator"):  # whole q-ths, as k / q is written (then its decimals, if it has them)
            values = np.rint(values * spec["denominator"]) / spec["denominator"]
            return values if spec.get("decimals") is None else np.round(values, spec["decimals"])
        if spec.get("step"):  # on the column's grid: min + k * step (then its decimals, against float error)
            values = spec["min"] + np.round((values - spec["min"]) / spec["step"]) * spec["step"]
            return np.round(values, spec["decimals"])
        if spec.get("datetime"):
            return np.rint(values)
        if spec["integer"] or spec.get("decimals") == 0:
            return np.rint(values)
        if spec.get("decimals") is not None:
            return np.round(values, spec["decimals"])
        return values

    def _decode_numerical(self, values: np.ndarray, spec: dict) -> pd.Series:
        values = self._round(np.clip(values, spec["min"], spec["max"]), spec)
        if spec.get("datetime"):
            return decode_datetime(values, spec["datetime"], spec["dtype"])
        return self._restore_dtype(values, spec)

    def _decode_other(self, spec: dict, row_indices: np.ndarray) -> pd.Series:
        """Constant and identifier columns, which have no features."""
        num_rows = len(row_indices)
        if spec["kind"] == "constant":
            if spec.get("datetime"):
                return decode_datetime(
                    np.full(num_rows, spec["value"], dtype=np.float64), spec["datetime"], spec["dtype"]
                )
            return self._restore_dtype([spec["value"]] * num_rows, spec)
        return self._restore_dtype(fresh_ids(spec["id"], row_indices), spec)

    def renumber_ids(self, rows: pd.DataFrame, row_indices: Any = None) -> pd.DataFrame:
        """
        `rows` with their identifier columns (`id_columns="regenerate"`) written afresh for row numbers
        `row_indices` (default 0, 1, ...; see [`schema.fresh_ids`]): for rows gathered from several pipeline calls,
        each of which numbers its rows from 0. Other columns are untouched; returns a new frame.
        """
        indices = np.arange(len(rows)) if row_indices is None else np.asarray(row_indices, dtype=np.int64)
        if indices.shape != (len(rows),):
            raise ValueError(f"Got {indices.size} row indices for {len(rows)} rows; give one index per row.")
        rows = rows.copy()
        for c in self.columns:
            if c["kind"] == "id" and not c.get("drop") and c["name"] in rows.columns:
                rows[c["name"]] = self._decode_other(c, indices).to_numpy()
        return rows

    def inverse_transform(
        self,
        x: torch.Tensor | np.ndarray,
        class_labels: Any | None = None,
        seed: int | None = None,
        levels: Literal["nearest", "posterior"] = "nearest",
        stochastic: bool = False,
    ) -> pd.DataFrame:
        """
        Model-space rows `[N, num_features]` → a DataFrame with the original column names, order, dtypes and
        formats: categories from the fitted level sets, numericals clipped to the training range and rounded to
        their decimals, dates in their format, NaN where the missingness indicator is positive, fresh identifiers.

        Args:
            x (`torch.Tensor` or `np.ndarray` `[N, num_features]`): generated $x_0$.
            class_labels (`[N]` ints, *optional*): class indices of the condition column (required when there is one).
            seed (`int` or `Sequence[int]`, *optional*): seeds the `posterior` level draws: one seed for the rows,
                or one per row (a row's levels then do not depend on the other rows). Fresh identifiers
                (`id_columns="regenerate"`) are those of rows 0..N-1 (see [`renumber_ids`]).
            levels (`"nearest"` or `"posterior"`, *optional*, defaults to `"nearest"`): how analog-bit levels are
                decoded. `"nearest"`: the nearest code (encoded rows come back exactly). `"posterior"` (what the
                pipeline uses for generated rows): a column whose codes are ordered by its levels' own rows
                (`analog_bits_ordered`, median level seen at least twice: airports' `state`) draws its level from
                p(level | the row's generated numbers, its bits) under per-level Gaussians of the numerical columns
                (`levels.posterior_levels`), so the level goes with the numbers (a state with its coordinates).
            stochastic (`bool`, *optional*, defaults to `False`): whether `x` was drawn by a sampler that adds noise
                at each step (DDPM; `pipelines.schedulers.injects_noise`): a missing value is then decided at the
                threshold calibrated on such a sampler's rows, where one was ([`calibrate_missingness`]).
        """
        if levels not in ("nearest", "posterior"):
            raise ValueError(f"`levels` must be 'nearest' or 'posterior', got {levels!r}.")
        x = x.detach().cpu().double().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.num_features:
            raise ValueError(
                f"Expected rows of shape [N, {self.num_features}] for this preprocessor, got {x.shape}; the denoiser "
                "and the preprocessor do not match (use the preprocessor saved with the model)."
            )
        normal = np.nan_to_num(x[:, : len(self.numerical)], nan=0.0, posinf=10, neginf=-10)
        level_rng = _level_generators(seed, len(x))
        out = self._decode_levels(x, normal, class_labels, levels, level_rng)
        own = {c["name"]: self._missing_rows(x, c, stochastic) for c in self.missing if not is_ruled(c)}
        gaps = gap_masks(self.columns, out, own)  # a column's own indicator, or the column that decides its gaps
        if self.numerical:
            numbers = self._numbers(x, normal, class_labels, gaps, stochastic)
            for c in self.numerical:
                out[c["name"]] = self._decode_numerical(numbers[c["name"]], c)
        for c in self.columns:  # the columns outside the model
            if c["kind"] == "marginal":
                out[c["name"]] = self._restore_dtype(marginal_draws(c, level_rng, len(x)), c)
            elif c["kind"] in ("constant", "id") and not c.get("drop"):
                out[c["name"]] = self._decode_other(c, np.arange(len(x)))
        for c in self.columns:  # from their factors' values, first: a product can be a part of a sum
            if c["kind"] == "product":
                out[c["name"]] = self._restore_dtype(product_values(c, out), c)
        for c in self.columns:  # from their source column's generated level, or their parts' values
            if c["kind"] == "derived":
                out[c["name"]] = self._restore_dtype(derived_values(c, out[c["source"]]), c)
            elif c["kind"] == "sum":
                out[c["name"]] = self._restore_dtype(sum_values(c, out), c)
            elif c["kind"] == "argmax":
                out[c["name"]] = self._restore_dtype(argmax_values(c, out), c)
        for c in self.missing:
            out[c["name"]] = out[c["name"]].where(~gaps[c["name"]])
        return pd.DataFrame({name: out[name] for name in self.column_names if name in out})

    def _decode_levels(
        self, x: np.ndarray, normal: np.ndarray, class_labels: Any, levels: str, level_rng
    ) -> dict[str, pd.Series]:
        """The modelled categorical columns and the condition column of model-space rows (see [`inverse_transform`]
        for `levels`): decoded first, as they may decide where other columns are missing (`gaps.py`)."""
        out: dict[str, pd.Series] = {}
        if self.condition is not None and not self.condition.get("bins"):
            cats = self.condition["categories"]
            out[self.condition["name"]] = self._restore_dtype(
                [cats[i] for i in self._labels(class_labels, len(x))], self.condition
            )
        for c in decoding_order(self.categorical):
            bits = x[:, self.feature_slices[c["name"]]]
            if levels == "posterior" and c.get("level_stats"):
                idx = posterior_levels(bits, self.codebooks[c["name"]], normal, c["level_stats"], level_rng)
            else:
                idx = self._decode_categorical(bits, c)
                if c.get("within"):
                    idx = nested_levels(idx, allowed_levels(c, out, len(x)), c["counts"], level_rng)
            out[c["name"]] = self._restore_dtype([c["categories"][i] for i in idx], c)
        return out

    def _missing_rows(self, x: np.ndarray, spec: dict, stochastic: bool = False) -> np.ndarray:
        """The rows of `x` whose missingness indicator of the column marks it missing, at the threshold calibrated
        for the kind of sampler that drew them ([`calibrate_missingness`])."""
        threshold = spec.get("missing_threshold", 0.0)
        if stochastic:
            threshold = spec.get(STOCHASTIC_THRESHOLD, threshold)
        return x[:, self.feature_slices[f"{spec['name']}{MISSING_SUFFIX}"]][:, 0] > threshold

    def _numbers(
        self, x: np.ndarray, normal: np.ndarray, class_labels: Any, gaps: dict[str, np.ndarray], stochastic: bool
    ) -> dict[str, np.ndarray]:
        """The numerical columns' values of model-space rows, before rounding: the inverse quantile transform of
        `normal`, a bound where its indicator says so, a binned condition inside its bin, a date at its season's time
        of year, and the orders between columns written (`orders.order_values`, compared where both are present in
        the row: not in `gaps`)."""
        num = self._quantile_normal(normal, inverse=True)
        values = {}
        for j, c in enumerate(self.numerical):
            if c.get("atoms"):
                num[:, j] = self._on_bounds(x, num[:, j], c, stochastic)
            if c.get("bins"):  # a binned condition column: its value stays inside the bin it was sampled for
                edges = np.asarray(c["bins"])
                labels = self._labels(class_labels, len(x))
                num[:, j] = np.clip(num[:, j], edges[labels], edges[labels + 1])
            if c.get("season"):  # the time of year its season features give
                season = x[:, self.feature_slices[f"{c['name']}{SEASON_SUFFIX}"]]
                num[:, j] = to_season(num[:, j], season, c["season"], c["min"], c["max"])
            values[c["name"]] = num[:, j]
        if not any(c.get("at_least") for c in self.numerical):
            return values
        ordered = order_values({k: np.where(gaps.get(k, False), np.nan, v) for k, v in values.items()}, self.numerical)
        return {k: np.where(gaps.get(k, False), values[k], ordered[k]) for k in values}

    def _on_bounds(self, x: np.ndarray, values: np.ndarray, spec: dict, stochastic: bool) -> np.ndarray:
        """`values` of a column with point masses at its bounds, set to the bound on the rows whose indicator is above
        its calibrated threshold (the one further above where both are; [`calibrate_missingness`])."""
        margins = np.full((len(x), 2), -np.inf)
        for end, suffix, _ in bound_ends(spec):
            name, suffix = spec.get("bound_with", {}).get(suffix, (spec["name"], suffix))  # a tie: the leader decides
            leader = spec if name == spec["name"] else self.numerical[self._numerical_index[name]]
            thresholds = leader.get(BOUND_THRESHOLDS, {})
            if stochastic:
                thresholds = {**thresholds, **leader.get(BOUND_THRESHOLDS_STOCHASTIC, {})}
            margins[:, end] = x[:, self.feature_slices[f"{name}{suffix}"]][:, 0] - thresholds.get(suffix, 0.0)
        bound = np.where(margins[:, 1] > margins[:, 0], spec["max"], spec["min"])
        return np.where(margins.max(axis=1) > 0, bound, values)

    def calibrate_missingness(self, x: torch.Tensor | np.ndarray, stochastic: bool = False) -> dict[str, float]:
        """
        Set each missingness indicator's decision threshold so that the model-space rows `x` (a large sample of the
        trained model, `[N, num_features]`) have NaNs at the training rate: the `1 - rate` quantile of the indicator.

        Why: a Gaussian diffusion over a ±1 indicator that is +1 in 0.6% of the rows over-generates the rare mode
        (penguins, 1,000 steps, DDIM-50: 2.7% NaNs instead of 0.6% with the threshold at 0). The model still decides
        *which* rows are missing, jointly with the other columns; the calibration only fixes *how many*. Saved in the
        config (`missing_threshold` of each column), or, with `stochastic=True` (rows of a sampler that adds noise at
        each step, such as DDPM), as `missing_threshold_stochastic`: the two kinds of sampler draw the indicator
        differently. That one keeps the ODE threshold where it gives the rate within `RATE_HOLDS_SE` standard errors
        on `x` already. The indicators of point masses at a column's bounds (`atoms.py`) are calibrated alike, to
        their training shares (`bound_thresholds`, keyed `":min"`/`":max"`). Returns `{column or
        "column:min"/"column:max": threshold}`.
        """
        x = x.detach().cpu().double().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=np.float64)
        thresholds = {}
        for c in self.missing:
            if "missing_rate" not in c:
                continue  # saved before rates were stored: keep the threshold at 0
            score = x[:, self.feature_slices[f"{c['name']}{MISSING_SUFFIX}"]][:, 0]
            threshold = _calibrated_threshold(score, c["missing_rate"], c.get("missing_threshold"), stochastic)
            c[STOCHASTIC_THRESHOLD if stochastic else "missing_threshold"] = thresholds[c["name"]] = threshold
        for c in self.bounded:
            key = BOUND_THRESHOLDS_STOCHASTIC if stochastic else BOUND_THRESHOLDS
            calibrated = dict(c.get(key, {}))
            for end, suffix, _ in bound_ends(c):
                if suffix in c.get("bound_with", {}):
                    continue  # decided by the point mass it falls with
                score = x[:, self.feature_slices[f"{c['name']}{suffix}"]][:, 0]
                rate = c["atoms"][end] * (1.0 - c.get("missing_rate", 0.0))  # a share of the values, not of the rows
                threshold = _calibrated_threshold(score, rate, c.get(BOUND_THRESHOLDS, {}).get(suffix), stochastic)
                calibrated[suffix] = thresholds[f"{c['name']}{suffix}"] = threshold
            c[key] = calibrated
        self.register_to_config(columns=[dict(c) for c in self.columns])
        return thresholds

    def _labels(self, class_labels: Any, num_rows: int) -> np.ndarray:
        if class_labels is None:
            raise ValueError(
                f"This preprocessor conditions on {self.condition['name']!r}: pass the `class_labels` used to sample."
            )
        labels = torch.as_tensor(class_labels).long().cpu().numpy().reshape(-1)
        if len(labels) != num_rows:
            raise ValueError(f"Got {len(labels)} class labels for {num_rows} rows.")
        return labels
