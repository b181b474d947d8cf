"""`diffusers-xai` console script: one sub-command per module in `diffusers_xai.commands`."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

# Must be set before torch starts its OpenMP pool: with the default (active) wait policy, idle OpenMP threads spin,
# and on a shared 2-core machine one training step was measured 5x slower (0.97 s -> 5.0 s).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__all__ = ["main"]

# Each module defines `register(subparsers)`, which adds its sub-parser and sets `func=callable(args) -> int`.
COMMAND_MODULES = ("quickstart", "train", "evaluate", "push", "generate")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="diffusers-xai", description="Generate synthetic data with diffusion models and explain every generation."
    )
    parser.add_argument(
        "--debug", action="store_true", help="Show the full traceback of an error (or set DIFFUSERS_XAI_DEBUG=1)."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:  # a command module that fails to import is an error, never a missing command
        importlib.import_module(f"diffusers_xai.commands.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    from .errors import report_user_errors

    # bad input is reported as one clear line naming the value and the fix, exit code 2 (`--debug` or
    # DIFFUSERS_XAI_DEBUG=1 for the traceback); bugs keep their traceback
    return report_user_errors(f"diffusers-xai {args.command}", lambda: args.func(args), debug=args.debug)


if __name__ == "__main__":
    sys.exit(main())
