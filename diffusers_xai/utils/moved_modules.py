"""
Old module paths of classes that a saved pipeline names in its `model_index.json`.

diffusers' `from_pretrained` takes each component's class from the module recorded at save time
(`["diffusers_xai.data.tabular", "TabularPreprocessor"]`), and only from `sys.modules`: it never imports a module a
repository names. Those modules moved into their modality's folder, so each modality package registers its modules
under their old names too, and pipelines saved before the move (on the Hub, in the Space's bundled checkpoints) still
load. Nothing should import these names.
"""

from __future__ import annotations

import sys

__all__ = ["MOVED_MODULES", "alias_moved_modules"]

# old module → new module
MOVED_MODULES = {
    "diffusers_xai.data.tabular": "diffusers_xai.modalities.tabular.data",
    "diffusers_xai.data.timeseries": "diffusers_xai.modalities.timeseries.data",
    "diffusers_xai.models.tabular_denoiser": "diffusers_xai.modalities.tabular.denoiser",
    "diffusers_xai.models.timeseries_denoiser": "diffusers_xai.modalities.timeseries.denoiser",
}


def alias_moved_modules() -> None:
    """Register each imported new module under its old name in `sys.modules` (a modality package calls this)."""
    for old, new in MOVED_MODULES.items():
        if new in sys.modules:
            sys.modules.setdefault(old, sys.modules[new])
