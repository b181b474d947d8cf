"""
Modality plug-ins: one folder per modality (`image/`, `tabular/`, `timeseries/`) holding its data loading and
preprocessor, denoiser, pipeline and the [`Modality`] class that ties them together; `get_modality(name)` is the one
way the trainer, generation, evaluation CLI, cards and the Space reach them.
"""

from .base import (
    BUILTIN_MODALITIES,
    MODALITIES,
    RENAMED_MODALITIES,
    Modality,
    check_modality_name,
    get_modality,
    list_modalities,
    modality_of,
    register_modality,
)

__all__ = [
    "BUILTIN_MODALITIES",
    "MODALITIES",
    "RENAMED_MODALITIES",
    "Modality",
    "check_modality_name",
    "get_modality",
    "list_modalities",
    "modality_of",
    "register_modality",
]
