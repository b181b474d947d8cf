"""The `diffusers-xai` subcommands: each module's `register(subparsers)` adds one."""

from __future__ import annotations

import argparse


def add_documented_parser(subparsers, name: str, help: str, doc: str | None) -> argparse.ArgumentParser:
    """The subcommand `name`, whose `--help` prints its module docstring `doc` as written (examples, tables)."""
    return subparsers.add_parser(
        name, help=help, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
