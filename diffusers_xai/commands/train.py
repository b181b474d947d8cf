"""`diffusers-xai train --config train/configs/digits.yaml [--key value ...]`: the training engine from the CLI."""

from __future__ import annotations

import argparse

__all__ = ["register", "run"]


def register(subparsers) -> None:
    from ..training import add_training_arguments

    parser = subparsers.add_parser(
        "train",
        help="Train a diffusion model from a YAML config (the same loop as train/train_ddpm.py).",
        description="Train a diffusion model; every YAML key can be overridden as --key value.",
        allow_abbrev=False,
    )
    add_training_arguments(parser)
    parser.set_defaults(func=run)

    # Keys argparse does not know are a modality's options or typos; keep them for `config_from_args`, which
    # accepts the former and names the closest valid key for the latter (argparse would only say "unrecognized").
    parse_known_args = parser.parse_known_args

    def keep_unknown(args=None, namespace=None):
        namespace, unknown = parse_known_args(args, namespace)
        namespace.extra_overrides = unknown
        return namespace, []

    parser.parse_known_args = keep_unknown


def run(args: argparse.Namespace) -> int:
    from ..training import config_from_args, train

    result = train(config_from_args(args, getattr(args, "extra_overrides", [])))
    if result.pipeline is not None:
        print(result.summary())
    return 0
