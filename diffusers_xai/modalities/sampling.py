"""How the trainer and the modalities sample for validation grids, end-of-training evaluation and explanations: a
DDIM copy of the pipeline, per-sample generators, and batches with a progress bar."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from tqdm.auto import tqdm

__all__ = ["ddim_copy", "sample_in_batches", "sample_per_generator", "sampling_steps"]


def ddim_copy(pipeline, **scheduler_kwargs):
    """`pipeline`'s components under a DDIM scheduler of the same noise schedule and the data's defaults
    (`scheduler_kwargs` on top), progress bar off: how validation grids, end-of-training evaluation and explanations
    sample."""
    # `with_scheduler`, not `make_scheduler(..., pipeline.scheduler.config)`: only the noise schedule and the data's
    # defaults carry over, so a sampler setting made by hand on `pipeline` (SDE, thresholding, spacing) does not
    ddim = pipeline.with_scheduler("ddim", **scheduler_kwargs)
    ddim.set_progress_bar_config(disable=True)
    return ddim


def sample_per_generator(pipeline, generators: list[torch.Generator], num_inference_steps: int, trace, **kwargs):
    """The pipeline's output for one batch of [`Modality.sample_batch`]: `len(generators)` samples (the pipeline's
    `count_name`), sample `i` drawn from `generators[i]`; `trace` and `kwargs` (`output_type`, ...) go along."""
    count = {pipeline.count_name: len(generators)}
    return pipeline(**count, generator=generators, num_inference_steps=num_inference_steps, trace=trace, **kwargs)


def sampling_steps(config) -> int:
    """DDIM steps for validation grids, end-of-training evaluation and explanations (at most the T of training)."""
    return min(config.validation_num_inference_steps, config.num_train_timesteps)


def sample_in_batches(sample: Callable[[int, torch.Generator], Any], num_samples: int, config, batch_size: int = 64):
    """
    Call `sample(n, generator)` for batches of at most `batch_size` until `num_samples` are drawn, with a progress
    bar; returns the list of batch outputs. One CPU generator seeded `config.seed + 1` (the validation grid uses
    `config.seed`) draws them all, so the samples are reproducible and differ from the grid's.
    """
    generator = torch.Generator("cpu").manual_seed((config.seed or 0) + 1)
    batches, drawn = [], 0
    with tqdm(total=num_samples, desc="sampling for evaluation", unit="sample") as bar:
        while drawn < num_samples:  # counted here: a disabled bar (TQDM_DISABLE=1) never advances `bar.n`
            n = min(batch_size, num_samples - drawn)
            batches.append(sample(n, generator))
            drawn += n
            bar.update(n)
    return batches
