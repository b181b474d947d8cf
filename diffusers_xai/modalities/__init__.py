"""
Modality plug-ins: one folder per modality (`image/`, `tabular/`, `timeseries/`) holding its data loading and
preprocessor, denoiser, pipeline and the [`Modality`] class that ties them together; `get_modality(name)` is the one
way the trainer, generation, evaluation CLI, cards and the Space reach them.
"""

from . import base, hf_datasets, registry, sampling
from .base import *  # noqa: F403  (the plug-in base class)
from .hf_datasets import *  # noqa: F403  (training data as HF datasets)
from .registry import *  # noqa: F403  (the registry)
from .sampling import *  # noqa: F403  (sampling for validation, evaluation and explanations)

__all__ = [*base.__all__, *hf_datasets.__all__, *registry.__all__, *sampling.__all__]
