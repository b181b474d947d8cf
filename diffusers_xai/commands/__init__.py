"""The `diffusers-xai` subcommands: each module's `register(subparsers)` adds one."""

from __future__ import annotations

import argparse
import inspect
from collections.abc import Callable, Iterable


def add_documented_parser(subparsers, name: str, help: str, doc: str | None) -> argparse.ArgumentParser:
    """The subcommand `name`, whose `--help` prints its module docstring `doc` as written (examples, tables)."""
    return subparsers.add_parser(
        name, help=help, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )


def flags_for(function: Callable, args: argparse.Namespace, exclude: Iterable[str] = ()) -> dict:
    """The parsed flags that name a parameter of `function` (a flag is spelled as the parameter it sets), as keyword
    arguments; `exclude` names the parameters the command passes itself."""
    skipped = set(exclude)
    params = inspect.signature(function).parameters
    return {name: getattr(args, name) for name in params if name not in skipped and hasattr(args, name)}
