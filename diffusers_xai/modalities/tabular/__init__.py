"""The tabular modality: a table → quantile-normal rows ([`TabularPreprocessor`]), a [`TabularDenoiser`],
[`TabularXAIPipeline`]."""

from ...utils.moved_modules import alias_moved_modules
from .conditions import sample_with_values
from .data import TABULAR_DATASETS, load_breast_cancer_frame, load_table, load_wine_frame
from .denoiser import TabularDenoiser, TabularDenoiserOutput
from .modality import TabularModality
from .pipeline_tabular import TabularXAIPipeline, TabularXAIPipelineOutput
from .preprocessor import TabularPreprocessor

alias_moved_modules()  # pipelines saved before the move name the old modules

__all__ = [
    "TABULAR_DATASETS",
    "TabularDenoiser",
    "TabularDenoiserOutput",
    "TabularModality",
    "TabularPreprocessor",
    "TabularXAIPipeline",
    "TabularXAIPipelineOutput",
    "load_breast_cancer_frame",
    "load_table",
    "load_wine_frame",
    "sample_with_values",
]
