"""
Fine-tuning: start from a pretrained pipeline's denoiser and noise schedule (`pretrained_model_name_or_path`), fully
or with a LoRA adapter (`lora_rank`).

A pretrained pipeline is any diffusers pipeline folder or Hub repo with `unet/` and `scheduler/` subfolders: one
written by `train_ddpm.py` / `save_pretrained`, or a stock `DDPMPipeline` such as `google/ddpm-cifar10-32`. Training
keeps its noise schedule (betas, `num_train_timesteps`, `prediction_type`), because the weights were trained for it.
"""

from __future__ import annotations

import logging
import os

from ..models.lora import add_lora, make_lora_config

__all__ = [
    "build_noise_scheduler",
    "check_pretrained_fits",
    "load_pretrained_configs",
    "load_pretrained_unet",
    "pretrained_noise_scheduler",
    "prepare_for_finetuning",
    "save_finetuned",
]

logger = logging.getLogger(__name__)

UNET_FOLDER = "unet"
SCHEDULER_FOLDER = "scheduler"


def _check_local_layout(name_or_path: str) -> None:
    if not os.path.isdir(name_or_path):
        if os.path.exists(name_or_path) or name_or_path.startswith((".", "/", "~")) or name_or_path.count("/") > 1:
            raise ValueError(
                f"`pretrained_model_name_or_path` {name_or_path!r} is not a pipeline folder or a Hub repo id; pass a "
                "folder written by `save_pretrained`/`train_ddpm.py` or an id such as 'google/ddpm-cifar10-32'."
            )
        return  # a Hub repo id
    missing = [
        f"{sub}/config.json" if sub == UNET_FOLDER else f"{sub}/scheduler_config.json"
        for sub, name in ((UNET_FOLDER, "config.json"), (SCHEDULER_FOLDER, "scheduler_config.json"))
        if not os.path.isfile(os.path.join(name_or_path, sub, name))
    ]
    if missing:
        raise ValueError(
            f"`pretrained_model_name_or_path` {name_or_path!r} has no {' or '.join(missing)}; pass the folder of a "
            "whole pipeline (model_index.json, unet/, scheduler/), as written by `save_pretrained` or `train_ddpm.py`."
        )


def load_pretrained_configs(name_or_path: str) -> tuple[dict, dict]:
    """The `(unet_config, scheduler_config)` dicts of a pipeline folder or Hub repo (config files only, no weights)."""
    from diffusers import DDPMScheduler, UNet2DModel

    _check_local_layout(name_or_path)
    unet_config = dict(UNet2DModel.load_config(name_or_path, subfolder=UNET_FOLDER))
    scheduler_config = dict(DDPMScheduler.load_config(name_or_path, subfolder=SCHEDULER_FOLDER))
    if unet_config.get("_class_name", "UNet2DModel") != "UNet2DModel":
        raise ValueError(
            f"The pretrained pipeline {name_or_path!r} has a {unet_config['_class_name']} denoiser; image fine-tuning "
            "needs a UNet2DModel (a DDPMPipeline / DiffusionXAIPipeline)."
        )
    return unet_config, scheduler_config


def _sample_size(unet_config: dict) -> tuple[int, int]:
    size = unet_config.get("sample_size")
    return (size, size) if isinstance(size, int) else tuple(size)


def check_pretrained_fits(unet_config: dict, channels: int, resolution: int, source: str) -> None:
    """Raise `ValueError` saying which flag to change when the data's channels/resolution differ from the UNet's."""
    in_channels = unet_config.get("in_channels", 3)
    if in_channels != channels:
        raise ValueError(
            f"The pretrained UNet {source!r} takes in_channels={in_channels} but the data is set to channels="
            f"{channels}; set `--channels {in_channels}` (images are converted to "
            f"{'RGB' if in_channels == 3 else 'grayscale'} on load) or start from a model with {channels} channels."
        )
    height, width = _sample_size(unet_config)
    if (height, width) != (resolution, resolution):
        raise ValueError(
            f"The pretrained UNet {source!r} was trained at sample_size={height}x{width} but the data is set to "
            f"resolution={resolution}; set `--resolution {height}` (images are resized and cropped to it)."
        )


def load_pretrained_unet(name_or_path: str):
    """The pretrained pipeline's `UNet2DModel` (float32, train mode)."""
    from diffusers import UNet2DModel

    return UNet2DModel.from_pretrained(name_or_path, subfolder=UNET_FOLDER).train()


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
