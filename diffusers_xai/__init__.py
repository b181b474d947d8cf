"""diffusers-xai: generate synthetic data with diffusion models and explain every generation.

Importing the package is cheap: each public name is imported from its submodule on first use (PEP 562), as diffusers'
own `_LazyModule` does (written out here because that class is private API). An eager import of everything (torch,
diffusers, captum, shap, sdmetrics, datasets) costs ~12 CPU-seconds, paid by every CLI call and every
`accelerate launch` process.
"""

# ruff: noqa: F401  (the TYPE_CHECKING imports below are re-exported through the lazy __getattr__)
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

# submodule -> the public names it provides at the top level
_EXPORTS: dict[str, list[str]] = {
    "capture": [
        "ActivationCapture",
        "AttentionProbabilityCapture",
        "CapturingAttnProcessor",
        "LatentTraceCallback",
        "Trace",
        "TraceConfig",
        "TraceRecorder",
        "TraceStep",
        "find_attention_modules",
    ],
    "evaluation": [
        "EvaluationReport",
        "MetricResult",
        "compute_prdc",
        "evaluate_images",
        "evaluate_table",
        "evaluate_timeseries",
        "memorization_test",
    ],
    "explain": [
        "AttentionExplainer",
        "ConditionContrast",
        "ConditionTarget",
        "verdict_table",
        "TextToImageExplainer",
        "explain_prompt",
        "DenoiserAttribution",
        "DenoiserGradCAM",
        "DenoiserShap",
        "Explainer",
        "ExplanationReport",
        "ExplanationResult",
        "ExplanationTarget",
        "ExplanationChecks",
        "TrajectoryAnalysis",
        "analyze_trajectory",
        "cascading_randomization",
        "deletion_insertion",
        "faithfulness_check",
        "model_randomization_check",
        "randomize_model",
        "run_checks",
    ],
    "generation": [
        "GenerationManifest",
        "GenerationResult",
        "SampleBatch",
        "dataset_card",
        "generate_dataset",
        "load_pipeline",
        "push_dataset_to_hub",
    ],
    "hub": [
        "ExplanationCardData",
        "HubPushError",
        "explanation_card",
        "load_explanation_card_data",
        "publish",
        "save_explanation_card",
        "save_pretrained_with_card",
    ],
    "modalities": [
        "Modality",
        "ModalityOptions",
        "get_modality",
        "list_modalities",
        "modality_of",
        "register_modality",
    ],
    "modalities.explanations": ["explain_generation"],
    "modalities.image": ["DiffusionXAIPipeline", "DiffusionXAIPipelineOutput"],
    "modalities.tabular": ["TabularXAIPipeline", "TabularXAIPipelineOutput"],
    "modalities.timeseries": ["TimeSeriesXAIPipeline", "TimeSeriesXAIPipelineOutput"],
    "pipelines": [
        "SCHEDULERS",
        "DiffusionStep",
        "SamplingRun",
        "XAIPipelineMixin",
        "make_scheduler",
        "predict_original_sample",
    ],
    "training": ["NonFiniteLossError", "TrainingConfig", "TrainResult", "digits_config", "train"],
}
_SUBMODULES = ("models", "viz")
_NAME_TO_MODULE = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = ["__version__", *_SUBMODULES, *_NAME_TO_MODULE]


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    module = _NAME_TO_MODULE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # what type checkers and IDEs see
    from . import models, viz
    from .capture import (
        ActivationCapture,
        AttentionProbabilityCapture,
        CapturingAttnProcessor,
        LatentTraceCallback,
        Trace,
        TraceConfig,
        TraceRecorder,
        TraceStep,
        find_attention_modules,
    )
    from .evaluation import (
        EvaluationReport,
        MetricResult,
        compute_prdc,
        evaluate_images,
        evaluate_table,
        evaluate_timeseries,
        memorization_test,
    )
    from .explain import (
        AttentionExplainer,
        ConditionContrast,
        ConditionTarget,
        DenoiserAttribution,
        DenoiserGradCAM,
        DenoiserShap,
        Explainer,
        ExplanationChecks,
        ExplanationReport,
        ExplanationResult,
        ExplanationTarget,
        TextToImageExplainer,
        TrajectoryAnalysis,
        analyze_trajectory,
        cascading_randomization,
        deletion_insertion,
        explain_prompt,
        faithfulness_check,
        model_randomization_check,
        randomize_model,
        run_checks,
        verdict_table,
    )
    from .generation import (
        GenerationManifest,
        GenerationResult,
        SampleBatch,
        dataset_card,
        generate_dataset,
        load_pipeline,
        push_dataset_to_hub,
    )
    from .hub import (
        ExplanationCardData,
        HubPushError,
        explanation_card,
        load_explanation_card_data,
        publish,
        save_explanation_card,
        save_pretrained_with_card,
    )
    from .modalities import Modality, ModalityOptions, get_modality, list_modalities, modality_of, register_modality
    from .modalities.explanations import explain_generation
    from .modalities.image import DiffusionXAIPipeline, DiffusionXAIPipelineOutput
    from .modalities.tabular import TabularXAIPipeline, TabularXAIPipelineOutput
    from .modalities.timeseries import TimeSeriesXAIPipeline, TimeSeriesXAIPipelineOutput
    from .pipelines import (
        SCHEDULERS,
        DiffusionStep,
        SamplingRun,
        XAIPipelineMixin,
        make_scheduler,
        predict_original_sample,
    )
    from .training import (
        NonFiniteLossError,
        TrainingConfig,
        TrainResult,
        digits_config,
        train,
    )
