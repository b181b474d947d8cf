"""
Old module paths of classes that a saved pipeline names in its `model_index.json`.

diffusers' `from_pretrained` takes each component's class from the module recorded at save time
(`["diffusers_xai.data.tabular", "TabularPreprocessor"]`), and only from `sys.modules`: it never imports a module a
repository names. Those modules moved into their modality's folder, so each modality package registers its modules
under their old names too, and pipelines saved before the move (on the Hub, in the Space's bundled checkpoints) still
load. Nothing should import these names. Likewise a component class that left a module which still exists is found
there through the module's `__getattr__` ([`moved_attribute_getter`]).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import Any

__all__ = ["MOVED_COMPONENTS", "MOVED_MODULES", "alias_moved_modules", "moved_attribute_getter"]

# old module → new module
MOVED_MODULES = {
    "diffusers_xai.data.tabular": "diffusers_xai.modalities.tabular.data",
    "diffusers_xai.data.timeseries": "diffusers_xai.modalities.timeseries.data",
    "diffusers_xai.models.tabular_denoiser": "diffusers_xai.modalities.tabular.denoiser",
    "diffusers_xai.models.timeseries_denoiser": "diffusers_xai.modalities.timeseries.denoiser",
}


# module → the module that now holds the pipeline component it defined (and the names diffusers looks up beside it)
MOVED_COMPONENTS = {
    "diffusers_xai.modalities.tabular.data": "diffusers_xai.modalities.tabular.preprocessor",
    "diffusers_xai.modalities.timeseries.data": "diffusers_xai.modalities.timeseries.preprocessor",
}


_MISSING = object()


def moved_attribute_getter(module: str) -> Callable[[str], Any]:
    """
    A module-level `__getattr__` (PEP 562) for `module` that looks a name the module lacks up in the module
    [`MOVED_COMPONENTS`] names, imported on first use (it imports `module`, so it cannot be imported back at load).
    diffusers reads from a component's recorded module its class and the base classes it checks the class against
    (`ModelMixin`, ...), so the lookup forwards every name the new module has, as `alias_moved_modules` does.
    """

    def __getattr__(name: str) -> Any:
        value = getattr(importlib.import_module(MOVED_COMPONENTS[module]), name, _MISSING)
        if value is _MISSING:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        return value

    return __getattr__


def alias_moved_modules() -> None:
    """Register each imported new module under its old name in `sys.modules` (a modality package calls this)."""
    for old, new in MOVED_MODULES.items():
        if new in sys.modules:
            sys.modules.setdefault(old, sys.modules[new])
