"""Tables: one evaluation report of SDMetrics quality, detection AUC, machine-learning utility (TSTR vs TRTR) and
distance to closest record, each computed by its own module (`tabular_schema`, `tabular_learners`,
`tabular_privacy`)."""

from __future__ import annotations

import logging
import os
import warnings

import numpy as np
import pandas as pd

from .report import EvaluationReport
from .tabular_learners import MODEL_NAME, Task, detection_auc, task_of, train_synthetic_test_real
from .tabular_privacy import DCRRatio, distance_to_closest_record, independent_columns_ratio, reference_distances
from .tabular_schema import check_table_pair, infer_metadata, parse_own_date_formats

__all__ = ["DETECTION_WARNING", "evaluate_table"]

logger = logging.getLogger(__name__)

# a detection AUC from here on is warned about: rows this separable give themselves away (GaussianCopula on vega's
# seattle-weather: 0.96; ours on the benchmark's tables: 0.46-0.75)
DETECTION_WARNING = 0.9


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
      as the baseline when `real_test` is given and their ratio (`dcr_ratio`), the ratio against the guard's
      reference (`dcr_ratio_pooled`: the holdout pooled with the training rows' leave-one-out distances; a warning
      below 0.9), and
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

    metadata, (real, synthetic, real_test) = parse_own_date_formats(
        metadata or infer_metadata(real), real, synthetic, real_test
    )
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
    _add_dcr(report, real, synthetic, real_test, metadata, test_notes, seed)
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
    task = task_of(metadata, target, task)
    if real_test is None:
        from sklearn.model_selection import train_test_split

        stratify = real[target] if task == "classification" and real[target].value_counts().min() >= 2 else None
        real_train, held_out = train_test_split(real, test_size=test_size, random_state=seed, stratify=stratify)
        report.warnings.append(
            "TSTR is scored on a split of `real`; if the generator was trained on all of `real` it has seen those "
            "test rows. Pass `real_test` (rows the generator never saw; `--test_data` in `diffusers-xai evaluate`) "
            "for an unbiased utility estimate."
        )
    else:
        real_train, held_out = real, real_test
    tstr = train_synthetic_test_real(real_train, synthetic, held_out, target, metadata, task, seed)
    report.add(f"TSTR {tstr.metric} ({MODEL_NAME}, target {target})", tstr.tstr, key="tstr", higher_is_better=True)
    report.add(f"TRTR {tstr.metric} ({MODEL_NAME}, target {target})", tstr.trtr, key="trtr", higher_is_better=True)
    report.add("TSTR / TRTR", tstr.ratio, key="tstr_ratio", higher_is_better=True)
    report.details["tstr"] = tstr.to_dict()


def _add_dcr(report, real, synthetic, real_test, metadata: dict, test_notes: list[str], seed: int) -> None:
    """Distance to closest record synthetic→real, the exact-copy rate, and the DCR ratio against a holdout beside
    that of rows that copy no row (`independent_columns_ratio`, seeded by `seed`)."""
    dcr = distance_to_closest_record(synthetic, real, metadata)
    report.add("Median DCR synthetic→real (SDMetrics definition)", float(np.median(dcr)), key="dcr_median")
    report.add(
        "Exact-copy rate (synthetic rows with DCR = 0)",
        float(np.mean(dcr == 0)),
        key="exact_copy_rate",
        higher_is_better=False,
    )
    if real_test is not None:
        reference = reference_distances(real, real_test, metadata)  # the holdout's distances first
        baseline = independent_columns_ratio(real, reference, metadata, seed)
        ratio = DCRRatio.from_distances(dcr, reference[: len(real_test)], baseline, reference)
        report.add("Median DCR real holdout→real (baseline)", ratio.median_holdout, key="dcr_median_holdout")
        report.add(
            "DCR ratio (median DCR synthetic→train / holdout→train)",
            ratio.ratio,
            key="dcr_ratio",
            description="About 1: as far from the training rows as unseen real rows; below 1: closer (copying).",
        )
        report.add(
            "DCR ratio against holdout + leave-one-out training rows (the guard's reference)",
            ratio.pooled_ratio,
            key="dcr_ratio_pooled",
            description="The same ratio over more real rows; below 0.9: memorisation (the warning reads this one).",
        )
        report.add(
            "DCR ratio of rows that copy no row (each column drawn on its own)",
            baseline,
            key="dcr_ratio_independent_columns",
            description="Below 0.9 the DCR ratio cannot tell copying on this table.",
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
