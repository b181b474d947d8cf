r"""The DDPM training objective every modality trains with: $x_t$ from $x_0$ and drawn noise, the $\epsilon$ / $x_0$ /
$v$ target of the scheduler's `prediction_type`, label dropout for classifier-free guidance, and the held-out loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["denoise", "diffusion_loss", "drop_labels", "training_target", "validation_loss"]


def training_target(noise_scheduler, x0, noise, timesteps):
    prediction_type = noise_scheduler.config.prediction_type
    if prediction_type == "epsilon":
        return noise
    if prediction_type == "sample":
        return x0
    return noise_scheduler.get_velocity(x0, noise, timesteps)


def denoise(model, x_t, timesteps, batch):
    if "class_labels" in batch:
        return model(x_t, timesteps, class_labels=batch["class_labels"]).sample
    return model(x_t, timesteps).sample


def drop_labels(labels: torch.Tensor, prob: float, null_label: int, generator) -> torch.Tensor:
    """Label dropout for classifier-free guidance: each label becomes the null class with probability `prob`, drawn
    from the run's noise generator (so a resumed run replays it and streamed batches equal map-style ones)."""
    drop = torch.rand(labels.shape, generator=generator, device=generator.device).to(labels.device) < prob
    return torch.where(drop, torch.full_like(labels, null_label), labels)


def diffusion_loss(model, noise_scheduler, batch, generator, label_dropout: tuple[float, int] | None = None):
    r"""
    $\lVert f_\theta(x_t, t) - \text{target} \rVert^2$ where
    $x_t = \sqrt{\bar\alpha_t} x_0 + \sqrt{1-\bar\alpha_t}\epsilon$ and the target is $\epsilon$, $x_0$ or $v$
    by `prediction_type`; noise and $t$ are drawn from `generator`. `label_dropout=(p, null_label)` drops class
    labels to the null class (classifier-free guidance).
    """
    x0 = batch["x0"]
    noise = torch.randn(x0.shape, generator=generator, device=generator.device, dtype=x0.dtype).to(x0.device)
    t_max = noise_scheduler.config.num_train_timesteps
    timesteps = torch.randint(0, t_max, (x0.shape[0],), generator=generator, device=generator.device).to(x0.device)
    x_t = noise_scheduler.add_noise(x0, noise, timesteps)
    if label_dropout is not None and "class_labels" in batch:
        batch = {**batch, "class_labels": drop_labels(batch["class_labels"], *label_dropout, generator)}
    prediction = denoise(model, x_t, timesteps, batch)
    return F.mse_loss(prediction.float(), training_target(noise_scheduler, x0, noise, timesteps).float())


@torch.no_grad()
def validation_loss(model, noise_scheduler, dataloader, seed: int, accelerator) -> float:
    """Mean loss on the held-out split with a fixed noise generator, so values are comparable across steps."""
    generator = torch.Generator(accelerator.device).manual_seed(seed)
    total, count = 0.0, 0
    model.eval()
    for batch in dataloader:
        batch = {k: v.to(accelerator.device) for k, v in batch.items()}
        with accelerator.autocast():
            loss = diffusion_loss(model, noise_scheduler, batch, generator)
        total += loss.item() * batch["x0"].shape[0]
        count += batch["x0"].shape[0]
    model.train()
    return total / max(count, 1)
