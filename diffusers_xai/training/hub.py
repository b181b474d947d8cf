"""End-of-training model card and Hub upload (checkpoint folders never leave the machine)."""

from __future__ import annotations

import os

from huggingface_hub import ModelCard, ModelCardData

__all__ = ["HUB_IGNORE_PATTERNS", "push_output_dir", "save_model_card"]

HUB_IGNORE_PATTERNS = ["checkpoint-*", "*.tmp", "*.tmp.*"]

CARD_TEMPLATE = """---
{{ card_data }}
---

# {{ model_name }}

A diffusion model for {{ modality }} data, trained with [diffusers-xai](https://github.com/diffusers-xai/diffusers-xai)'s
`train/train_ddpm.py` (DDPM, {{ prediction_type }} prediction, {{ beta_schedule }} betas,
{{ num_train_timesteps }} steps).

## Training

- data: `{{ dataset }}`
- steps: {{ global_step }}
- batch: {{ batch_size }} x {{ gradient_accumulation_steps }} accumulation x {{ num_processes }} processes
- optimizer: AdamW, lr {{ learning_rate }} ({{ lr_scheduler }}, {{ lr_warmup_steps }} warmup steps)
- EMA weights saved: {{ use_ema }}
- final training loss: {{ final_loss }}

## Usage

```python
from diffusers_xai import {{ pipeline_class }}

pipe = {{ pipeline_class }}.from_pretrained("{{ repo_or_path }}")
{{ usage }}
```
"""


def save_model_card(
    output_dir: str, config, pipeline_class: str, global_step: int, final_loss: float | None, num_processes: int = 1
) -> str:
    """Write `README.md` (a [`huggingface_hub.ModelCard`]) describing the run into `output_dir`; returns its path."""
    card_data = ModelCardData(
        library_name="diffusers",
        license="apache-2.0",
        tags=["diffusers", "diffusers-xai", f"modality-{config.modality}", "ddpm", "diffusers-training"],
        pipeline_tag="unconditional-image-generation" if config.modality == "image" else None,
    )
    if config.modality == "image":
        usage = 'pipe(batch_size=16, num_inference_steps=50).images[0].save("sample.png")'
    else:
        usage = "out = pipe()"
    card = ModelCard.from_template(
        card_data,
        template_str=CARD_TEMPLATE,
        model_name=config.hub_model_id or os.path.basename(os.path.abspath(output_dir)),
        modality=config.modality,
        prediction_type=config.prediction_type,
        beta_schedule=config.beta_schedule,
        num_train_timesteps=config.num_train_timesteps,
        dataset=config.dataset_name or config.train_data_dir,
        global_step=global_step,
        batch_size=config.train_batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        num_processes=num_processes,
        learning_rate=config.learning_rate,
        lr_scheduler=config.lr_scheduler,
        lr_warmup_steps=config.lr_warmup_steps,
        use_ema=config.use_ema,
        final_loss=f"{final_loss:.4f}" if final_loss is not None else "n/a",
        pipeline_class=pipeline_class,
        repo_or_path=config.hub_model_id or output_dir,
        usage=usage,
    )
    path = os.path.join(output_dir, "README.md")
    tmp = path + ".tmp"
    card.save(tmp)
    os.replace(tmp, path)
    return path


def push_output_dir(output_dir: str, config) -> str:
    """Create (or reuse) `hub_model_id` and upload `output_dir` without checkpoints; returns the repo id."""
    from huggingface_hub import HfApi

    api = HfApi(token=config.hub_token)
    repo_id = config.hub_model_id or os.path.basename(os.path.abspath(output_dir))
    repo_id = api.create_repo(repo_id, exist_ok=True, private=config.hub_private_repo).repo_id
    api.upload_folder(
        repo_id=repo_id,
        folder_path=output_dir,
        commit_message="End of training",
        ignore_patterns=HUB_IGNORE_PATTERNS,
    )
    return repo_id
