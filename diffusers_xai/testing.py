"""Tiny seeded components for tests, benchmarks and docs (as diffusers' `get_dummy_components()`); no downloads."""

from __future__ import annotations

from typing import Literal

import torch
from diffusers import UNet2DConditionModel, UNet2DModel

__all__ = [
    "fit_denoiser",
    "planted_image_model",
    "planted_series_pipeline",
    "planted_table_pipeline",
    "seeded_generator",
    "tiny_class_conditional_unet",
    "tiny_conditional_unet",
    "tiny_pipeline",
    "tiny_tabular_pipeline",
    "tiny_traced_run",
    "tiny_unet",
]


def seeded_generator(seed: int = 0) -> torch.Generator:
    """A CPU `torch.Generator` seeded with `seed`, for reproducible pipeline calls."""
    return torch.Generator().manual_seed(seed)


def tiny_unet(
    seed: int = 0,
    in_channels: int = 1,
    sample_size: int | tuple[int, int] = 8,
    attention: bool = True,
    num_classes: int | None = None,
    mid_attention: bool | None = None,
    attention_head_dim: int = 4,
    block_out_channels: tuple[int, int] = (4, 8),
    norm_num_groups: int = 4,
    null_class: bool = True,
) -> UNet2DModel:
    """
    A 2-level `UNet2DModel` (`block_out_channels`, default 4/8) with attention in the low-resolution blocks and the
    mid block. With `num_classes=K` it is class-conditional in the project's convention: `num_class_embeds = K + 1`,
    label K being the null class (see `diffusers_xai.pipelines.guidance`; `null_class=False`: K embeddings, no null
    class). `mid_attention` (default: `attention`) sets the mid block's attention on its own.
    """
    torch.manual_seed(seed)
    return UNet2DModel(
        sample_size=sample_size,
        in_channels=in_channels,
        out_channels=in_channels,
        block_out_channels=block_out_channels,
        layers_per_block=1,
        norm_num_groups=norm_num_groups,
        attention_head_dim=attention_head_dim,
        down_block_types=("DownBlock2D", "AttnDownBlock2D" if attention else "DownBlock2D"),
        up_block_types=("AttnUpBlock2D" if attention else "UpBlock2D", "UpBlock2D"),
        add_attention=attention if mid_attention is None else mid_attention,
        num_class_embeds=None if num_classes is None else num_classes + int(null_class),
    ).eval()


def tiny_conditional_unet(
    seed: int = 0,
    cross_attention_dim: int = 8,
    block_out_channels: tuple[int, int] = (4, 8),
    attention_head_dim: int = 2,
    cross_attention_blocks: tuple[bool, bool] = (True, False),
    **unet_kwargs,
) -> UNet2DConditionModel:
    """
    A tiny `UNet2DConditionModel` with cross-attention (as diffusers' Stable Diffusion tests build it): 2 levels,
    `cross_attention_blocks` saying which down level (and its mirrored up level) cross-attends; `unet_kwargs` go to
    the constructor (e.g. SDXL's added conditioning).
    """
    down = tuple("CrossAttnDownBlock2D" if c else "DownBlock2D" for c in cross_attention_blocks)
    up = tuple("CrossAttnUpBlock2D" if c else "UpBlock2D" for c in reversed(cross_attention_blocks))
    torch.manual_seed(seed)
    return UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        block_out_channels=block_out_channels,
        layers_per_block=1,
        norm_num_groups=4,
        down_block_types=down,
        up_block_types=up,
        cross_attention_dim=cross_attention_dim,
        attention_head_dim=attention_head_dim,
        **unet_kwargs,
    ).eval()


def tiny_pipeline(scheduler: str = "ddpm", seed: int = 0, num_train_timesteps: int = 100, **unet_kwargs):
    """A [`DiffusionXAIPipeline`] around [`tiny_unet`] with a fresh scheduler of the given name."""
    from .modalities.image import DiffusionXAIPipeline

    pipe = DiffusionXAIPipeline.from_unet(
        tiny_unet(seed=seed, **unet_kwargs), scheduler, num_train_timesteps=num_train_timesteps
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def tiny_tabular_pipeline(
    frame=None,
    condition_column: str | None = "cultivar",
    architecture: str = "mlp",
    scheduler: str = "ddpm",
    seed=0,
    null_class: bool = False,
    marginal_columns=None,
):
    """
    `(pipeline, frame)`: a [`TabularXAIPipeline`] (50 train timesteps) around a seeded 2 x 16 [`TabularDenoiser`]
    on a [`TabularPreprocessor`] fitted to `frame` (default: scikit-learn's wine, conditioned on `cultivar`);
    `null_class`: one more class embedding, the null class classifier-free guidance needs; `marginal_columns`: the
    preprocessor's.
    """
    from .modalities.tabular import TabularDenoiser, TabularPreprocessor, TabularXAIPipeline, load_wine_frame
    from .modalities.tabular.denoiser import class_embed_count

    frame = load_wine_frame() if frame is None else frame
    pre = TabularPreprocessor.fit(frame, condition_column=condition_column, marginal_columns=marginal_columns)
    torch.manual_seed(seed)
    denoiser = TabularDenoiser(
        in_features=pre.num_features,
        hidden_dims=(16, 16),
        architecture=architecture,
        time_embedding_dim=16,
        num_class_embeds=class_embed_count(pre.num_classes, null_class),
        null_class=null_class,
    ).eval()
    pipe = TabularXAIPipeline.from_denoiser(denoiser, pre, scheduler, num_train_timesteps=50)
    pipe.set_progress_bar_config(disable=True)
    return pipe, frame


def tiny_traced_run(batch_size: int = 2, num_inference_steps: int = 3, trace=True, seed: int = 0):
    """A [`tiny_pipeline`] and one seeded `output_type="pt"` run of it with a [`Trace`]: what the explain tests
    explain. `trace` is the call's `trace=` (`True`, a dict or a [`TraceConfig`])."""
    pipe = tiny_pipeline()
    out = pipe(
        batch_size=batch_size,
        num_inference_steps=num_inference_steps,
        trace=trace,
        output_type="pt",
        generator=torch.Generator().manual_seed(seed),
    )
    return pipe, out


def tiny_class_conditional_unet(
    num_classes: int, seed: int = 0, sample_size: int = 8, null_class: bool = True, channels: tuple = (16, 32)
) -> UNet2DModel:
    """
    A 2-level class-conditional `UNet2DModel` (`num_class_embeds`). With `null_class=True` it has one extra
    embedding, index `num_classes`, for the unconditional prediction of classifier-free guidance (train it with
    [`fit_denoiser`]'s `label_dropout`).
    """
    unet = tiny_unet(
        seed,
        sample_size=sample_size,
        num_classes=num_classes,
        attention_head_dim=8,
        block_out_channels=channels,
        norm_num_groups=8,
        null_class=null_class,
    )
    return unet.train()  # returned ready for training, as [`fit_denoiser`] uses it


def fit_denoiser(
    model: torch.nn.Module,
    x0: torch.Tensor,
    scheduler,
    class_labels: torch.Tensor | None = None,
    null_class: int | None = None,
    label_dropout: float = 0.1,
    num_steps: int = 300,
    batch_size: int = 64,
    learning_rate: float = 2e-3,
    seed: int = 0,
    null_x0: torch.Tensor | None = None,
) -> torch.nn.Module:
    r"""
    Fit a small denoiser on in-memory tensors `x0` `[N, *S]` (with the trainer's loss,
    `training.objective.diffusion_loss`), for planted-ground-truth models in tests and benchmarks. Returns the model
    in eval mode.

    Hand-written rather than [`train`]: planted data lives in memory, the fit takes seconds, and classifier-free
    guidance needs label dropout (a label replaced by `null_class` with probability `label_dropout`, Ho & Salimans
    2022, https://arxiv.org/abs/2207.12598), which the trainer's modalities do not do.

    `null_x0` (same shape as `x0`), when given, is what a dropped sample shows: a sample whose label became
    `null_class` is trained on `null_x0[i]` instead of `x0[i]`. Without it the null class learns the marginal of
    `x0` (classic label dropout); with it the null class learns the distribution of `null_x0`, e.g. the planted
    images without the class's mark, so that the class is the only source of what it draws ([`planted_image_model`]).
    """
    from tqdm.auto import tqdm

    from .training.objective import diffusion_loss

    if num_steps < 1 or batch_size < 1:
        raise ValueError(f"`num_steps` and `batch_size` must be >= 1, got {num_steps} and {batch_size}.")
    if null_class is not None and class_labels is None:
        raise ValueError("`null_class` needs `class_labels` (label dropout replaces labels by the null class).")
    if null_x0 is not None and (null_class is None or null_x0.shape != x0.shape):
        shape = tuple(null_x0.shape)
        raise ValueError(f"`null_x0` needs `null_class` and the shape of `x0` {tuple(x0.shape)}, got {shape}.")
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, learning_rate, total_steps=num_steps, pct_start=0.1)
    model.train()
    for _ in tqdm(range(num_steps), desc="fit", leave=False, disable=None):
        index = torch.randint(0, x0.shape[0], (batch_size,), generator=generator)
        batch = {"x0": x0[index]}
        if class_labels is not None:
            labels = class_labels[index].clone()
            if null_class is not None:
                dropped = torch.rand(batch_size, generator=generator) < label_dropout
                labels[dropped] = null_class
                if null_x0 is not None:
                    batch["x0"] = torch.where(dropped.view(-1, *[1] * (x0.ndim - 1)), null_x0[index], batch["x0"])
            batch["class_labels"] = labels
        loss = diffusion_loss(model, scheduler, batch, generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
    return model.eval()


def planted_image_model(
    resolution: int = 8,
    channels: tuple = (8, 16),
    num_steps: int = 200,
    seed: int = 0,
    null_images: Literal["unmarked", "marked"] = "unmarked",
):
    r"""
    `(unet, scheduler, data)`: a [`tiny_class_conditional_unet`] (4 classes + null class 4) fitted on
    [`planted_images`] (DDIM, cosine betas, epsilon prediction). 200 steps at 8 px take ~8 s on one core.

    `channels` are the block widths over 8 GroupNorm groups. With the default (8, 16) the last up block has one channel
    per group, where GradCAM's channel weights vanish ([`vanishing_gradcam_layers`]: plain GradCAM of that block is
    refused); `bench/explain_faithfulness.py` fits (16, 32), two channels per group, on which every explainer is
    defined.

    `null_images` decides what the null class (10% label dropout) learns, and so what "why this class"
    ($\hat{x}_0(x_t, c) - \hat{x}_0(x_t, \varnothing)$) means on the planted images:

    - `"unmarked"` (default): dropped samples show the digit *without* its mark ([`PlantedImages.unmarked`]). The
      unconditional model is a model of unmarked digits, so the class is the only source of the mark: on any
      $x_t$, marked or not, the null prediction draws no mark (it never saw one) and the class's prediction draws
      it in corner $k$. The contrast has a known answer, corner $k$, at every noise level: well posed.
    - `"marked"`: classic label dropout on the same marked images. The null class learns the mixture of the four
      marks, so once $x_t$ shows the mark the null prediction reads the class from $x_t$ and draws the mark too:
      the contrast vanishes in the corner after the first steps and the planted answer is ill-posed there
      (`bench/explain_planted_images.py --null-images marked`). Kept to reproduce that finding.
    """
    from diffusers import DDIMScheduler

    from .explain.planted import planted_images

    if null_images not in ("unmarked", "marked"):
        raise ValueError(f"`null_images` must be 'unmarked' or 'marked', got {null_images!r}.")
    data = planted_images(1797, resolution, seed=seed)
    unet = tiny_class_conditional_unet(data.num_classes, seed=seed, sample_size=resolution, channels=channels)
    scheduler = DDIMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", clip_sample=True)
    null_x0 = data.unmarked if null_images == "unmarked" else None
    fit_denoiser(unet, data.images, scheduler, data.class_labels, null_class=data.num_classes, num_steps=num_steps,
                 batch_size=32, seed=seed, null_x0=null_x0)  # fmt: skip
    return unet, scheduler, data


def planted_table_pipeline(num_steps: int = 1000, hidden_dims: tuple = (128, 128), seed: int = 0):
    """
    `(pipeline, data)`: a [`TabularXAIPipeline`] (DDIM, cosine betas as the bundled wine model) whose
    [`TabularDenoiser`], conditioned on `y`, is fitted on [`planted_table`] through its [`TabularPreprocessor`]
    (features `a, b, c, d` in that order).
    """
    from .explain.planted import planted_table
    from .modalities.tabular import TabularDenoiser, TabularPreprocessor, TabularXAIPipeline

    data = planted_table(2048, seed=seed)
    pre = TabularPreprocessor.fit(data.frame, categorical_columns=["y"], condition_column="y", seed=seed)
    x0, labels = pre.transform(data.frame), pre.encode_labels(data.frame["y"])
    torch.manual_seed(seed)
    denoiser = TabularDenoiser(in_features=pre.num_features, hidden_dims=hidden_dims, num_class_embeds=3)
    pipe = TabularXAIPipeline.from_denoiser(denoiser, pre, "ddim", beta_schedule="squaredcos_cap_v2")
    fit_denoiser(denoiser, x0, pipe.scheduler, labels, num_steps=num_steps, batch_size=128, seed=seed)
    pipe.set_progress_bar_config(disable=True)
    return pipe, data


def planted_series_pipeline(
    num_steps: int = 1500,
    architecture: str = "conv",
    hidden_dim: int = 32,
    num_layers: int = 3,
    seed: int = 0,
    driver: str = "white",
):
    """
    `(pipeline, data)`: a [`TimeSeriesXAIPipeline`] (DDIM, cosine betas as the bundled sines model) whose
    [`TimeSeriesDenoiser`] is fitted on [`planted_series`] (channels `driver`, `follower`; delay 3; standardised);
    `driver` is the planted driver's kind (`"white"`, the default, or `"ar2"`).
    """
    from .explain.planted import planted_series
    from .modalities.timeseries import TimeSeriesDenoiser, TimeSeriesPreprocessor, TimeSeriesXAIPipeline

    data = planted_series(2048, seed=seed, driver=driver)
    length = data.windows.shape[1]
    pre = TimeSeriesPreprocessor.fit(data.windows, sequence_length=length, channels=data.channels,
                                     normalization="standard")  # fmt: skip
    torch.manual_seed(seed)
    denoiser = TimeSeriesDenoiser(in_channels=2, sample_size=length, architecture=architecture,
                                  hidden_dim=hidden_dim, num_layers=num_layers)  # fmt: skip
    pipe = TimeSeriesXAIPipeline.from_denoiser(denoiser, pre, "ddim", beta_schedule="squaredcos_cap_v2")
    fit_denoiser(denoiser, pre.transform(data.windows), pipe.scheduler, num_steps=num_steps, seed=seed)
    pipe.set_progress_bar_config(disable=True)
    return pipe, data
