"""Explainers of diffusion generations: GradCAM, attention maps, captum attributions, SHAP, trajectories, faithfulness.

Every explainer follows captum's verb: the constructor binds the pipeline (or denoiser) and its choices, and
`attribute(inputs, timesteps=..., target=...)` explains a [`Trace`] (or a batch $x_t$ `[B, *S]`: images, table rows,
series windows) at chosen steps, returning an [`ExplanationResult`]. The same classes serve every modality; tables
and series add targets ([`column_target`], [`series_target`]). Plotting lives in `diffusers_xai.viz`.
"""

from .attention import AttentionExplainer, attention_maps, probabilities_to_maps
from .attributions import ATTRIBUTION_METHODS, DenoiserAttribution, noise_level_baselines
from .base import DenoiserExplainer, ExplanationResult, select_sample, step_trace
from .checks import (
    ConfidenceInterval,
    ExplanationChecks,
    FaithfulnessCheck,
    bootstrap_ci,
    faithfulness_check,
    faithfulness_curves,
    run_checks,
)
from .condition import ConditionContrast, ConditionContrastForward, ConditionTarget
from .explain import (
    DEFAULT_METHODS,
    EXPLAIN_METHODS,
    IMAGE_INIT_DEFAULTS,
    Explainer,
    ExplanationReport,
    build_explainer,
)
from .faithfulness import (
    FaithfulnessResult,
    deletion_insertion,
    diffused_baseline,
    perturbation_curve,
    perturbation_curves,
    random_map_curves,
)
from .gradcam import (
    GRADCAM_LAYER_PRESETS,
    DenoiserGradCAM,
    default_gradcam_layers,
    grad_cam,
    output_gradcam_layers,
    vanishing_gradcam_layers,
)
from .planted import (
    planted_images,
    planted_series,
    planted_table,
    pointing_game,
    rank_correlation,
    recover_class_region,
    recover_lag,
    recover_parents,
    top_k_precision,
)
from .randomization import (
    RandomizationCheck,
    SanityCheckResult,
    cascade_stages,
    cascading_randomization,
    map_similarity,
    model_randomization_check,
    randomize_model,
    spearman_per_map,
)
from .shap_explainer import DenoiserShap
from .tabular import ColumnCommitResult, TabularExplanation, column_attributions, column_commit_steps, column_target
from .target import DenoiserForward, ExplanationTarget, class_embedding_module, resolve_target, x0_coefficients
from .text_to_image import TextToImageExplainer, TextToImageExplanation, explain_prompt
from .timeseries import SeriesCommitResult, series_commit_steps, series_target
from .trajectory import TrajectoryAnalysis, analyze_trajectory, commit_steps
from .verdicts import passing_methods, verdict_table

__all__ = [
    "ATTRIBUTION_METHODS",
    "DEFAULT_METHODS",
    "EXPLAIN_METHODS",
    "GRADCAM_LAYER_PRESETS",
    "IMAGE_INIT_DEFAULTS",
    "AttentionExplainer",
    "ColumnCommitResult",
    "ConditionContrast",
    "ConditionContrastForward",
    "ConditionTarget",
    "ConfidenceInterval",
    "DenoiserAttribution",
    "DenoiserExplainer",
    "DenoiserForward",
    "DenoiserGradCAM",
    "DenoiserShap",
    "Explainer",
    "ExplanationChecks",
    "ExplanationReport",
    "ExplanationResult",
    "ExplanationTarget",
    "FaithfulnessCheck",
    "FaithfulnessResult",
    "RandomizationCheck",
    "SanityCheckResult",
    "SeriesCommitResult",
    "TabularExplanation",
    "TextToImageExplainer",
    "TextToImageExplanation",
    "TrajectoryAnalysis",
    "analyze_trajectory",
    "attention_maps",
    "bootstrap_ci",
    "build_explainer",
    "cascade_stages",
    "cascading_randomization",
    "class_embedding_module",
    "column_attributions",
    "column_commit_steps",
    "column_target",
    "commit_steps",
    "default_gradcam_layers",
    "deletion_insertion",
    "diffused_baseline",
    "explain_prompt",
    "faithfulness_check",
    "faithfulness_curves",
    "grad_cam",
    "map_similarity",
    "model_randomization_check",
    "noise_level_baselines",
    "output_gradcam_layers",
    "passing_methods",
    "perturbation_curve",
    "perturbation_curves",
    "planted_images",
    "planted_series",
    "planted_table",
    "pointing_game",
    "probabilities_to_maps",
    "random_map_curves",
    "randomize_model",
    "rank_correlation",
    "recover_class_region",
    "recover_lag",
    "recover_parents",
    "resolve_target",
    "run_checks",
    "select_sample",
    "series_commit_steps",
    "series_target",
    "spearman_per_map",
    "step_trace",
    "top_k_precision",
    "vanishing_gradcam_layers",
    "verdict_table",
    "x0_coefficients",
]
