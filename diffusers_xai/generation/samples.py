"""Which modality writes a pipeline's samples as dataset columns.

[`generate_dataset`] asks the registered [`Modality`] of the pipeline (its `pipeline_class`, or a base class of the
pipeline's class) for its [`Modality.sample_batch`]: `(pipeline, generators, num_inference_steps, trace)` → a
[`SampleBatch`]. Adding a modality is its `sample_batch` method; nothing here names one.
"""

from __future__ import annotations

from ..modalities.base import Modality, SampleBatch
from ..modalities.registry import list_modalities

__all__ = ["SampleBatch", "sample_modality"]


def sample_modality(pipeline) -> Modality:
    """The registered modality whose `pipeline_class` is `pipeline`'s class (or the nearest base class) and that
    writes generated datasets (implements `sample_batch`); `ValueError` naming the supported pipelines otherwise."""
    modalities = [m for m in list_modalities() if type(m).sample_batch is not Modality.sample_batch]
    for cls in type(pipeline).__mro__:
        for modality in modalities:
            if modality.pipeline_class is cls:
                return modality
    raise ValueError(
        f"Cannot generate a dataset from a {type(pipeline).__name__}: supported pipelines are "
        f"{sorted(m.pipeline_class.__name__ for m in modalities)}. Register a `Modality` whose `pipeline_class` it "
        "is and that implements `sample_batch` (`diffusers_xai.register_modality`)."
    )
