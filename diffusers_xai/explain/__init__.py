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
from .explain import DEFAULT_METHODS, EXPLAIN_METHODS, Explainer, ExplanationReport, explain_generation
from .faithfulness import (
    FaithfulnessResult,
    deletion_insertion,
    diffused_baseline,
    perturbation_curve,
    perturbation_curves,
    random_map_curves,
)
from .gradcam import DenoiserGradCAM, default_gradcam_layers, grad_cam
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
    "ConditionContrast",
    "ConditionContrastForward",
    "ConditionTarget",
    "passing_methods",
    "planted_images",
    "planted_series",
    "planted_table",
    "pointing_game",
    "rank_correlation",
    "recover_class_region",
    "recover_lag",
    "recover_parents",
    "top_k_precision",
    "verdict_table",
    "TextToImageExplainer",
    "TextToImageExplanation",
    "explain_prompt",
    "ColumnCommitResult",
    "TabularExplanation",
    "column_attributions",
    "column_commit_steps",
    "column_target",
    "SeriesCommitResult",
    "series_commit_steps",
    "series_target",
    "step_trace",
    "ATTRIBUTION_METHODS",
    "ConfidenceInterval",
    "ExplanationChecks",
    "FaithfulnessCheck",
    "RandomizationCheck",
    "bootstrap_ci",
    "cascade_stages",
    "cascading_randomization",
    "class_embedding_module",
    "diffused_baseline",
    "faithfulness_check",
    "faithfulness_curves",
    "perturbation_curves",
    "run_checks",
    "spearman_per_map",
    "x0_coefficients",
    "DEFAULT_METHODS",
    "EXPLAIN_METHODS",
    "AttentionExplainer",
    "DenoiserAttribution",
    "DenoiserExplainer",
    "DenoiserForward",
    "DenoiserGradCAM",
    "DenoiserShap",
    "ExplanationReport",
    "ExplanationResult",
    "ExplanationTarget",
    "Explainer",
    "FaithfulnessResult",
    "SanityCheckResult",
    "TrajectoryAnalysis",
    "analyze_trajectory",
    "attention_maps",
    "commit_steps",
    "default_gradcam_layers",
    "deletion_insertion",
    "explain_generation",
    "grad_cam",
    "map_similarity",
    "model_randomization_check",
    "noise_level_baselines",
    "perturbation_curve",
    "probabilities_to_maps",
    "random_map_curves",
    "randomize_model",
    "resolve_target",
    "select_sample",
]
