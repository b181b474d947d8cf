"""Modality plug-ins (image, tabular, time series): dataset → tensors, denoiser factory, pipeline, preprocessor."""

from .base import MODALITIES, Modality, get_modality, register_modality

__all__ = ["MODALITIES", "Modality", "get_modality", "register_modality"]
