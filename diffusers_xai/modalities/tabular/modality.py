"""The tabular modality: a table → quantile-normal rows, a [`TabularDenoiser`], [`TabularXAIPipeline`]."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch

from ...pipelines.schedulers import injects_noise
from ...utils.coerce import coerce
from ...utils.io import atomic_write
from ..base import ModalityOptions, SampleBatch, holdout_size
from ..hf_datasets import load_hf_dataset, to_stream
from ..preprocessed import PreprocessedModality
from ..registry import register_modality
from ..sampling import ddim_copy, sample_per_generator, sampling_steps
from .columns import check_table
from .data import TABULAR_DATASETS, load_tabular_dataset
from .denoiser import TabularDenoiser, auto_hidden_dims, class_embed_count
from .orders import reduced_orders
from .pipeline_tabular import TABLE_SCHEDULER_KWARGS, TabularXAIPipeline
from .preprocessor import TabularPreprocessor
from .schema import check_mixed_types

__all__ = ["TabularModality", "TabularOptions"]

logger = logging.getLogger(__name__)

# rows sampled at the end of training to calibrate the missingness indicators' thresholds
CALIBRATION_ROWS = 2000
# at least this many rows are sampled for each early-stopping DCR check (more when the holdout is larger)
EARLY_STOPPING_ROWS = 500


def _str_list(name: str, value) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"`{name}` must be a list of column names, got {value!r}.")
    return list(value)


def _int_tuple(name: str, value) -> tuple[int, ...]:
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, (list, tuple)) or not value or not all(isinstance(v, int) and v > 0 for v in value):
        raise ValueError(f'`{name}` must be a non-empty list of positive ints (or "auto"), got {value!r}.')
    return tuple(value)


def _check_columns(options: TabularOptions, columns: list[str]) -> None:
    """The columns the config names (`categorical_columns`, `condition_column`) are columns of the dataset."""
    marginal = options.marginal_columns if isinstance(options.marginal_columns, list) else []
    wanted = (options.categorical_columns or []) + marginal
    wanted += [options.condition_column] if options.condition_column else []
    missing = [c for c in wanted if c not in columns]
    if missing:
        raise ValueError(f"Columns {missing} (from the config) are not in the dataset; its columns are {columns}.")


def _check_text_columns(options: TabularOptions, dataset) -> None:
    """The preprocessor's mixed-type refusal, run on the whole table before the holdout is drawn, so that its row
    numbers are the file's (on the training rows, titanic's `Ticket` was refused for a value "at row 5", which sits
    at row 12 of the file). Text columns only, as the check is, and not the columns modelled as categories."""
    import datasets

    categories = [*(options.categorical_columns or []), options.condition_column]
    text = [
        name
        for name, feature in dataset.features.items()
        if isinstance(feature, datasets.Value)
        and feature.dtype in ("string", "large_string")
        and name not in categories
    ]
    if text:
        frame = dataset.select_columns(text).to_pandas()
        for name in text:
            check_mixed_types(name, frame[name])


def _written_from_others_note(columns: list[dict]) -> str | None:
    """The card's note on the columns written from others (`derived_columns`): a level's value, a sum, a product, or
    the name of the largest of some columns."""
    derived = [c for c in columns if c["kind"] == "derived"]
    sums = [c for c in columns if c["kind"] == "sum"]
    products = [c for c in columns if c["kind"] == "product"]
    largest = [c for c in columns if c["kind"] == "argmax"]
    if not derived and not sums and not products and not largest:
        return None
    said = []
    if derived:
        one = len(derived) == 1
        said.append(
            f"{_quoted([c['name'] for c in derived])} {'is' if one else 'are'} written from the generated level of "
            f"the column that determines {'it' if one else 'them'} on every training row "
            f"({_quoted(sorted({c['source'] for c in derived}))})"
        )
    if sums:
        said.append(
            f"{_quoted([c['name'] for c in sums])} {'is' if len(sums) == 1 else 'are'} written as the sum of its "
            f"parts, as on every training row ({'; '.join(c['name'] + ' = ' + ' + '.join(c['parts']) for c in sums)}),"
            " and may leave its training range"
        )
    if products:
        one = len(products) == 1
        said.append(
            f"{_quoted([c['name'] for c in products])} {'is' if one else 'are'} written as the product of "
            f"{'its' if one else 'their'} factors, as on every training row "
            f"({'; '.join(c['name'] + ' = ' + ' × '.join(c['factors']) for c in products)}), and may leave "
            f"{'its' if one else 'their'} training range"
        )
    for c in largest:
        said.append(f"`{c['name']}` names the largest of {_quoted(c['over'])}, as on every training row")
    levels = ", and the saved preprocessor config holds the value of each source level" if derived else ""
    return (
        f"{'; '.join(said)}; by `derived_columns`, not by the denoiser: an explanation of the columns they are "
        f"written from covers them{levels}."
    )


def _kept_by_rule_note(columns: list[dict]) -> str | None:
    """The card's note on what every generated row keeps by rule (`derived_columns`): orders between columns, gaps
    another column decides, levels nested in a coarser column's, and point masses at bounds that fall together."""
    said = []
    orders = reduced_orders(columns)
    if orders:
        said.append(
            f"the orders {', '.join(f'`{low}` ≤ `{high}`' for low, high in orders)} hold on every training row, and a "
            "generated row that breaks one has the two values swapped"
        )
    for c in columns:
        rule = c.get("missing_when")
        if rule is not None:
            levels = " or ".join(f"`{level}`" for level in rule["levels"])
            said.append(f"`{c['name']}` is missing exactly where `{rule['column']}` is {levels}, as on training rows")
        elif c.get("missing_with") is not None:
            said.append(f"`{c['name']}` is missing exactly where `{c['missing_with']}` is, as on training rows")
        if c.get("within"):
            coarse = " and ".join(f"`{rule['column']}`" for rule in c["within"])
            said.append(f"each level of `{c['name']}` goes with the one level of {coarse} it has on training rows")
    said += _tied_bounds_note(columns)
    if not said:
        return None
    return f"Kept by rule on every generated row, not by the denoiser (`derived_columns`): {'; '.join(said)}."


def _tied_bounds_note(columns: list[dict]) -> list[str]:
    """Point masses at bounds that fall on the same training rows (`atoms.mark_bound_ties`), one clause per leader."""
    followers: dict[tuple[str, str], list[str]] = {}
    for c in columns:
        for suffix, (leader, end) in c.get("bound_with", {}).items():
            followers.setdefault((leader, end), []).append(f"`{c['name']}` = {c[suffix[1:]]:g}")
    specs = {c["name"]: c for c in columns}
    return [
        f"{', '.join(names)} exactly where `{leader}` = {specs[leader][end[1:]]:g}, as on training rows"
        for (leader, end), names in followers.items()
    ]


def _quoted(names: list[str]) -> str:
    return ", ".join(f"`{n}`" for n in names)


def _complete_row(row: dict) -> bool:
    """`nan_policy: drop` for a streamed row: what `DataFrame.dropna` keeps (no None, no NaN)."""
    return not any(value is None or (isinstance(value, float) and value != value) for value in row.values())


# the tabular keys that are `TabularPreprocessor.fit`'s arguments of the same name (and `nan_policy`)
PREPROCESSOR_KEYS = (
    "categorical_columns",
    "condition_column",
    "categorical_encoding",
    "id_columns",
    "condition_bins",
    "marginal_columns",
    "derived_columns",
    "n_quantiles",
)


@dataclass
class TabularOptions(ModalityOptions):
    """The tabular keys (see [`TabularModality`])."""

    categorical_columns: list[str] | None = None
    condition_column: str | None = None
    categorical_encoding: Literal["auto", "onehot", "analog_bits", "analog_bits_ordered"] = "auto"
    nan_policy: Literal["model", "impute", "raise", "drop"] = "model"
    id_columns: Literal["regenerate", "drop"] = "regenerate"
    # categorical columns drawn from their training frequencies, outside the model (`TabularPreprocessor.fit`): a
    # list, "auto" (`auto_marginal_columns`: names and addresses, near-keys of the rows) or null; `Any`, as hidden_dims
    marginal_columns: Any | None = "auto"
    # columns a categorical column determines on every row (a country's continent) are written from its level, totals
    # and products of other columns (an amount, its price and its quantity) from those columns
    derived_columns: bool = True
    condition_bins: int = 10
    n_quantiles: int | None = None
    architecture: Literal["mlp", "resnet"] = "mlp"
    # a list of positive ints, or "auto": by the table's rows and features (`denoiser.auto_hidden_dims`); `Any`, since
    # the options' type coercion takes one type per key (`validate` checks it)
    hidden_dims: Any = field(default_factory=lambda: [256, 256])
    time_embedding_dim: int = 128
    early_stopping_dcr_ratio: float | None = None
    early_stopping_confidence: float = 0.9
    refit_on_all_rows: bool = False
    # the share of training rows whose condition is dropped to a null class K, so that the model also learns p(x) and
    # can be sampled with classifier-free guidance (the pipeline's `guidance_scale`); 0: no null class
    class_dropout_prob: float = 0.0

    def preprocessor_kwargs(self) -> dict[str, Any]:
        """The keys [`TabularPreprocessor.fit`] takes, with their values (`nan_policy: drop` drops incomplete rows
        while loading, so the preprocessor then refuses any NaN left)."""
        kwargs = {key: getattr(self, key) for key in PREPROCESSOR_KEYS}
        return {**kwargs, "nan_policy": "raise" if self.nan_policy == "drop" else self.nan_policy}

    def validate(self) -> None:
        self.categorical_columns = _str_list("categorical_columns", self.categorical_columns)
        if self.marginal_columns != "auto":
            self.marginal_columns = _str_list("marginal_columns", self.marginal_columns)
        if self.condition_column is not None and not isinstance(self.condition_column, str):
            raise ValueError(f"`condition_column` must be a column name, got {self.condition_column!r}.")
        self.check_choices("categorical_encoding", "nan_policy", "id_columns", "architecture")
        if self.hidden_dims != "auto":
            self.hidden_dims = list(_int_tuple("hidden_dims", self.hidden_dims))
        bins = self.condition_bins
        if isinstance(bins, bool) or not isinstance(bins, int) or bins < 2:
            raise ValueError(f"`condition_bins` must be an int >= 2, got {bins!r}.")
        for key in ("n_quantiles", "time_embedding_dim"):
            value = getattr(self, key)
            if value is None and key == "n_quantiles":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < (10 if key == "n_quantiles" else 1):
                raise ValueError(f"`{key}` must be an int (n_quantiles >= 10), got {value!r}.")
        self._check_class_dropout()
        self._check_guard()

    def _check_class_dropout(self) -> None:
        self.class_dropout_prob = coerce("class_dropout_prob", self.class_dropout_prob, float)
        if not 0.0 <= self.class_dropout_prob < 1.0:
            raise ValueError(
                f"`class_dropout_prob` must be in [0, 1) (0.1 is usual; 0 gives no null class, so no guidance), got "
                f"{self.class_dropout_prob}."
            )
        if self.class_dropout_prob and self.condition_column is None:
            raise ValueError(
                f"`class_dropout_prob: {self.class_dropout_prob}` drops the condition to train guidance, but there is "
                "no condition_column: set condition_column, or class_dropout_prob: 0."
            )

    def _check_guard(self) -> None:
        ratio = self.early_stopping_dcr_ratio
        if ratio is not None and (isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not ratio > 0):
            raise ValueError(f"`early_stopping_dcr_ratio` must be a positive number (e.g. 0.9), got {ratio!r}.")
        confidence = self.early_stopping_confidence
        if isinstance(confidence, bool) or not isinstance(confidence, (int, float)) or not 0.5 <= confidence < 1:
            raise ValueError(
                f"`early_stopping_confidence` must be a number in [0.5, 1) (e.g. 0.9; 0.5: the bootstrap's median), "
                f"got {confidence!r}."
            )
        refit = self.refit_on_all_rows
        if not isinstance(refit, bool):
            raise ValueError(f"`refit_on_all_rows` must be true or false, got {refit!r}.")
        if refit and ratio is None:
            raise ValueError(
                "`refit_on_all_rows: true` refits for the number of updates the privacy guard chose, but "
                "early_stopping_dcr_ratio is null: set early_stopping_dcr_ratio (e.g. 0.9) "
                "or refit_on_all_rows: false."
            )


@register_modality
class TabularModality(PreprocessedModality):
    """
    TabDDPM-style table synthesis. `dataset_name` is a built-in table (`wine`, `breast_cancer`), a CSV/Parquet file,
    a `save_to_disk` folder or a Hub id (see [`load_hf_dataset`]).

    Keys (YAML / `--key value`): `categorical_columns`, `condition_column`, `categorical_encoding` (`auto` = one-hot up
    to 32 levels, analog bits ordered by the numerical columns above; `onehot`; `analog_bits`; `analog_bits_ordered`),
    `nan_policy` (`model` = generate missing values at the real rate through one indicator per column, `impute`,
    `raise`, or `drop` = train on complete rows), `id_columns` (`regenerate` or `drop` all-unique identifier columns),
    `marginal_columns` (categorical columns drawn from their training frequencies, outside the model: names or
    addresses of mostly once-seen levels; `auto`: those of [`auto_marginal_columns`]), `condition_bins` (quantile
    bins of a numerical `condition_column`, whose TSTR is then a regression R²), `n_quantiles`, and the denoiser's
    `architecture` (`mlp`/`resnet`), `hidden_dims` (a list, or `auto`: by the training rows and features,
    `denoiser.auto_hidden_dims`), `time_embedding_dim` (plus the shared `dropout`), `early_stopping_dcr_ratio` and
    `early_stopping_confidence` (see [`early_stopping_check`]), `refit_on_all_rows` (see [`refit_config`]) and
    `class_dropout_prob` (a null class for classifier-free guidance).
    """

    name = "tabular"
    pipeline_class = TabularXAIPipeline
    data_noun = "table rows"
    task_categories = ("tabular-classification", "tabular-regression")
    options_class = TabularOptions
    sample_field = "rows"
    evaluation_batch_size = 1024
    _guard_cache: tuple | None = None  # see `_guard_rows`
    _split_cache: tuple | None = None  # see `holdout_split`

    def validate_config(self, config) -> None:
        """`early_stopping_dcr_ratio` needs checks to run and the training rows in memory; `refit_on_all_rows` a
        holdout to give back."""
        options = config.modality_options
        ratio = options.early_stopping_dcr_ratio
        if ratio is not None and (config.streaming or not config.validation_steps):
            raise ValueError(
                f"`early_stopping_dcr_ratio: {ratio}` measures the DCR ratio every `validation_steps`; got "
                f"validation_steps={config.validation_steps}, streaming={config.streaming}: set validation_steps, no "
                "streaming; or turn the guard off with early_stopping_dcr_ratio: null."
            )
        if options.refit_on_all_rows and ratio is not None and not config.validation_split:
            raise ValueError(
                "`refit_on_all_rows: true` gives back the rows `validation_split` held out, but validation_split is 0 "
                "(the guard already trains on every row): set refit_on_all_rows: false."
            )
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        if config.modality_options.refit_on_all_rows and world_size > 1:
            # the guard's checks run on the main process only, which alone knows the step to refit for
            raise ValueError(
                f"`refit_on_all_rows: true` runs in one process, got WORLD_SIZE={world_size}: train without "
                "`accelerate launch --num_processes`, or set refit_on_all_rows: false."
            )

    # ---- data ----
    def load_dataset(self, config):
        if config.dataset_name in TABULAR_DATASETS:
            dataset = load_tabular_dataset(config.dataset_name)
        else:
            dataset = load_hf_dataset(config)
        _check_columns(config.modality_options, dataset.column_names)
        _check_text_columns(config.modality_options, dataset)
        if config.modality_options.nan_policy == "drop":
            import datasets

            frame = dataset.to_pandas()
            complete = frame.dropna().reset_index(drop=True)
            logger.info(f"nan_policy=drop: training on {len(complete)} of {len(frame)} rows (complete cases).")
            dataset = datasets.Dataset.from_pandas(complete, preserve_index=False)
        # the whole table, before the `validation_split` holdout is drawn from it and the guard looks at it: a single
        # row was refused as a holdout that leaves none to train on, an empty column with the training rows' count
        check_table(dataset.to_pandas())
        return dataset

    def load_streaming_dataset(self, config):
        if config.dataset_name in TABULAR_DATASETS:
            stream = to_stream(load_tabular_dataset(config.dataset_name))  # small built-ins, streamed as shards
        else:
            stream = load_hf_dataset(config, streaming=True)
        # CSV/JSON streams know their columns only once a row is read (inferring features from the first rows would
        # then cast later rows to them, which a map-style read does not do): look at the first row instead
        columns = stream.column_names or list(next(iter(stream.take(1)), {}))
        _check_columns(config.modality_options, columns)
        if (
            config.modality_options.nan_policy == "drop"
        ):  # rows are dropped as they stream by, so the count is not known up front
            stream = stream.filter(_complete_row)
        return stream

    def fit_preprocessor(self, dataset, config) -> TabularPreprocessor:
        opts = config.modality_options
        # the columns are checked first: a table whose condition column has one level, or whose only other column is
        # empty, was refused by the guard as one it cannot judge, which named neither
        frame = dataset.to_pandas()
        preprocessor = TabularPreprocessor.fit(frame, **opts.preprocessor_kwargs(), seed=config.seed or 0)
        if opts.early_stopping_dcr_ratio is not None:  # the last look at the rows before training starts
            self._guard_rows(config)
        return preprocessor

    def to_tensors(self, examples: dict[str, list], preprocessor, config) -> dict[str, torch.Tensor]:
        frame = pd.DataFrame(examples)
        # the `validation_split` holdout goes through here too (validation loss): a level it alone has (iris' sepal
        # width 2.0 in a 21-row holdout, an airport name) is encoded as its nearest known level instead of failing;
        # training rows are the ones the preprocessor was fitted on, and streams (no holdout) keep raising
        unseen = "nearest" if config.validation_split else "raise"
        out = {"x0": preprocessor.transform(frame, unseen_levels=unseen)}
        if preprocessor.condition is not None:
            out["class_labels"] = preprocessor.encode_labels(frame)
        return out

    # ---- model and pipeline ----
    def build_model(self, config, preprocessor: TabularPreprocessor) -> TabularDenoiser:
        dims = config.modality_options.hidden_dims
        null_class = bool(config.modality_options.class_dropout_prob)  # the trainer drops labels to it
        return TabularDenoiser(
            in_features=preprocessor.num_features,
            hidden_dims=(
                auto_hidden_dims(preprocessor.config.num_rows, preprocessor.num_features)
                if dims == "auto"
                else tuple(dims)
            ),
            architecture=config.modality_options.architecture,
            time_embedding_dim=config.modality_options.time_embedding_dim,
            num_class_embeds=class_embed_count(preprocessor.num_classes, null_class),
            null_class=null_class,
            dropout=config.dropout,
        )

    def build_pipeline(self, model, scheduler, preprocessor) -> TabularXAIPipeline:
        pipeline = super().build_pipeline(model, scheduler, preprocessor)
        if preprocessor.missing or preprocessor.bounded:
            # NaN counts (and point masses at bounds) at the training rate: thresholds from 2,000 DDIM-50 rows of this
            # model (about a second)
            self._calibrate_missingness(self.ddim(pipeline), min(50, pipeline.scheduler.config.num_train_timesteps))
        return pipeline

    def _calibrate_missingness(self, pipeline, num_inference_steps: int, stochastic: bool = False) -> None:
        """The missingness thresholds of `pipeline`'s preprocessor, from `CALIBRATION_ROWS` rows of `pipeline` (seed
        0) at `num_inference_steps` (`TabularPreprocessor.calibrate_missingness`)."""
        rows = self.draw(
            pipeline,
            CALIBRATION_ROWS,
            generator=torch.Generator("cpu").manual_seed(0),
            num_inference_steps=num_inference_steps,
            output_type="pt",
        )
        pipeline.preprocessor.calibrate_missingness(rows, stochastic=stochastic)

    def finalize_pipeline(self, pipeline, config) -> None:
        """When the saved pipeline's sampler adds noise at each step (DDPM, the default), the missingness thresholds
        of its rows too: 2,000 rows at its training step count, once (DDPM-1000 on titanic: ~20 s)."""
        pre = pipeline.preprocessor
        if (pre.missing or pre.bounded) and injects_noise(pipeline.scheduler):
            self._calibrate_missingness(pipeline, pipeline.scheduler.config.num_train_timesteps, stochastic=True)

    def ddim(self, pipeline) -> TabularXAIPipeline:
        return ddim_copy(pipeline, **TABLE_SCHEDULER_KWARGS["ddim"])

    def log_validation(self, pipeline, step: int, config, accelerator) -> str:
        """Sample `validation_batch_size` rows with DDIM from a fixed seed and save them as `samples/step_N.csv`."""
        generator = torch.Generator("cpu").manual_seed(config.seed or 0)
        rows = self.draw(
            self.ddim(pipeline),
            config.validation_batch_size,
            generator=generator,
            num_inference_steps=sampling_steps(config),
        )
        path = os.path.join(config.output_dir, "samples", f"step_{step:07d}.csv")
        _write_csv(rows, path)
        return path

    def early_stopping_check(self, pipeline, config) -> tuple[str, float, bool] | None:
        """
        `early_stopping_dcr_ratio: r`: sample as many rows as the `validation_split` holdout (at least 500) the way a
        user samples by default (the trained scheduler, all its steps, seed `config.seed`) and pass while the lower
        confidence bound of their DCR ratio ([`dcr_ratio_lower_bound`] at `early_stopping_confidence`, 0.9: the
        synthetic rows' median distance to the closest training row over that of the holdout rows pooled with the
        training rows' leave-one-out distances, bootstrapped) is >= r. Below r the model has started to copy its
        training rows: the trainer stops and keeps the last passing weights. The history records the lower bound.

        Why a bound and a pooled reference: the ratio on a small holdout is noisy, and the same holdout serves every
        check, so its error does not average out over checks: on penguins (seed 2) a 48-row holdout read every check
        1.21x too high, all 16 passed, and the bench's 104 fresh rows then measured 0.862 (0.903 with the bound).
        With `validation_split: 0` the reference is the leave-one-out distances alone and no row is held out of
        training (each training row's distance to the others is distributed as a fresh row's to all of them).
        """
        options = config.modality_options
        if options.early_stopping_dcr_ratio is None:
            return None
        from ...evaluation.tabular_privacy import dcr_ratio_lower_bound

        train_rows, holdout, reference = self._guard_rows(config)  # no holdout: leave-one-out only
        pipeline.set_progress_bar_config(disable=True)
        rows = pipeline(
            num_rows=max(0 if holdout is None else len(holdout), EARLY_STOPPING_ROWS),
            generator=torch.Generator("cpu").manual_seed(config.seed or 0),
            num_inference_steps=pipeline.scheduler.config.num_train_timesteps,
        ).rows
        bound = dcr_ratio_lower_bound(
            rows,
            train_rows,
            holdout,
            confidence=options.early_stopping_confidence,
            seed=config.seed or 0,
            reference=reference,
        )
        logger.info(
            f"Early-stopping check: DCR ratio {bound.ratio:.3f}, {bound.confidence:.0%} lower bound "
            f"{bound.lower_bound:.3f} (stop below {options.early_stopping_dcr_ratio})."
        )
        return "dcr_ratio_lower_bound", bound.lower_bound, bound.lower_bound >= options.early_stopping_dcr_ratio

    def _guard_rows(self, config) -> tuple[pd.DataFrame, pd.DataFrame | None, np.ndarray]:
        """
        The guard's training rows, holdout and reference distances ([`check_guard_can_judge`], which refuses a table
        it cannot judge). The rows never change between a run's checks, so they are computed once per run (per
        `config` object: the trainer passes its run's own), before training: on 8,000 training rows a check then
        takes 14.9 s instead of 19.7 s (`bench/guard_check_cost.py`, 2 threads).
        """
        if self._guard_cache is None or self._guard_cache[0] is not config:
            from ...evaluation.tabular_privacy import check_guard_can_judge

            train_rows, holdout = self._train_and_holdout(config, 10_000)
            reference = check_guard_can_judge(
                train_rows, holdout, threshold=config.modality_options.early_stopping_dcr_ratio, seed=config.seed or 0
            )
            self._guard_cache = (config, train_rows, holdout, reference)
        return self._guard_cache[1:]

    def refit_on_all_rows(self, config) -> bool:
        return config.modality_options.refit_on_all_rows

    def refit_config(self, config, steps: int):
        """
        `refit_on_all_rows: true`: once the guard has chosen `steps` (the last passing check, or all updates when none
        failed) on 80% of the rows, the model is trained again from scratch on every row for exactly `steps` updates,
        with no holdout and no check: early stopping's usual refit, which gives back the rows the holdout cost.

        Why the guard's verdict carries over: the guard saw that after `steps` updates of batch B on n training rows
        (each row seen steps·B/n times) the samples were as far from the training rows as fresh rows are, and the
        DCR ratio falls as those passes grow (that is what the guard watches). The refit makes the same `steps`
        updates on n / (1 - validation_split) rows, so each row is seen (1 - validation_split) times as often (0.8×).
        What the refit cannot do is measure its own DCR ratio (no row is left out): `bench/tabular_quality.py` measures
        it against the bench's own holdout (README "Tables you can publish").
        """
        return config.replace(
            validation_split=0.0,
            early_stopping_dcr_ratio=None,
            refit_on_all_rows=False,
            max_train_steps=steps,
            max_train_minutes=None,
        )

    # ---- end of training ----
    def evaluation_sampler(self, pipeline, config) -> tuple[TabularXAIPipeline, int]:
        """
        Rows for the end-of-run evaluation are sampled as a user samples them by default and as the guard's checks
        sample them: the pipeline's own (trained) scheduler with all its steps.

        Not DDIM with `validation_num_inference_steps`, as images are: the card's privacy and fidelity numbers must be
        those of the rows a user publishes, and a model the guard stopped early samples differently with 50 DDIM
        steps. plotly's tips through wine.yaml, stopped at update 450, evaluated both ways: DDIM-50 rows read a DCR
        ratio of 1.765 and a detection AUC of 0.807, the default DDPM-1000 rows 0.898 and 0.689. On a table this size
        the 1,000 steps cost about what one guard check costs.
        """
        return pipeline, pipeline.scheduler.config.num_train_timesteps

    def evaluate(self, pipeline, config, num_samples: int, output_dir: str):
        """SDMetrics quality, detection AUC, DCR and the DCR ratio against the `validation_split` holdout (and TSTR on
        `condition_column`) of default-sampled rows ([`evaluation_sampler`]) vs the training data."""
        from ...evaluation import evaluate_table

        synthetic = pd.concat(self.sample_for_evaluation(pipeline, config, num_samples), ignore_index=True)
        real, holdout = self._train_and_holdout(config, 10_000)
        if holdout is None:
            guard = config.modality_options.early_stopping_dcr_ratio is not None
            logger.warning(
                "No holdout (validation_split: 0): the DCR ratio privacy check is not computed"
                + (" (the guard's checks measured the training rows' leave-one-out distances)" if guard else "")
                + " and TSTR is scored on rows the model saw; set validation_split: 0.2 to measure them."
            )
        return evaluate_table(
            real,
            synthetic,
            target=config.modality_options.condition_column,
            real_test=holdout,
            output_dir=output_dir,
            dataset_name=config.dataset_name,
            seed=config.seed or 0,
        )

    def _train_and_holdout(self, config, max_rows: int) -> tuple[pd.DataFrame, pd.DataFrame | None]:
        """
        The training rows (at most `max_rows`: SDMetrics' pandas reports grow quadratically beyond 10,000) and the
        rows held out by `validation_split`, drawn exactly as the trainer draws them; the holdout is what the DCR
        ratio and TSTR are measured against. Without `validation_split` there is no holdout (`None`).
        """
        if not config.validation_split or getattr(config, "streaming", False):
            return self.reference_dataset(config, max_rows).to_pandas(), None
        if self._split_cache is not None and self._split_cache[0] is config:  # the trainer's own split, kept
            train_rows, holdout = self._split_cache[1:]
        else:
            train_rows, holdout = self.holdout_split(self.load_dataset(config), config)  # drawn again, alike
        if len(train_rows) > max_rows:
            train_rows = train_rows.shuffle(seed=config.seed or 0).select(range(max_rows))
        return train_rows.to_pandas(), holdout.to_pandas()

    def holdout_split(self, dataset, config):
        """
        [`draw_holdout`], kept for the run whose `config` it is: the guard and the end-of-run evaluation measure
        against the trainer's own split instead of reading the table and drawing it again (twice per run before).
        """
        train_rows, holdout = self.draw_holdout(dataset, config)
        self._split_cache = (config, train_rows, holdout)
        return train_rows, holdout

    def draw_holdout(self, dataset, config):
        """
        With a `condition_column`, the holdout is drawn stratified by it (scikit-learn's `train_test_split`; a
        numerical column by `condition_bins` quantile bins), so the model learns from, samples labels by, and is
        checked against the table's class proportions: an unstratified 21-row draw from iris' 105 training rows
        held out 10, 8 and 9 setosa at seeds 0, 1 and 2 (7 is proportional). Unconditional tables keep the shared
        draw, and so does a column with a class too rare to split (a warning says so).
        """
        opts = config.modality_options
        if opts.condition_column is None:
            return super().holdout_split(dataset, config)
        from sklearn.model_selection import train_test_split

        n_val = holdout_size(len(dataset), config.validation_split)
        column = dataset.select_columns([opts.condition_column]).to_pandas()[opts.condition_column]
        try:
            train_idx, holdout_idx = train_test_split(
                list(range(len(dataset))),
                test_size=n_val,
                random_state=config.seed or 0,
                stratify=_strata(column, opts.condition_bins),
            )
        except ValueError as e:  # a class with one row, or fewer held-out rows than classes
            logger.warning(f"The {n_val}-row holdout is drawn unstratified, not by {opts.condition_column!r}: {e}")
            return super().holdout_split(dataset, config)
        return dataset.select(sorted(train_idx)), dataset.select(sorted(holdout_idx))

    evaluation_output_type = "pd"
    sample_in_one_call = True

    def score(self, real, samples, options: dict):
        """SDMetrics quality, TSTR on `target`, detection AUC and DCR (against `real_test` when given)."""
        from ...evaluation import evaluate_table

        return evaluate_table(
            real,
            samples,
            sdmetrics_privacy=not options["no_sdmetrics_privacy"],
            **self.report_options(options, "target", "real_test"),
        )

    # the explanation card ([`PreprocessedModality.explain`]): column attributions and commit steps
    def attribute(self, explainer, trace, **kwargs):
        from ...explain import column_attributions

        return column_attributions(explainer, trace, **kwargs)

    def attribute_kwargs(self, output) -> dict:
        return {"class_labels": output.class_labels}

    def plot_attributions(self, explanation, path: str) -> str:
        from ...viz import plot_column_attributions

        return plot_column_attributions(explanation, path)

    def plot_commit_steps(self, pipeline, trace, path: str) -> str:
        from ...explain import column_commit_steps
        from ...viz import plot_column_commit_steps

        return plot_column_commit_steps(column_commit_steps(trace, pipeline.preprocessor), path)

    def card_limitations(self, pipeline) -> list[str]:
        """The card's notes on what the preprocessor's config publishes of the training rows: the per-level statistics
        of columns decoded by their level's posterior (`levels="posterior"`), the levels and counts of the columns
        drawn outside the model (`marginal_columns`), which no explanation covers either, and the columns written from
        others: a level's value, a sum, a product, the name of the largest (`derived_columns`)."""
        pre = getattr(pipeline, "preprocessor", None)
        notes = []
        posterior = [c["name"] for c in getattr(pre, "categorical", []) if c.get("level_stats")]
        if posterior:
            notes.append(
                f"The level of {_quoted(posterior)} is drawn from the generated row's numbers after the "
                "denoiser (posterior levels): the saved preprocessor config holds each such level's mean and variance "
                "of the numerical columns over its training rows (a level seen exactly twice: the mean of its two "
                "rows; a level seen once: the values of all rows), and a gradient explanation of such a column "
                "explains its analog bits at x_t, not the level drawn from the numbers."
            )
        marginal = [c["name"] for c in getattr(pre, "columns", []) if c["kind"] == "marginal"]
        if marginal:
            notes.append(
                f"{_quoted(marginal)} {'is' if len(marginal) == 1 else 'are'} not generated by the denoiser: each row "
                "draws its value from the training frequencies, independently of its other columns "
                "(`marginal_columns`), so it says nothing about the rest of the row and no explanation covers it. The "
                "saved preprocessor config holds every training value with its count: publishing the model publishes "
                "those values (names, addresses); drop such a column from the table before training if its values "
                "are private."
            )
        written = _written_from_others_note(getattr(pre, "columns", []))
        if written:
            notes.append(written)
        kept = _kept_by_rule_note(getattr(pre, "columns", []))
        if kept:
            notes.append(kept)
        return notes

    # ---- sharded datasets ----
    def sample_batch(
        self, pipeline, generators, num_inference_steps: int, trace, class_labels=None, guidance_scale: float = 1.0
    ) -> SampleBatch:
        """
        Rows from a [`TabularXAIPipeline`], one dataset column per column of the original table.

        Without `class_labels` the pipeline draws each row's class from that row's own generator first, so rows stay
        independent of the batch they are generated in.
        """
        import datasets

        out = sample_per_generator(
            pipeline,
            generators,
            num_inference_steps,
            trace,
            class_labels=class_labels,
            guidance_scale=guidance_scale,
            output_type="pd",
        )
        columns, features = {}, {}
        for name in out.rows.columns:
            features[str(name)], columns[str(name)] = _dataset_column(out.rows[name])
        return SampleBatch(columns, datasets.Features(features), out.trace)

    def given_values(self, pipeline, column: str, values) -> list:
        """The levels `values` name of the categorical column `column`, as [`sample_batch`] writes them
        ([`TabularPreprocessor.column_levels`])."""
        return _dataset_column(pipeline.preprocessor.column_levels(column, values))[1]

    def number_samples(self, pipeline, batch: SampleBatch, indices) -> SampleBatch:
        """The identifier columns of sample `i` written for its dataset index (`renumber_ids`): every batch of a
        pipeline call numbers its rows from 0, so without this a generated dataset repeats each identifier once per
        batch."""
        pre = pipeline.preprocessor
        ids = [c["name"] for c in pre.columns if c["kind"] == "id" and not c.get("drop")]
        if not ids:
            return batch
        fresh = pre.renumber_ids(pd.DataFrame({name: batch.columns[name] for name in ids}), indices)
        columns = {**batch.columns, **{name: _dataset_column(fresh[name])[1] for name in ids}}
        return SampleBatch(columns, batch.features, batch.trace)


def _dataset_column(series: pd.Series) -> tuple[Any, list]:
    """
    A generated column as its `datasets` feature and its list of values, the feature being what Arrow makes of the
    column's own dtype, so a generated dataset keeps the table's schema: datetimes stay timestamps (with their time
    zone), nullable ints stay ints with nulls, bools stay bools; a categorical dtype is written as its categories'
    type. Missing values are nulls.
    """
    import datasets
    import pyarrow as pa

    if isinstance(series.dtype, pd.CategoricalDtype):
        series = series.astype(series.cat.categories.dtype)
    arrow_type = pa.Array.from_pandas(series).type
    if pa.types.is_null(arrow_type):  # every value missing: Arrow cannot tell the type
        arrow_type = pa.string()
    feature = datasets.Features.from_arrow_schema(pa.schema([pa.field("column", arrow_type)]))["column"]
    values = series.astype(object).where(series.notna(), None).tolist()
    return feature, values


def _write_csv(frame: pd.DataFrame, path: str) -> Any:
    return atomic_write(path, frame.to_csv(index=False))


def _strata(values: pd.Series, bins: int) -> list[str]:
    """The classes of a condition column to stratify by: its values, or `bins` quantile bins of a numerical column
    with more distinct values than that; a missing value is a class of its own."""
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values) and values.nunique() > bins:
        values = pd.qcut(values, q=bins, labels=False, duplicates="drop")
    return values.astype(str).tolist()
