"""A pretrained image pipeline read for fine-tuning (`pretrained_model_name_or_path`): any diffusers pipeline folder or
Hub repo with `unet/` (a `UNet2DModel`) and `scheduler/` subfolders, written by `train_ddpm.py` / `save_pretrained` or
a stock `DDPMPipeline` such as `google/ddpm-cifar10-32`. The training side (its noise schedule, LoRA, saving the
adapter) is `diffusers_xai.training.finetune`."""

from __future__ import annotations

import os

from ...errors import uncached_hub_error
from ...pipelines.base import read_model_index

__all__ = ["check_pretrained_fits", "load_pretrained_configs", "load_pretrained_unet"]

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
        saved = (read_model_index(name_or_path) or {}).get("_class_name")
        holds = f" (it holds a {saved}; fine-tuning takes an image pipeline)" if saved else ""
        raise ValueError(
            f"`pretrained_model_name_or_path` {name_or_path!r} has no {' or '.join(missing)}{holds}; pass the folder "
            "of a whole pipeline (model_index.json, unet/, scheduler/), as written by `save_pretrained` or "
            "`train_ddpm.py`."
        )


def load_pretrained_configs(name_or_path: str) -> tuple[dict, dict]:
    """The `(unet_config, scheduler_config)` dicts of a pipeline folder or Hub repo (config files only, no weights)."""
    from diffusers import DDPMScheduler, UNet2DModel

    _check_local_layout(name_or_path)
    unet_config = _load_config(UNet2DModel, name_or_path, UNET_FOLDER)
    scheduler_config = _load_config(DDPMScheduler, name_or_path, SCHEDULER_FOLDER)
    if unet_config.get("_class_name", "UNet2DModel") != "UNet2DModel":
        raise ValueError(
            f"The pretrained pipeline {name_or_path!r} has a {unet_config['_class_name']} denoiser; image fine-tuning "
            "needs a UNet2DModel (a DDPMPipeline / DiffusionXAIPipeline)."
        )
    return unet_config, scheduler_config


def _load_config(cls, name_or_path: str, subfolder: str) -> dict:
    """`cls.load_config` of one subfolder. Offline, diffusers words a Hub file it could neither download nor find in
    the cache as one the repo lacks ("someone/x does not appear to have a file named config.json"); the exception's
    context says which it was, and this says it."""
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return dict(cls.load_config(name_or_path, subfolder=subfolder))
    except OSError as err:
        if os.path.isdir(name_or_path) or not isinstance(err.__context__, LocalEntryNotFoundError):
            raise
        raise uncached_hub_error(name_or_path, f"its {subfolder}/ config", err.__context__) from err


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
