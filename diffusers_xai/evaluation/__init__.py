"""
Evaluation of generated data: images (FID/KID/IS in a named feature space, precision/recall/density/coverage,
diversity, memorisation), tables (SDMetrics quality, TSTR vs TRTR, detection AUC, DCR) and time series (TimeGAN
discriminative/predictive scores, autocorrelation distance, embedding FID). Each `evaluate_*` returns an
[`EvaluationReport`] that serialises to JSON and lists `(metric_name, value)` pairs for model cards.
"""

from .diversity import ClassCoverage, class_coverage, mean_pairwise_distance
from .features import (
    DigitsCNN,
    FeatureSet,
    InceptionFeatureExtractor,
    extract_features,
    is_torch_fidelity_available,
    resolve_feature_extractor,
)
from .fid import frechet_distance, inception_score, kernel_distance
from .images import add_image_distances, evaluate_images
from .inputs import to_unit_images
from .memorization import MemorizationResult, memorization_test
from .neighbors import kth_nearest_distance, nearest_neighbours
from .prdc import PRDC, compute_prdc
from .report import EvaluationReport, MetricResult
from .tabular import evaluate_table
from .tabular_learners import TSTRResult, detection_auc, train_synthetic_test_real
from .tabular_privacy import distance_to_closest_record
from .tabular_schema import infer_metadata
from .timeseries import (
    WindowStatsEncoder,
    autocorrelation,
    autocorrelation_distance,
    discriminative_score,
    evaluate_timeseries,
    predictive_score,
)

__all__ = [
    "PRDC",
    "ClassCoverage",
    "DigitsCNN",
    "EvaluationReport",
    "FeatureSet",
    "InceptionFeatureExtractor",
    "MemorizationResult",
    "MetricResult",
    "TSTRResult",
    "WindowStatsEncoder",
    "add_image_distances",
    "autocorrelation",
    "autocorrelation_distance",
    "class_coverage",
    "compute_prdc",
    "detection_auc",
    "discriminative_score",
    "distance_to_closest_record",
    "evaluate_images",
    "evaluate_table",
    "evaluate_timeseries",
    "extract_features",
    "frechet_distance",
    "inception_score",
    "infer_metadata",
    "is_torch_fidelity_available",
    "kernel_distance",
    "kth_nearest_distance",
    "mean_pairwise_distance",
    "memorization_test",
    "nearest_neighbours",
    "predictive_score",
    "resolve_feature_extractor",
    "to_unit_images",
    "train_synthetic_test_real",
]
