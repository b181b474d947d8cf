"""The modality registry: `register_modality` adds a [`Modality`] class under its `name`, and `get_modality(name)` is
the one way the trainer, generation, evaluation, the cards and the Space reach a modality (importing a built-in one's
folder on first use)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .base import Modality

__all__ = [
    "BUILTIN_MODALITIES",
    "MODALITIES",
    "RENAMED_MODALITIES",
    "check_modality_name",
    "get_modality",
    "list_modalities",
    "modality_of",
    "register_modality",
]

MODALITIES: dict[str, type[Modality]] = {}
# the folders of `diffusers_xai/modalities/`, imported (and so registered) on first use
BUILTIN_MODALITIES = ("image", "tabular", "timeseries")


def register_modality(cls: type[Modality]) -> type[Modality]:
    """Class decorator adding a modality to the registry under `cls.name`."""
    MODALITIES[cls.name] = cls
    return cls


# names used before `Modality.name` was the only identifier: they raise, naming the new one
RENAMED_MODALITIES = {"images": "image", "table": "tabular", "time-series": "timeseries"}


def check_modality_name(name) -> str:
    """`name` unchanged, or a `ValueError` naming the current name if `name` is one of [`RENAMED_MODALITIES`]."""
    if isinstance(name, str) and name in RENAMED_MODALITIES:
        raise ValueError(f"The modality {name!r} is now called {RENAMED_MODALITIES[name]!r}; use that name.")
    return name


def get_modality(name: str) -> Modality:
    """The registered modality `name`, importing `diffusers_xai.modalities.<name>` on first use."""
    check_modality_name(name)
    if isinstance(name, str) and name not in MODALITIES and name.isidentifier():
        try:
            importlib.import_module(f"{__package__}.{name}")
        except ModuleNotFoundError as err:
            if err.name != f"{__package__}.{name}":
                raise
    if name not in MODALITIES:
        raise ValueError(
            f"Unknown modality {name!r}; choose one of {sorted(set(MODALITIES) | set(BUILTIN_MODALITIES))}."
        )
    return MODALITIES[name]()


def list_modalities() -> list[Modality]:
    """Every registered modality: the built-in ones in [`BUILTIN_MODALITIES`] order, then the others in registration
    order, so the Space's tabs (one per entry, the first one shown) do not depend on which module was imported
    first."""
    builtin = [get_modality(name) for name in BUILTIN_MODALITIES]
    return builtin + [cls() for name, cls in MODALITIES.items() if name not in BUILTIN_MODALITIES]


def modality_of(pipeline_or_class, denoisers: list[str] | tuple[str, ...] = ()) -> Modality:
    """
    The registered modality of a pipeline: the one whose `pipeline_class` is its class (`pipeline_or_class` is an
    instance, a class or a class name as in `model_index.json`'s `_class_name`), else, for a stock diffusers
    pipeline, the one whose `denoiser_prefixes` start one of the `denoisers` class names (`"UNet2DModel"` → image).
    """
    if isinstance(pipeline_or_class, str):
        name = pipeline_or_class
    else:
        cls = pipeline_or_class if isinstance(pipeline_or_class, type) else type(pipeline_or_class)
        name = cls.__name__
    modalities = list_modalities()
    for modality in modalities:
        if modality.pipeline_class.__name__ == name:
            return modality
    for modality in modalities:
        if modality.denoiser_prefixes and any(d.startswith(modality.denoiser_prefixes) for d in denoisers):
            return modality
    raise ValueError(
        f"No registered modality generates with a {name!r} pipeline (the registered ones use "
        f"{[m.pipeline_class.__name__ for m in modalities]})."
    )
