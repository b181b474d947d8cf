"""train/configs/imagefolder_small.yaml learns on a generated image folder within a short CPU run."""

import os

import numpy as np
import pytest
import torch
from PIL import Image

from diffusers_xai.training import TrainingConfig, train

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = os.path.join(REPO, "train", "configs", "imagefolder_small.yaml")


def disc_folder(path, n=64, size=16):
    """`n` grayscale images: a bright disc (radius 4, seeded centre jitter of +-1 px) on a black background."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:size, :size]
    os.makedirs(path, exist_ok=True)
    for i in range(n):
        cy, cx = size / 2 - 0.5 + rng.integers(-1, 2, 2)
        disc = ((yy - cy) ** 2 + (xx - cx) ** 2 <= 16).astype(np.uint8) * 255
        Image.fromarray(disc, mode="L").save(os.path.join(path, f"{i:03d}.png"))
    return str(path)


def center_minus_border(images: torch.Tensor) -> float:
    """Mean brightness of the central 4x4 minus that of the 2-pixel border: ~1 for the data, ~0 for noise."""
    center = images[..., 6:10, 6:10].mean()
    border = torch.cat([images[..., :2, :].flatten(), images[..., -2:, :].flatten()]).mean()
    return float(center - border)


def ddim_samples(pipe, n=16):
    from diffusers_xai.pipelines import make_scheduler

    pipe.scheduler = make_scheduler("ddim", pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    generator = torch.Generator().manual_seed(0)
    return pipe(batch_size=n, generator=generator, num_inference_steps=20, output_type="pt").images


@pytest.mark.slow
def test_small_recipe_learns_a_generated_folder(tmp_path):
    data = disc_folder(tmp_path / "discs")
    overrides = dict(
        train_data_dir=data,
        resolution=16,
        channels=1,
        max_train_steps=300,
        max_train_minutes=None,
        train_batch_size=16,
        output_dir=str(tmp_path / "run"),
        report_to="none",
        validation_steps=None,
        checkpointing_steps=None,
        explanation_card=False,
    )
    config = TrainingConfig.from_yaml(SMALL, overrides)
    untrained = train(config.replace(max_train_steps=1, learning_rate=1e-12, output_dir=str(tmp_path / "init")))
    result = train(config)

    losses = result.loss_history
    assert len(losses) == 300
    assert np.mean(losses[-30:]) < 0.6 * np.mean(losses[:30])
    before = center_minus_border(ddim_samples(untrained.pipeline))
    after = center_minus_border(ddim_samples(result.pipeline))
    assert abs(before) < 0.3  # noise-like: no disc yet
    assert after > 0.6  # bright centre, dark border, as every training image
