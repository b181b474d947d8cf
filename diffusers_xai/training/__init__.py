"""The training engine: one DDPM loop (`train`) for every modality, configured by `TrainingConfig`.

`trainer` (accelerate, diffusers' models and optimisers) is imported on first use of `train`, `TrainResult` or
`NonFiniteLossError`, so reading a config or building the CLI's `--help` stays fast.
"""

from typing import TYPE_CHECKING

from .checkpointing import find_latest_checkpoint, list_checkpoints
from .config import TrainingConfig, add_training_arguments, config_from_args
from .presets import DIGITS_16, digits_config

_TRAINER_NAMES = ("NonFiniteLossError", "TrainResult", "train")

__all__ = [
    "DIGITS_16",
    "NonFiniteLossError",
    "TrainResult",
    "TrainingConfig",
    "add_training_arguments",
    "config_from_args",
    "digits_config",
    "find_latest_checkpoint",
    "list_checkpoints",
    "train",
]


def __getattr__(name: str):
    if name in _TRAINER_NAMES:
        from . import trainer

        return getattr(trainer, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if TYPE_CHECKING:
    from .trainer import NonFiniteLossError, TrainResult, train  # noqa: F401
