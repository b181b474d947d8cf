"""Denoiser building blocks shared by the modalities (`embeddings`, the `forward` skeleton in `denoiser`), and the
denoisers themselves, which live with their modality (`diffusers_xai.modalities.<name>.denoiser`) and are
re-exported here on first use."""

import importlib

from .denoiser import TimestepDenoiserMixin
from .embeddings import TimestepEmbedder, broadcast_timesteps

_DENOISERS = {
    "TabularDenoiser": "tabular",
    "TabularDenoiserOutput": "tabular",
    "TimeSeriesDenoiser": "timeseries",
    "TimeSeriesDenoiserOutput": "timeseries",
}

__all__ = ["TimestepDenoiserMixin", "TimestepEmbedder", "broadcast_timesteps", *_DENOISERS]


def __getattr__(name: str):
    if name not in _DENOISERS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"..modalities.{_DENOISERS[name]}.denoiser", __name__), name)
