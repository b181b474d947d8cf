"""What a saved pipeline is, as plain JSON: its class, and per component the class, parameter count and config.

The explanation card's component table and `summary.json` are written from this; so is every config the card
publishes, after `redact` has dropped secret-looking keys.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Any

import torch

__all__ = ["jsonable", "redact", "summarize_pipeline"]

# Keys never copied from a training config into the card or summary (a `--hub_token` flag must not be published).
_SECRET_KEY = re.compile(r"token|secret|password|passwd|api[_-]?key|credential|authorization", re.IGNORECASE)


def jsonable(value: Any) -> Any:
    """Plain JSON types from tensors, numpy scalars/arrays, tuples and paths; non-finite floats become strings."""
    if hasattr(value, "detach"):  # torch.Tensor
        value = value.detach().cpu()
        value = value.item() if value.numel() == 1 else value.tolist()
    elif hasattr(value, "tolist") and not isinstance(value, (str, bytes)):  # numpy scalar or array
        value = value.tolist()
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)


def redact(value: Any) -> Any:
    """Drop secret-looking keys (recursively) from a config before it is published."""
    if isinstance(value, dict):
        return {k: redact(v) for k, v in value.items() if not _SECRET_KEY.search(str(k))}
    if isinstance(value, (list, tuple)):
        return [redact(v) for v in value]
    return value


def _json_config(config) -> dict:
    return {k: jsonable(v) for k, v in dict(config).items() if not str(k).startswith("_")}


def _safetensors_num_parameters(folder: Path) -> int | None:
    """Parameter count from safetensors headers (no weights are loaded)."""
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        return None
    from safetensors import safe_open

    total = 0
    for file in files:
        with safe_open(file, framework="pt") as f:
            for key in f.keys():
                total += math.prod(f.get_slice(key).get_shape())
    return total


def summarize_pipeline(pipeline) -> dict:
    """
    A JSON-able summary of a pipeline: class name and, per component, class name, parameter count and config.

    `num_parameters` counts the values of the saved state dict (parameters and persistent buffers, e.g. a fitted
    preprocessor's quantiles), so a pipeline object and its saved folder give the same numbers; `None` for
    components without weights (schedulers).

    Args:
        pipeline (`DiffusionPipeline`, `str` or `os.PathLike`): a pipeline object, or a directory written by
            `save_pretrained` (read from `model_index.json`, component configs and safetensors headers; no weights
            are loaded).

    Returns:
        `dict`: `{"class_name": ..., "components": {name: {"class_name", "num_parameters", "config"}}}`.
    """
    if isinstance(pipeline, (str, os.PathLike)):
        folder = Path(pipeline)
        index_file = folder / "model_index.json"
        if not index_file.is_file():
            raise ValueError(f"{folder} has no model_index.json; pass a directory written by `save_pretrained`.")
        index = json.loads(index_file.read_text())
        class_name = index["_class_name"]
        components = {}
        for name, spec in index.items():
            if name.startswith("_") or not isinstance(spec, (list, tuple)) or spec[1] is None:
                continue
            sub = folder / name
            config_file = next((p for p in (sub / "config.json", sub / "scheduler_config.json") if p.is_file()), None)
            config = json.loads(config_file.read_text()) if config_file else {}
            components[name] = {
                "class_name": spec[1],
                "num_parameters": _safetensors_num_parameters(sub),
                "config": _json_config(config),
            }
    else:
        class_name = type(pipeline).__name__
        components = {}
        for name, module in pipeline.components.items():
            if module is None:
                continue
            state = module.state_dict() if isinstance(module, torch.nn.Module) else None
            components[name] = {
                "class_name": type(module).__name__,
                "num_parameters": sum(t.numel() for t in state.values()) if state is not None else None,
                "config": _json_config(module.config) if hasattr(module, "config") else {},
            }
    if isinstance(class_name, (list, tuple)):  # custom pipelines save ["module", "Class"]
        class_name = class_name[-1]
    return {"class_name": class_name, "components": components}
