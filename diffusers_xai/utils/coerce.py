"""YAML/CLI values to the types a dataclass field declares (`"1e-4"` → 1e-4, `[32, 64]` → `(32, 64)`), with errors
naming the key. Shared by [`TrainingConfig`] and the modalities' typed options ([`ModalityOptions`])."""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Literal

__all__ = ["base_type", "coerce", "coerce_fields", "type_name"]


def base_type(hint):
    """`int | None` → int, `tuple[int, ...]` → tuple, `Literal[...]` → str."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return base_type(args[0])
    if origin is Literal:
        return str
    return origin or hint


def coerce(name: str, value, hint) -> Any:
    """`value` as the type `hint` names (YAML/CLI spellings accepted), or a `ValueError` naming `name`."""
    optional = type(None) in typing.get_args(hint)
    if value is None:
        if optional:
            return None
        raise ValueError(f"`{name}` cannot be null.")
    kind = base_type(hint)
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # PyYAML reads `1e-4` (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
    elif kind is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
    elif kind in (tuple, list):
        if isinstance(value, (list, tuple)):
            item = typing.get_args(_strip_optional(hint))[0]
            return kind(coerce(f"{name}[{i}]", v, item) for i, v in enumerate(value))
    else:
        return value
    raise ValueError(f"`{name}` must be {type_name(hint)}, got {value!r} ({type(value).__name__}).")


def coerce_fields(instance, skip: tuple[str, ...] = ()) -> None:
    """[`coerce`] every field of the dataclass `instance` (but `skip`) to its declared type, in place."""
    hints = typing.get_type_hints(type(instance))
    for f in dataclasses.fields(instance):
        if f.name not in skip:
            object.__setattr__(instance, f.name, coerce(f.name, getattr(instance, f.name), hints[f.name]))


def _strip_optional(hint):
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return next(a for a in typing.get_args(hint) if a is not type(None))
    return hint


def type_name(hint) -> str:
    """How an error message names the type `hint`: "an integer (or null)"."""
    kind = base_type(hint)
    names = {
        bool: "true/false",
        int: "an integer",
        float: "a number",
        str: "a string",
        tuple: "a list",
        list: "a list",
    }
    text = names.get(kind, str(hint))
    return text + " (or null)" if type(None) in typing.get_args(hint) else text
