"""The image modality: HF image datasets → `[B, C, H, W]` tensors, a `UNet2DModel`, [`DiffusionXAIPipeline`]."""

from .data import load_digits_dataset, load_digits_tensors
from .modality import BUILTIN_IMAGE_DATASETS, ImageModality
from .pipeline_diffusion_xai import DiffusionXAIPipeline, DiffusionXAIPipelineOutput

__all__ = [
    "BUILTIN_IMAGE_DATASETS",
    "DiffusionXAIPipeline",
    "DiffusionXAIPipelineOutput",
    "ImageModality",
    "load_digits_dataset",
    "load_digits_tensors",
]
