"""Ready-made training configs that need no data files (what `diffusers-xai quickstart` trains).

`train/configs/digits.yaml` holds the same keys (a test keeps them equal); this copy ships inside the package,
so an installed wheel can train without the repository's `train/` folder.
"""

from __future__ import annotations

from typing import Any

from .config import TrainingConfig

__all__ = ["DIGITS_16", "digits_config"]

# Measured on one CPU thread: 1,200 steps take ~4.6 CPU minutes and sample recognisable digits (50 DDIM steps).
DIGITS_16: dict[str, Any] = {
    "modality": "image",
    "dataset_name": "sklearn-digits",
    "resolution": 16,
    "channels": 1,
    "validation_split": 0.05,
    "block_out_channels": [16, 32, 64],
    "layers_per_block": 1,
    "attention_head_dim": 8,
    "norm_num_groups": 8,
    "num_train_timesteps": 1000,
    "beta_schedule": "cosine",
    "prediction_type": "v_prediction",
    "train_batch_size": 32,
    "max_train_steps": 1200,
    "max_train_minutes": 15.0,
    "learning_rate": 2.0e-3,
    "lr_scheduler": "constant_with_warmup",
    "lr_warmup_steps": 100,
    "max_grad_norm": 1.0,
    "mixed_precision": "no",
    "seed": 0,
    "use_ema": True,
    "ema_max_decay": 0.999,
    "output_dir": "runs/digits",
    "report_to": "tensorboard",
    "validation_steps": 400,
    "validation_batch_size": 36,
    "validation_num_inference_steps": 50,
    "checkpointing_steps": 400,
    "checkpoints_total_limit": 2,
    "eval_samples": 1000,
}


def digits_config(**overrides) -> TrainingConfig:
    """
    The 16x16 sklearn-digits config (built-in data, no files), with `overrides` applied.

    Example:

    ```py
    >>> from diffusers_xai.training import digits_config, train
    >>> result = train(digits_config(output_dir="runs/quickstart", max_train_minutes=5))
    ```
    """
    return TrainingConfig.from_dict({**DIGITS_16, **overrides}, source="digits_config()")
