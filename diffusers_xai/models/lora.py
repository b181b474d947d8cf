r"""
LoRA adapters on any diffusers denoiser (`UNet2DModel` included), with `peft`: add, save, load, fuse, unload.

diffusers' own LoRA loaders (`PeftAdapterMixin`, `load_lora_weights`) cover `UNet2DConditionModel` and the
transformers, not `UNet2DModel`, so the adapters are injected with peft's [`LoraModel`] directly (the same layers
and state-dict keys diffusers' loaders produce for the models they support). A LoRA folder holds peft's
`adapter_config.json` and the adapter weights as `pytorch_lora_weights.safetensors` (diffusers' file name); the base
weights are never written there.

LoRA (Hu et al. 2021, https://huggingface.co/papers/2106.09685) adds $\Delta W = \frac{\alpha}{r} B A$ to each
targeted layer, $A \in \mathbb{R}^{r \times k}$ Gaussian-initialised and $B = 0$, so training starts from the base
model's output exactly.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

import torch

__all__ = [
    "DEFAULT_LORA_TARGETS",
    "LORA_CONFIG_NAME",
    "LORA_WEIGHTS_NAME",
    "LoraPipelineMixin",
    "add_lora",
    "fuse_lora",
    "has_lora",
    "load_lora",
    "load_lora_state",
    "lora_state_dict",
    "make_lora_config",
    "save_lora",
    "unload_lora",
]

LORA_WEIGHTS_NAME = "pytorch_lora_weights.safetensors"
LORA_CONFIG_NAME = "adapter_config.json"
# diffusers' train_text_to_image_lora.py targets the attention projections; convolutions are opt-in ("conv1", ...)
DEFAULT_LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")
ADAPTER_NAME = "default"


def make_lora_config(
    rank: int, alpha: float | None = None, target_modules: Sequence[str] | None = None, dropout: float = 0.0
):
    """
    A peft `LoraConfig` for a denoiser: rank `rank`, scale `alpha / rank` (`alpha` defaults to `rank`, scale 1),
    on the modules whose dotted names end with one of `target_modules` (default [`DEFAULT_LORA_TARGETS`], the
    attention projections; add `"conv1"`, `"conv2"` for the ResNet convolutions).
    """
    from peft import LoraConfig

    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise ValueError(f"`lora_rank` must be a positive int, got {rank!r}; leave it unset for full fine-tuning.")
    if alpha is not None and not alpha > 0:
        raise ValueError(f"`lora_alpha` must be > 0, got {alpha!r} (default: the rank, i.e. scale 1).")
    targets = list(target_modules) if target_modules else list(DEFAULT_LORA_TARGETS)
    return LoraConfig(
        r=rank,
        lora_alpha=float(alpha if alpha is not None else rank),
        target_modules=targets,
        lora_dropout=dropout,
        init_lora_weights="gaussian",
    )


def _matching_modules(model: torch.nn.Module, targets: Sequence[str]) -> list[str]:
    return [name for name, _ in model.named_modules() if any(name == t or name.endswith("." + t) for t in targets)]


def add_lora(model: torch.nn.Module, config) -> torch.nn.Module:
    """
    Inject LoRA layers into `model` in place and freeze every base weight: afterwards only the adapter's
    `lora_A`/`lora_B` parameters have `requires_grad`. Returns `model`.

    Raises `ValueError` naming the fix when no module of `model` matches `config.target_modules` (e.g. a UNet without
    attention blocks and the default attention targets).
    """
    from peft.tuners.lora import LoraModel

    if has_lora(model):
        raise ValueError("The model already has a LoRA adapter; fuse it (`fuse_lora`) or unload it first.")
    targets = sorted(config.target_modules)
    if not _matching_modules(model, targets):
        layer_types = (torch.nn.Linear, torch.nn.Conv2d)
        kinds = sorted({type(m).__name__ for m in model.modules() if isinstance(m, layer_types)})
        raise ValueError(
            f"LoRA found no layer named {targets} in this {type(model).__name__} (it has {', '.join(kinds) or 'no'} "
            "layers but no such names); set `lora_target_modules` to names it has (e.g. ['conv1', 'conv2'] for the "
            "ResNet convolutions of a UNet without attention blocks), or fine-tune fully (no `lora_rank`)."
        )
    LoraModel(model, config, ADAPTER_NAME)  # injects into `model` itself and freezes the base weights
    return model


def has_lora(model: torch.nn.Module) -> bool:
    from peft.tuners.lora import LoraLayer

    return any(isinstance(m, LoraLayer) for m in model.modules())


def lora_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The adapter weights only (`...to_q.lora_A.weight`, `...to_q.lora_B.weight`, ...), detached on the CPU."""
    from peft import get_peft_model_state_dict

    if not has_lora(model):
        raise ValueError("The model has no LoRA adapter to save; add one with `add_lora` or train with `lora_rank`.")
    return {k: v.detach().cpu().contiguous() for k, v in get_peft_model_state_dict(model).items()}


def save_lora(model: torch.nn.Module, directory: str | os.PathLike, base_model: str | None = None) -> str:
    """
    Write the adapter of `model` into `directory` (created if needed; other files there are left alone):
    `pytorch_lora_weights.safetensors`, then `adapter_config.json` (peft's `LoraConfig`, with
    `base_model_name_or_path` when known), each through a temp file and a rename. Returns the folder.
    """
    from safetensors.torch import save_file

    directory = os.fspath(directory)
    state = lora_state_dict(model)
    data = model.peft_config[ADAPTER_NAME].to_dict()
    data["base_model_name_or_path"] = base_model
    data = {k: sorted(v) if isinstance(v, set) else v for k, v in data.items()}
    os.makedirs(directory, exist_ok=True)
    weights = os.path.join(directory, LORA_WEIGHTS_NAME)
    save_file(state, weights + ".tmp", metadata={"format": "pt"})
    os.replace(weights + ".tmp", weights)
    config_path = os.path.join(directory, LORA_CONFIG_NAME)
    with open(config_path + ".tmp", "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, sort_keys=True, default=str)
    os.replace(config_path + ".tmp", config_path)
    return directory


def _read_lora_folder(directory: str | os.PathLike):
    from peft import LoraConfig
    from safetensors.torch import load_file

    directory = os.fspath(directory)
    config_path = os.path.join(directory, LORA_CONFIG_NAME)
    weights_path = os.path.join(directory, LORA_WEIGHTS_NAME)
    if not (os.path.isfile(config_path) and os.path.isfile(weights_path)):
        raise ValueError(
            f"{directory!r} is not a LoRA folder: it needs {LORA_CONFIG_NAME} and {LORA_WEIGHTS_NAME} (written by "
            "`train_ddpm.py --lora_rank N` or `save_lora`)."
        )
    with open(config_path, encoding="utf-8") as f:
        data = json.load(f)
    config = LoraConfig(
        r=int(data["r"]),
        lora_alpha=float(data["lora_alpha"]),
        target_modules=list(data["target_modules"]),
        lora_dropout=float(data.get("lora_dropout", 0.0)),
        init_lora_weights="gaussian",
    )
    return config, load_file(weights_path)


def load_lora(model: torch.nn.Module, directory: str | os.PathLike) -> torch.nn.Module:
    """
    Add the adapter saved in `directory` (by [`save_lora`]) to `model` in place; returns `model`. The base weights
    are untouched, so [`unload_lora`] gives the base model back and [`fuse_lora`] merges the adapter into it.
    Raises `ValueError` when the adapter's layers or shapes do not fit `model` (another base model).
    """
    from peft import set_peft_model_state_dict

    config, state = _read_lora_folder(directory)
    add_lora(model, config)
    expected = set(lora_state_dict(model))
    if set(state) != expected:
        missing, unexpected = sorted(expected - set(state))[:3], sorted(set(state) - expected)[:3]
        unload_lora(model)
        raise ValueError(
            f"The LoRA weights in {os.fspath(directory)!r} do not fit this model (missing {missing}, unexpected "
            f"{unexpected}); load them onto the base pipeline they were trained from."
        )
    try:
        set_peft_model_state_dict(model, state)
    except RuntimeError as err:  # a size mismatch: same layer names, other widths
        unload_lora(model)
        lines = [line.strip() for line in str(err).splitlines() if "size mismatch" in line] or [str(err)]
        raise ValueError(
            f"The LoRA weights in {os.fspath(directory)!r} do not fit this model ({lines[0]}); load them onto the "
            "base pipeline they were trained from."
        ) from None
    return model


def load_lora_state(model: torch.nn.Module, directory: str | os.PathLike) -> None:
    """Copy the adapter weights saved in `directory` into the LoRA layers `model` already has (checkpoint resume)."""
    from peft import set_peft_model_state_dict

    _, state = _read_lora_folder(directory)
    set_peft_model_state_dict(model, state)


def _replace_lora_layers(model: torch.nn.Module, merge: bool) -> torch.nn.Module:
    from peft.tuners.lora import LoraLayer

    if not has_lora(model):
        raise ValueError("The model has no LoRA adapter to fuse or unload.")
    for name, module in list(model.named_modules()):
        if not isinstance(module, LoraLayer):
            continue
        if merge:
            module.merge(safe_merge=True)
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, module.get_base_layer())
    model.__dict__.pop("peft_config", None)
    return model


def fuse_lora(model: torch.nn.Module) -> torch.nn.Module:
    r"""Merge the adapter into the base weights ($W \leftarrow W + \frac{\alpha}{r} BA$) and remove the LoRA layers."""
    return _replace_lora_layers(model, merge=True)


def unload_lora(model: torch.nn.Module) -> torch.nn.Module:
    """Remove the LoRA layers without merging: the model is the base model again."""
    return _replace_lora_layers(model, merge=False)


class LoraPipelineMixin:
    """
    `load_lora_weights` / `fuse_lora` / `unload_lora_weights` for a pipeline whose denoiser is `self.unet` (the
    names of diffusers' LoRA loader mixins, which do not cover `UNet2DModel`).

    Example:

    ```py
    >>> pipe = DiffusionXAIPipeline.from_pretrained("runs/base")
    >>> pipe.load_lora_weights("runs/lora")  # a `train_ddpm.py --lora_rank 8` output_dir
    >>> pipe.fuse_lora()  # optional: merge into the base weights, sampling then costs what the base model costs
    ```
    """

    def load_lora_weights(self, pretrained_lora_path: str | os.PathLike) -> None:
        """Add the LoRA adapter saved in `pretrained_lora_path` to `self.unet` (base weights untouched)."""
        load_lora(self.unet, pretrained_lora_path)

    def fuse_lora(self) -> None:
        """Merge the loaded adapter into the UNet's weights and remove the LoRA layers."""
        fuse_lora(self.unet)

    def unload_lora_weights(self) -> None:
        """Remove the loaded adapter without merging: the UNet is the base model again."""
        unload_lora(self.unet)
