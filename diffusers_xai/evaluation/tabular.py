"""Tables: SDMetrics quality, machine-learning utility (TSTR vs TRTR), detection AUC and distance to closest record."""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
import pandas as pd

from .report import EvaluationReport

__all__ = [
    "TSTRResult",
    "check_table_pair",
    "detection_auc",
    "distance_to_closest_record",
    "evaluate_table",
    "infer_metadata",
    "train_synthetic_test_real",
]

logger = logging.getLogger(__name__)

Task = Literal["classification", "regression"]
MODEL_NAME = "HistGradientBoosting"
# a detection AUC from here on is warned about: rows this separable give themselves away (GaussianCopula on vega's
# seattle-weather: 0.96; ours on the benchmark's tables: 0.46-0.75)
DETECTION_WARNING = 0.9
# HistGradientBoosting bins a categorical feature into at most 255 codes: above that many levels (airports' 2,280
# names) the rarest are grouped into one "infrequent" code (OrdinalEncoder's `max_categories`) rather than refused
MAX_GBM_CATEGORIES = 255
# Integer columns with at most this many distinct values are treated as categorical by `infer_metadata`.
MAX_INTEGER_CATEGORIES = 10


def infer_metadata(df: pd.DataFrame) -> dict:
    """
    SDMetrics single-table metadata `{"columns": {name: {"sdtype": ...}}}` guessed from dtypes: bool → boolean,
    datetime (and strings that all parse as dates in one format) → datetime, all-unique strings → id (not scored),
    object/category/string → categorical, integers with at most 10 distinct values → categorical (class labels),
    other numbers → numerical. Pass your own `metadata=` when the guess is wrong.
    """
    from ..modalities.tabular.schema import datetime_spec, id_spec

    columns = {}
    for name in df.columns:
        s = df[name]
        date = datetime_spec(str(name), s) if pd.api.types.is_object_dtype(s) else None
        if date is not None:
            columns[str(name)] = {"sdtype": "datetime", "datetime_format": date["format"]}
            continue
        if pd.api.types.is_object_dtype(s) and (id_spec(str(name), s) or {}).get("type") == "str":
            columns[str(name)] = {"sdtype": "id"}
            continue
        if pd.api.types.is_bool_dtype(s):
            sdtype = "boolean"
        elif pd.api.types.is_datetime64_any_dtype(s):
            sdtype = "datetime"
        elif pd.api.types.is_integer_dtype(s) and s.nunique(dropna=True) <= MAX_INTEGER_CATEGORIES:
            sdtype = "categorical"
        elif pd.api.types.is_numeric_dtype(s):
            sdtype = "numerical"
        elif (
            isinstance(s.dtype, pd.CategoricalDtype)
            or pd.api.types.is_object_dtype(s)
            or pd.api.types.is_string_dtype(s)
        ):
            sdtype = "categorical"
        else:
            raise ValueError(f"Column {name!r} has unsupported dtype {s.dtype}; convert it or pass `metadata=`.")
        columns[str(name)] = {"sdtype": sdtype}
    return {"columns": columns}


def check_table_pair(real: pd.DataFrame, synthetic: pd.DataFrame, metadata: dict, synthetic_name: str = "synthetic"):
    """
    Validate a synthetic table against the real one and return it with the real column order. Raises on
    differing column sets, empty tables and numerical columns that are not numeric; returns warnings for NaNs the
    real data does not have.
    """
    for name, df in (("real", real), (synthetic_name, synthetic)):
        if not isinstance(df, pd.DataFrame):
            raise TypeError(f"`{name}` must be a pandas DataFrame, got {type(df).__name__}.")
        if len(df) == 0:
            raise ValueError(f"`{name}` has no rows.")
    missing = [c for c in real.columns if c not in synthetic.columns]
    extra = [c for c in synthetic.columns if c not in real.columns]
    if missing or extra:
        raise ValueError(
            f"`{synthetic_name}` columns differ from the real table's: missing {missing}, unexpected {extra}. "
            "Generate with the pipeline trained on this table, or select/rename columns to match."
        )
    synthetic = synthetic[list(real.columns)]
    notes = []
    for name, spec in metadata["columns"].items():
        if name not in real.columns:
            raise ValueError(f"`metadata` names column {name!r}, which is not in the real table.")
        if spec["sdtype"] == "numerical" and not pd.api.types.is_numeric_dtype(synthetic[name]):
            raise ValueError(
                f"Column {name!r} is numerical in the real table but has dtype {synthetic[name].dtype} in "
                f"`{synthetic_name}`; decode the synthetic data to the original schema."
            )
        n_nan = int(synthetic[name].isna().sum())
        if n_nan and not real[name].isna().any():
            notes.append(
                f"Column {name!r} has {n_nan} missing values in `{synthetic_name}` but none in the real data."
            )
    return synthetic, notes


def _feature_columns(metadata: dict, exclude: str | None) -> tuple[list[str], list[str]]:
    categorical, numerical = [], []
    for name, spec in metadata["columns"].items():
        if name == exclude:
            continue
        if spec["sdtype"] in ("categorical", "boolean"):
            categorical.append(name)
        elif spec["sdtype"] in ("numerical", "datetime"):
            numerical.append(name)
        # ids, PII and other sdtypes carry no signal for a model: left out
    return categorical, numerical


def _model(task: Task, categorical: list[str], numerical: list[str], seed: int):
    """The fixed model: ordinal-encoded categoricals (the rarest levels grouped above `MAX_GBM_CATEGORIES`) +
    HistGradientBoosting with its defaults (no early stopping)."""
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OrdinalEncoder

    encoder = ColumnTransformer(
        [
            (
                "categorical",
                OrdinalEncoder(
                    handle_unknown="use_encoded_value",
                    unknown_value=np.nan,
                    encoded_missing_value=np.nan,
                    max_categories=MAX_GBM_CATEGORIES,
                ),
                categorical,
            ),
            ("numerical", "passthrough", numerical),
        ]
    )
    mask = [True] * len(categorical) + [False] * len(numerical)
    cls = HistGradientBoostingClassifier if task == "classification" else HistGradientBoostingRegressor
    return make_pipeline(
        encoder, cls(categorical_features=mask if categorical else None, early_stopping=False, random_state=seed)
    )


def _as_number(series: pd.Series, fmt: str | None = None) -> pd.Series:
    """A numerical column as float; datetimes (datetime64, or strings in `fmt`) as seconds since 1970, NaT → NaN."""
    if fmt is not None and not pd.api.types.is_datetime64_any_dtype(series):
        series = pd.to_datetime(series, format=fmt, errors="coerce")
    if pd.api.types.is_datetime64_any_dtype(series):
        if getattr(series.dtype, "tz", None) is not None:
            series = series.dt.tz_convert("UTC").dt.tz_localize(None)
        return (series - pd.Timestamp(0)).dt.total_seconds()
    return series.astype(float)


def _prepare(df: pd.DataFrame, categorical: list[str], numerical: list[str], metadata: dict) -> pd.DataFrame:
    out = pd.DataFrame(index=df.index)
    for c in categorical:
        out[c] = df[c].astype(object).where(df[c].notna(), np.nan).astype(str).where(df[c].notna(), np.nan)
    for c in numerical:
        out[c] = _as_number(df[c], metadata["columns"][c].get("datetime_format"))
    return out


@dataclass
class TSTRResult:
    """Machine-learning efficacy: the same fixed model trained on synthetic (TSTR) or real (TRTR) data, scored on
    the same real test set."""

    tstr: float
    trtr: float
    metric: str
    task: str
    target: str
    model: str = MODEL_NAME

    @property
    def ratio(self) -> float:
        return self.tstr / self.trtr if self.trtr else float("nan")

    def to_dict(self) -> dict:
        return {**asdict(self), "ratio": self.ratio}


def _task(metadata: dict, target: str, task: Task | None) -> Task:
    if task is not None:
        if task not in ("classification", "regression"):
            raise ValueError(f"`task` must be 'classification' or 'regression', got {task!r}.")
        return task
    return "classification" if metadata["columns"][target]["sdtype"] in ("categorical", "boolean") else "regression"


def _fit_score(train: pd.DataFrame, test: pd.DataFrame, target: str, metadata: dict, task: Task, seed: int) -> float:
    from sklearn.metrics import f1_score, r2_score

    categorical, numerical = _feature_columns(metadata, target)
    train, test = train[train[target].notna()], test[test[target].notna()]  # rows without a label cannot be scored
    y_train, y_test = train[target], test[target]
    if task == "classification":
        y_train, y_test = y_train.astype(str), y_test.astype(str)
        if y_train.nunique() < 2:
            raise ValueError(
                f"The training data for target {target!r} has a single class ({y_train.iloc[0]!r}); a classifier "
                "cannot be trained on it."
            )
    model = _model(task, categorical, numerical, seed)
    model.fit(_prepare(train, categorical, numerical, metadata), y_train)
    pred = model.predict(_prepare(test, categorical, numerical, metadata))
    if task == "classification":
        return float(f1_score(y_test, pred, average="macro"))
    return float(r2_score(y_test.astype(float), pred))


def train_synthetic_test_real(
    real_train: pd.DataFrame,
    synthetic: pd.DataFrame,
    real_test: pd.DataFrame,
    target: str,
    metadata: dict | None = None,
    task: Task | None = None,
    seed: int = 0,
) -> TSTRResult:
    r"""
    Train-on-synthetic-test-on-real (Esteban et al. 2017; SDV's ML efficacy) beside train-on-real: one fixed model
    (`HistGradientBoostingClassifier`/`Regressor`, default hyper-parameters, no early stopping, `random_state=seed`,
    ordinal-encoded categoricals) fitted on `synthetic` and on `real_train`, both scored on `real_test` with macro F1
    (classification) or R² (regression). With `synthetic` equal to `real_train` the two numbers are identical.
    """
    metadata = metadata or infer_metadata(real_train)
    if target not in real_train.columns:
        raise ValueError(
            f"`target` {target!r} is not a column of the real table; columns: {list(real_train.columns)}."
        )
    synthetic, _ = check_table_pair(real_train, synthetic, metadata)
    real_test, _ = check_table_pair(real_train, real_test, metadata, "real_test")
    task = _task(metadata, target, task)
    return TSTRResult(
        tstr=_fit_score(synthetic, real_test, target, metadata, task, seed),
        trtr=_fit_score(real_train, real_test, target, metadata, task, seed),
        metric="macro F1" if task == "classification" else "R²",
        task=task,
        target=target,
    )


def detection_auc(
    real: pd.DataFrame, synthetic: pd.DataFrame, metadata: dict | None = None, folds: int = 5, seed: int = 0
) -> float:
    """
    Classifier two-sample test (Lopez-Paz & Oquab 2017): ROC AUC of the fixed HistGradientBoosting model telling
    real from synthetic rows, out-of-fold over `folds` stratified folds on a balanced sample. 0.5 means
    indistinguishable, 1.0 trivially separable.

    The balanced sample and the folds are drawn from independent streams of `seed`. They once shared `seed` itself:
    pandas' `sample` of all n rows and the folds' shuffle of n labels then drew the same permutation, so each fold
    held a contiguous block of the table as given. A table in file order (sorted by class, by date) then put one
    class's real rows in one fold against synthetic rows of every class, and the AUC fell far below 0.5: 0.10 on
    four years of days against i.i.d. days, 0.11 on vega's stocks (sorted by symbol) against its model's rows; 0.46
    and 0.50 now. A column whose real values are a complete sequence (every day once) still reads a little below 0.5
    on its own (0.42 there): a held-out real day leaves a gap among the real days of the other folds.
    """
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    metadata = metadata or infer_metadata(real)
    synthetic, _ = check_table_pair(real, synthetic, metadata)
    n = min(len(real), len(synthetic))
    if n < folds:
        raise ValueError(f"Detection needs at least {folds} rows per table, got {len(real)} and {len(synthetic)}.")
    real_seed, synthetic_seed, fold_seed = (int(s) for s in np.random.SeedSequence(seed).generate_state(3))
    data = pd.concat(
        [real.sample(n=n, random_state=real_seed), synthetic.sample(n=n, random_state=synthetic_seed)],
        ignore_index=True,
    )
    labels = np.r_[np.zeros(n), np.ones(n)]
    categorical, numerical = _feature_columns(metadata, None)
    model = _model("classification", categorical, numerical, seed)
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=fold_seed)
    proba = cross_val_predict(
        model, _prepare(data, categorical, numerical, metadata), labels, cv=cv, method="predict_proba"
    )
    return float(roc_auc_score(labels, proba[:, 1]))


def distance_to_closest_record(
    dataset: pd.DataFrame,
    reference: pd.DataFrame,
    metadata: dict,
    max_bytes: int = 8 * 2**20,
    exclude_self: bool = False,
) -> np.ndarray:
    """
    Distance to closest record of every row of `dataset` in `reference`, exactly as SDMetrics' `calculate_dcr`
    defines it: per column, numerical/datetime $\\min(|a - b| / \text{range}, 1)$ (range of the reference; a zero
    range gives 0/1), categorical/boolean 0 if equal else 1, a missing value against a present one 1 and two missing
    0; averaged over the columns. Re-implemented with chunked torch broadcasting because SDMetrics' pandas cross-join
    takes ~10-25 s per 1,000 x 1,000 rows on a CPU; equality with it is tested.

    `exclude_self=True` (`dataset` is `reference`, row for row): each row's distance to its closest *other* row
    (leave-one-out; a duplicate row gives 0), the second smallest distance since a row's distance to itself is 0.

    Returns:
        `[len(dataset)]` float64 distances in [0, 1].
    """
    import torch

    if exclude_self and (len(dataset) != len(reference) or len(dataset) < 2):
        raise ValueError(
            f"`exclude_self=True` measures a table against itself: got {len(dataset)} and {len(reference)} rows; "
            "pass the same table (at least 2 rows) as `dataset` and `reference`."
        )
    categorical, numerical = _feature_columns(metadata, None)
    categorical = [c for c in categorical if c in dataset.columns]
    numerical = [c for c in numerical if c in dataset.columns]
    if not categorical and not numerical:
        raise ValueError("There are no numerical or categorical columns to measure distances on.")

    def numbers(df):
        cols = []
        for c in numerical:
            cols.append(_as_number(df[c], metadata["columns"][c].get("datetime_format")).to_numpy())
        return torch.from_numpy(np.stack(cols, 1) if cols else np.zeros((len(df), 0)))

    a_num, b_num = numbers(dataset), numbers(reference)
    ranges = torch.from_numpy(np.nan_to_num(np.nanmax(b_num.numpy(), 0) - np.nanmin(b_num.numpy(), 0)))
    codes = []
    for c in categorical:  # shared integer codes; missing -> -1 on both sides, so two missing values are equal
        joint = pd.concat([dataset[c], reference[c]], ignore_index=True).astype(object)
        codes.append(pd.factorize(joint, use_na_sentinel=True)[0])
    codes = torch.from_numpy(np.stack(codes, 1) if codes else np.zeros((len(dataset) + len(reference), 0), int))
    a_cat, b_cat = codes[: len(dataset)], codes[len(dataset) :]
    n_cols = len(categorical) + len(numerical)
    rows = max(1, int(max_bytes // (max(len(reference), 1) * max(len(numerical), 1) * 8)))
    has_nan = bool(a_num.isnan().any() or b_num.isnan().any())
    constant = ranges == 0
    scale = torch.where(constant, torch.ones(()), 1.0 / ranges.clamp_min(1e-300))
    out = []
    for start in range(0, len(dataset), rows):
        a = a_num[start : start + rows, None, :]
        diff = (a - b_num[None]).abs_()
        if constant.any():
            diff[..., constant] = (diff[..., constant] > 0).double()
        scaled = diff.mul_(scale).clamp_(max=1.0)
        if has_nan:
            nan_a, nan_b = a.isnan(), b_num[None].isnan()
            scaled = torch.where(nan_a ^ nan_b, torch.ones(()), torch.where(nan_a & nan_b, torch.zeros(()), scaled))
        total = scaled.sum(-1)
        if categorical:
            total += (a_cat[start : start + rows, None, :] != b_cat[None]).sum(-1)
        distances = total / n_cols
        out.append(distances.kthvalue(2, dim=1).values if exclude_self else distances.min(1).values)
    return torch.cat(out).numpy()


def evaluate_table(
    real: pd.DataFrame,
    synthetic: pd.DataFrame,
    *,
    target: str | None = None,
    real_test: pd.DataFrame | None = None,
    metadata: dict | None = None,
    task: Task | None = None,
    test_size: float = 0.3,
    detection_folds: int = 5,
    sdmetrics_privacy: bool = True,
    output_dir: str | os.PathLike | None = None,
    dataset_name: str | None = None,
    seed: int = 0,
) -> EvaluationReport:
    r"""
    Fidelity, utility and privacy of a synthetic table.

    - Fidelity: SDMetrics' `QualityReport` (Column Shapes = KS/TV complements per column, Column Pair Trends =
      correlation/contingency similarity), and the detection AUC of a classifier two-sample test ([`detection_auc`]).
    - Utility (when `target` is given): [`train_synthetic_test_real`] on a real test set.
    - Privacy: distance to closest record (SDMetrics' range-normalised DCR, [`distance_to_closest_record`]) of
      synthetic rows to the real training rows (median, fraction of exact copies), the same for real held-out rows
      as the baseline when `real_test` is given and their ratio (`dcr_ratio`, a warning below 0.9), and
      SDMetrics' own `DCRBaselineProtection` (and `DCROverfittingProtection` with `real_test`) unless
      `sdmetrics_privacy=False`: those run SDMetrics' pandas DCR twice each, ~10-25 s per 1,000 x 1,000 rows on a CPU.

    Args:
        real (`pd.DataFrame`): the real data the generator was trained on.
        synthetic (`pd.DataFrame`): generated rows with the same columns (any order).
        target (`str`, *optional*): the column to predict for TSTR/TRTR.
        real_test (`pd.DataFrame`, *optional*): real rows the generator never saw. Without it, `real` is split
            (`test_size`, stratified for classification) and TSTR is optimistic if the generator saw those rows.
        metadata (`dict`, *optional*): SDMetrics single-table metadata; default [`infer_metadata`]`(real)`.
        task (`str`, *optional*): `"classification"` or `"regression"`; default from the target's sdtype.
        sdmetrics_privacy (`bool`, *optional*, defaults to `True`): compute SDMetrics' DCR protection scores.
        output_dir (`str`, *optional*): write a bar chart of the scores there.
        seed (`int`): seeds splits, folds, the model and the random DCR baseline.

    Returns:
        [`EvaluationReport`] with `modality="tabular"`.
    """
    with warnings.catch_warnings():  # sdmetrics warns about its own import paths on import
        warnings.simplefilter("ignore")
        from sdmetrics.reports.single_table import QualityReport

    metadata = metadata or infer_metadata(real)
    synthetic, notes = check_table_pair(real, synthetic, metadata)
    test_notes = []
    if real_test is not None:
        real_test, test_notes = check_table_pair(real, real_test, metadata, "real_test")
    report = EvaluationReport.for_sets("tabular", real, synthetic, dataset_name)
    report.warnings += notes
    report.details["metadata"] = metadata

    # 1. SDMetrics quality report; 2. detection (classifier two-sample test)
    _add_quality(report, QualityReport(), real, synthetic, metadata)
    _add_detection(report, real, synthetic, metadata, detection_folds, seed)
    # 3. utility: TSTR vs TRTR on the same real test rows
    if target is not None:
        _add_utility(report, real, synthetic, real_test, target, metadata, task, test_size, seed)
    # 4. privacy: distance to closest record (against a holdout when given), and SDMetrics' DCR protection scores
    _add_dcr(report, real, synthetic, real_test, metadata, test_notes)
    if sdmetrics_privacy:
        _add_sdmetrics_privacy(report, real, synthetic, real_test, metadata, seed)
    if output_dir is not None:
        _add_score_plot(report, output_dir)
    for w in report.warnings:
        logger.warning(w)
    return report


def _add_detection(report, real: pd.DataFrame, synthetic: pd.DataFrame, metadata: dict, folds: int, seed: int) -> None:
    """The detection AUC, and a warning at `DETECTION_WARNING` or above naming the columns whose SDMetrics shapes
    (`report.details["column_shapes"]`, from [`_add_quality`]) differ most from the real ones."""
    auc = detection_auc(real, synthetic, metadata, folds, seed)
    report.add(
        f"Detection AUC ({MODEL_NAME}, {folds}-fold)",
        auc,
        key="detection_auc",
        higher_is_better=False,
        description="0.5 = real and synthetic rows indistinguishable to the classifier.",
    )
    if auc >= DETECTION_WARNING:
        shapes = sorted(report.details.get("column_shapes", {}).items(), key=lambda item: item[1])[:3]
        worst = ", ".join(f"{name} ({score:.2f})" for name, score in shapes)
        report.warnings.append(
            f"Detection AUC {auc:.3f} >= {DETECTION_WARNING}: a classifier tells the synthetic rows from the real "
            f"ones. Column shapes furthest from the real ones: {worst}. Check them before publishing: a model that "
            "has not learnt them needs more updates or rows; a column of mostly once-seen levels (names, "
            "addresses) in a small table is better drawn outside the model (`marginal_columns`)."
        )


def _add_score_plot(report, output_dir: str | os.PathLike) -> None:
    from ..viz.evaluation import plot_metric_bars

    bars = {m.name: m.value for m in report.metrics if m.key not in ("dcr_median", "dcr_median_holdout")}
    report.artifacts["scores"] = plot_metric_bars(
        bars, os.path.join(output_dir, "table_scores.png"), title="Synthetic table evaluation"
    )


def _add_quality(report, quality, real: pd.DataFrame, synthetic: pd.DataFrame, metadata: dict) -> None:
    """SDMetrics' QualityReport: the score, column shapes and column pair trends."""
    quality.generate(real, synthetic, metadata, verbose=False)
    properties = quality.get_properties().set_index("Property")["Score"]
    report.add("SDMetrics Quality Score", quality.get_score(), key="quality_score", higher_is_better=True)
    for prop, key in (("Column Shapes", "column_shapes"), ("Column Pair Trends", "column_pair_trends")):
        report.add(f"SDMetrics {prop}", properties.get(prop, float("nan")), key=key, higher_is_better=True)
    shapes = quality.get_details("Column Shapes")
    report.details["column_shapes"] = dict(zip(shapes["Column"], shapes["Score"].astype(float)))


def _add_utility(report, real, synthetic, real_test, target: str, metadata: dict, task, test_size: float, seed: int):
    """TSTR vs TRTR on `target`, tested on `real_test` or else on a split of `real` (with a warning)."""
    if target not in real.columns:
        raise ValueError(f"`target` {target!r} is not a column of the real table; columns: {list(real.columns)}.")
    task = _task(metadata, target, task)
    if real_test is None:
        from sklearn.model_selection import train_test_split

        stratify = real[target] if task == "classification" and real[target].value_counts().min() >= 2 else None
        real_train, held_out = train_test_split(real, test_size=test_size, random_state=seed, stratify=stratify)
        report.warnings.append(
            "TSTR is scored on a split of `real`; if the generator was trained on all of `real` it has seen those "
            "test rows. Pass `real_test` (rows the generator never saw) for an unbiased utility estimate."
        )
    else:
        real_train, held_out = real, real_test
    tstr = train_synthetic_test_real(real_train, synthetic, held_out, target, metadata, task, seed)
    report.add(f"TSTR {tstr.metric} ({MODEL_NAME}, target {target})", tstr.tstr, key="tstr", higher_is_better=True)
    report.add(f"TRTR {tstr.metric} ({MODEL_NAME}, target {target})", tstr.trtr, key="trtr", higher_is_better=True)
    report.add("TSTR / TRTR", tstr.ratio, key="tstr_ratio", higher_is_better=True)
    report.details["tstr"] = tstr.to_dict()


def _add_dcr(report, real, synthetic, real_test, metadata: dict, test_notes: list[str]) -> None:
    """Distance to closest record synthetic→real, the exact-copy rate, and the DCR ratio against a holdout."""
    dcr = distance_to_closest_record(synthetic, real, metadata)
    report.add("Median DCR synthetic→real (SDMetrics definition)", float(np.median(dcr)), key="dcr_median")
    report.add(
        "Exact-copy rate (synthetic rows with DCR = 0)",
        float(np.mean(dcr == 0)),
        key="exact_copy_rate",
        higher_is_better=False,
    )
    if real_test is not None:
        from .tabular_privacy import DCRRatio

        holdout_dcr = distance_to_closest_record(real_test, real, metadata)
        report.add("Median DCR real holdout→real (baseline)", float(np.median(holdout_dcr)), key="dcr_median_holdout")
        median_holdout = float(np.median(holdout_dcr))
        ratio = DCRRatio(
            ratio=float(np.median(dcr)) / median_holdout if median_holdout > 0 else float("nan"),
            median_synthetic=float(np.median(dcr)),
            median_holdout=median_holdout,
        )
        report.add(
            "DCR ratio (median DCR synthetic→train / holdout→train)",
            ratio.ratio,
            key="dcr_ratio",
            description="About 1: as far from the training rows as unseen real rows; below 0.9: memorisation.",
        )
        report.details["dcr_ratio"] = ratio.to_dict()
        report.warnings += test_notes + ([ratio.warning] if ratio.warning else [])


def _add_sdmetrics_privacy(report, real, synthetic, real_test, metadata: dict, seed: int) -> None:
    """SDMetrics' DCRBaselineProtection (seeded) and, with a holdout, DCROverfittingProtection."""
    with warnings.catch_warnings():  # sdmetrics warns about its own import paths on import
        warnings.simplefilter("ignore")
        from sdmetrics.single_table import DCRBaselineProtection, DCROverfittingProtection

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # sdmetrics draws its random baseline with `np.random.default_rng(cls._seed)`: a subclass seeds it
        # without touching the library's class.
        seeded = type("SeededDCRBaselineProtection", (DCRBaselineProtection,), {"_seed": seed})
        baseline = seeded.compute_breakdown(real, synthetic, metadata, None)
    report.add(
        "SDMetrics DCRBaselineProtection", baseline["score"], key="dcr_baseline_protection", higher_is_better=True
    )
    report.details["dcr_baseline_protection"] = baseline
    if real_test is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            overfit = DCROverfittingProtection.compute_breakdown(real, synthetic, real_test, metadata, None)
        report.add(
            "SDMetrics DCROverfittingProtection",
            overfit["score"],
            key="dcr_overfitting_protection",
            higher_is_better=True,
        )
        report.details["dcr_overfitting_protection"] = overfit
