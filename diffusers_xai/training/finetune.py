"""
Fine-tuning: start from a pretrained pipeline's denoiser and noise schedule (`pretrained_model_name_or_path`), fully
or with a LoRA adapter (`lora_rank`).

A pretrained pipeline is any diffusers pipeline folder or Hub repo with `unet/` and `scheduler/` subfolders: one
written by `train_ddpm.py` / `save_pretrained`, or a stock `DDPMPipeline` such as `google/ddpm-cifar10-32`. Training
keeps its noise schedule (betas, `num_train_timesteps`, `prediction_type`), because the weights were trained for it.
"""

from __future__ import annotations

import logging

from ..modalities.image.pretrained import load_pretrained_configs
from ..models.lora import add_lora, make_lora_config

__all__ = [
    "build_noise_scheduler",
    "pretrained_noise_scheduler",
    "prepare_for_finetuning",
    "save_finetuned",
]

logger = logging.getLogger(__name__)


def pretrained_noise_scheduler(config):
    """The training `DDPMScheduler` with the pretrained pipeline's noise schedule (whatever scheduler it saved)."""
    from ..pipelines import make_scheduler

    _, scheduler_config = load_pretrained_configs(config.pretrained_model_name_or_path)
    return make_scheduler("ddpm", scheduler_config)


def adopt_pretrained_schedule(config, noise_scheduler) -> None:
    """Set the config's schedule keys to the pretrained scheduler's, so the card and `training_config.yaml` say
    what was trained (the config's own values are ignored when fine-tuning)."""
    from .config import BETA_SCHEDULES

    for key in ("num_train_timesteps", "beta_schedule", "prediction_type"):
        value = noise_scheduler.config[key]
        if key == "beta_schedule" and value not in BETA_SCHEDULES:
            continue  # e.g. scaled_linear: trained as the pretrained scheduler says, not expressible as a config key
        if getattr(config, key) != value:
            logger.info(f"Fine-tuning keeps the pretrained {key}={value!r} (config: {getattr(config, key)!r}).")
            setattr(config, key, value)


def build_noise_scheduler(config):
    """The training `DDPMScheduler`: the pretrained pipeline's noise schedule when fine-tuning, else the config's."""
    from ..pipelines import make_scheduler

    if config.pretrained_model_name_or_path is not None:
        noise_scheduler = pretrained_noise_scheduler(config)
        adopt_pretrained_schedule(config, noise_scheduler)
        return noise_scheduler
    return make_scheduler(
        "ddpm",
        num_train_timesteps=config.num_train_timesteps,
        beta_schedule=config.beta_schedule,
        prediction_type=config.prediction_type,
    )


def prepare_for_finetuning(model, config):
    """
    With `config.lora_rank`: add the LoRA adapter (base weights frozen) and turn EMA off (as diffusers' LoRA training
    scripts: the adapter is small and trained briefly); returns `model`.
    """
    if config.lora_rank:
        if config.use_ema:
            logger.info("LoRA fine-tuning trains without EMA (`use_ema` set to false).")
            config.use_ema = False
        add_lora(model, make_lora_config(config.lora_rank, config.lora_alpha, config.lora_target_modules))
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        total = sum(p.numel() for p in model.parameters())
        logger.info(f"LoRA rank {config.lora_rank}: training {trainable:,} of {total:,} parameters.")
    return model


def save_finetuned(pipeline, config) -> str:
    """LoRA runs save the adapter only, into `config.output_dir`: `pytorch_lora_weights.safetensors` and
    `adapter_config.json` naming the base pipeline. Load it with `DiffusionXAIPipeline.load_lora_weights`."""
    from ..models.lora import save_lora

    return save_lora(pipeline.unet, config.output_dir, base_model=config.pretrained_model_name_or_path)
