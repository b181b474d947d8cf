"""The repository's scripts outside the package (`bench/`, `train/`, `spaces/`), imported as modules by tests."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]


def load_script(relative: str, name: str | None = None) -> ModuleType:
    """`ROOT / relative` (e.g. `"bench/tabular_quality.py"`) imported as a module named `name` (default: its stem);
    it is not added to `sys.modules`, so every call runs the script's top level again."""
    path = ROOT / relative
    spec = importlib.util.spec_from_file_location(name or path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
