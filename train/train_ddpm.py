#!/usr/bin/env python
"""Train a DDPM (images, or any registered modality) with accelerate, as diffusers' train_unconditional.py.

    accelerate launch train/train_ddpm.py --config train/configs/digits.yaml [--key value ...]
    python train/train_ddpm.py --config train/configs/digits.yaml --max_train_minutes 4

Every key of the YAML file can be overridden on the command line (`--learning_rate 3e-4`, `--random_flip`,
`--block_out_channels "[32, 64]"`); `--help` lists them. The loop itself is `diffusers_xai.training.train`.
"""

from __future__ import annotations

import argparse
import sys

from diffusers_xai.errors import report_user_errors
from diffusers_xai.training import add_training_arguments, config_from_args, train


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Train a diffusion model on an HF dataset with accelerate.", allow_abbrev=False
    )
    parser.add_argument(
        "--debug", action="store_true", help="Show the full traceback of an error (or set DIFFUSERS_XAI_DEBUG=1)."
    )
    add_training_arguments(parser)
    args, unknown = parser.parse_known_args(argv)
    # keys that are not fields of TrainingConfig: a modality's options, or a typo that from_dict names
    args.extra_overrides = unknown
    return args


def main(args: argparse.Namespace) -> int:
    # bad input (a missing config, a typo'd key, `max_train_steps: 0`, a typo'd Hub id, no network, a missing
    # optional dependency, a failed push, a diverged run) is one line naming the value and the fix, exit code 2
    return report_user_errors("train_ddpm.py", lambda: _train(args), debug=getattr(args, "debug", False))


def _train(args: argparse.Namespace) -> int:
    config = config_from_args(args, args.extra_overrides)
    result = train(config)
    if result.pipeline is not None:
        print(result.summary("the LoRA adapter" if config.lora_rank else None))
    return 0


if __name__ == "__main__":
    sys.exit(main(parse_args()))
