"""
Modality plug-ins: one folder per modality (`image/`, `tabular/`, `timeseries/`) holding its data loading and
preprocessor, denoiser, pipeline and the [`Modality`] class that ties them together; `get_modality(name)` is the one
way the trainer, generation, evaluation CLI, cards and the Space reach them.
"""

from .base import *  # noqa: F403  (the registry and the plug-in base class)
from .base import __all__  # noqa: F401
