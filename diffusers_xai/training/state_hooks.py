"""accelerate's save/load-state hooks for a training run: `save_state` writes the weights as diffusers folders
(`unet/`, `unet_ema/`, or the LoRA adapter alone in `unet_lora/`) instead of accelerate's pickles, and `load_state`
reads them back into the model and its EMA copy."""

from __future__ import annotations

import contextlib
import os
import warnings

__all__ = ["EMA_FOLDER", "LORA_FOLDER", "MODEL_FOLDER", "register_state_hooks"]

# the folders of a checkpoint's weights: diffusers folders (safetensors + config), not accelerate's pickles
MODEL_FOLDER = "unet"
EMA_FOLDER = "unet_ema"
LORA_FOLDER = "unet_lora"


@contextlib.contextmanager
def _quiet_diffusers():
    from diffusers.utils import logging as diffusers_logging

    verbosity = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            yield
    finally:
        diffusers_logging.set_verbosity(verbosity)


def register_state_hooks(accelerator, ema_model, model_cls):
    """Make `save_state`/`load_state` write diffusers folders `unet/` and `unet_ema/` (safetensors + config)."""
    from diffusers.training_utils import EMAModel

    from ..models.lora import has_lora, load_lora_state, save_lora

    def save_model_hook(models, weights, output_dir):
        if accelerator.is_main_process:
            if ema_model is not None:
                ema_model.save_pretrained(os.path.join(output_dir, EMA_FOLDER))
            for model in models:
                model = accelerator.unwrap_model(model)
                if has_lora(model):  # LoRA: the adapter only, the base weights are the pretrained ones
                    save_lora(model, os.path.join(output_dir, LORA_FOLDER))
                else:
                    model.save_pretrained(os.path.join(output_dir, MODEL_FOLDER))
        # accelerate would also pickle the weights: we saved them already
        while weights:
            weights.pop()

    def load_model_hook(models, input_dir):
        if ema_model is not None:
            with _quiet_diffusers():  # EMAModel.from_pretrained warns about its own config keys
                loaded = EMAModel.from_pretrained(os.path.join(input_dir, EMA_FOLDER), model_cls)
            ema_model.load_state_dict(loaded.state_dict())
            ema_model.to(accelerator.device)
            del loaded
        while models:
            model = accelerator.unwrap_model(models.pop())
            if has_lora(model):
                load_lora_state(model, os.path.join(input_dir, LORA_FOLDER))
                continue
            loaded = model_cls.from_pretrained(input_dir, subfolder=MODEL_FOLDER)
            model.register_to_config(**loaded.config)
            model.load_state_dict(loaded.state_dict())
            del loaded

    accelerator.register_save_state_pre_hook(save_model_hook)
    accelerator.register_load_state_pre_hook(load_model_hook)
