"""The training engine: one DDPM loop (`train`) for every modality, configured by `TrainingConfig`."""

from .checkpointing import find_latest_checkpoint, list_checkpoints
from .config import TrainingConfig, add_training_arguments, config_from_args
from .presets import DIGITS_16, digits_config
from .trainer import NonFiniteLossError, TrainResult, train

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
