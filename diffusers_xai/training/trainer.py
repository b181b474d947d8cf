"""`train(config) -> TrainResult`: the one DDPM training loop, for every modality.

The loop is diffusers' `examples/unconditional_image_generation/train_unconditional.py` (accelerate `prepare`,
`accumulate`, `backward`, `clip_grad_norm_`, `sync_gradients`, EMAModel, save/load-state hooks) with what it lacks:
modality plug-ins, atomic checkpoints, exact resume (noise from a checkpointed generator, seeded data order),
a wall-clock budget, and a stop on a non-finite loss before it reaches the weights or a checkpoint.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import os
import random
import shutil
import time
import warnings
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..modalities.base import get_modality
from .checkpointing import load_checkpoint, prune_checkpoints, resolve_checkpoint, save_checkpoint
from .config import TrainingConfig
from .finetune import build_noise_scheduler, prepare_for_finetuning, save_finetuned
from .finish import RunSummary, finish_run
from .schedule import TimeBudget, get_budgeted_scheduler

__all__ = ["NonFiniteLossError", "TrainResult", "train"]

logger = logging.getLogger(__name__)

MODEL_FOLDER = "unet"
EMA_FOLDER = "unet_ema"
LORA_FOLDER = "unet_lora"


class NonFiniteLossError(RuntimeError):
    """Raised when the loss (or gradient norm) becomes NaN/inf; the weights of the failing step are never applied."""


@dataclass
class TrainResult:
    """
    What [`train`] returns.

    Args:
        pipeline (`DiffusionPipeline` or `None`): the saved pipeline (EMA weights when `use_ema`); `None` on
            non-main processes.
        output_dir (`str`): where the pipeline, `checkpoint-N` folders, logs and samples are.
        global_step (`int`): optimizer steps done, counting those before a resume.
        initial_global_step (`int`): the step this run resumed from (0 for a fresh run).
        loss_history (`list[float]`): mean training loss of every optimizer step `1..global_step` (restored on resume).
        validation_loss_history (`list[tuple[int, float]]`): `(step, loss)` on the held-out split.
        stop_reason (`str`): `"max_train_steps"` or `"max_train_minutes"`.
        train_seconds (`float`): wall-clock time of this run's steps (setup and the final save excluded).
        evaluation ([`EvaluationReport`], *optional*): the end-of-training evaluation, when `eval_samples` was set.
        commit_url (`str`, *optional*): the Hub commit, when `push_to_hub` was set.
    """

    pipeline: object | None
    output_dir: str
    global_step: int
    initial_global_step: int = 0
    loss_history: list[float] = field(default_factory=list)
    validation_loss_history: list[tuple[int, float]] = field(default_factory=list)
    stop_reason: str = "max_train_steps"
    train_seconds: float = 0.0
    evaluation: object | None = None
    commit_url: str | None = None

    @property
    def steps_per_second(self) -> float:
        done = self.global_step - self.initial_global_step
        return done / self.train_seconds if self.train_seconds > 0 else float("nan")


def _make_accelerator(config: TrainingConfig):
    from accelerate import Accelerator, DataLoaderConfiguration
    from accelerate.state import AcceleratorState, GradientState
    from accelerate.utils import ProjectConfiguration

    # accelerate keeps one process-wide state; a second in-process run (tests, the quickstart, a notebook) with
    # another `mixed_precision` would be refused, so a non-distributed process starts each run from a clean state.
    # An interrupted loop (NaN stop, time budget) also leaves its dataloader registered in the shared GradientState.
    if int(os.environ.get("WORLD_SIZE", "1")) == 1:
        AcceleratorState._reset_state()
        GradientState._reset_state()
    return Accelerator(
        # on a machine without an accelerator, launched processes must still form one (gloo) process group
        cpu=not torch.accelerator.is_available(),
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        mixed_precision=config.mixed_precision,
        log_with=None if config.report_to == "none" else config.report_to,
        project_config=ProjectConfiguration(
            project_dir=config.output_dir, logging_dir=os.path.join(config.output_dir, config.logging_dir)
        ),
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=config.seed),
    )


def _prepare_data(modality, config: TrainingConfig):
    """Load, check, split and subset the data; returns `(train_dataset, validation_dataset | None, preprocessor)`."""
    dataset = modality.load_dataset(config)
    source = config.dataset_name or config.train_data_dir
    if len(dataset) == 0:
        raise ValueError(f"The dataset {source!r} (split {config.split!r}) is empty; there is nothing to train on.")
    validation = None
    if config.validation_split > 0:
        n_val = max(1, round(len(dataset) * config.validation_split))
        if n_val >= len(dataset):
            raise ValueError(
                f"`validation_split` {config.validation_split} leaves no training data in {len(dataset)} examples."
            )
        split = dataset.train_test_split(test_size=n_val, seed=config.seed or 0, shuffle=True)
        dataset, validation = split["train"], split["test"]
    if config.max_train_samples is not None and config.max_train_samples < len(dataset):
        dataset = dataset.shuffle(seed=config.seed or 0).select(range(config.max_train_samples))
    preprocessor = modality.fit_preprocessor(dataset, config)

    def transform(examples):
        return modality.to_tensors(examples, preprocessor, config)

    dataset.set_transform(transform)
    if validation is not None:
        validation.set_transform(transform)
    return dataset, validation, preprocessor


def _prepare_stream(modality, config: TrainingConfig, seed: int | None):
    """
    `streaming: true`: the modality's `datasets.IterableDataset`, cut to its first `max_train_samples` rows
    (`take`: a stream has no random subset), the preprocessor fitted on a `datasets.Dataset` of its first
    `streaming_fit_samples` rows (the only rows ever held in memory at once, undecoded), shuffled in a
    `shuffle_buffer_size` buffer after permuting the shards (`seed=None` keeps the reading order), and mapped
    through the same `to_tensors` as the map-style path. Returns `(stream, preprocessor)`.
    """
    import datasets

    stream = modality.load_streaming_dataset(config)
    if config.max_train_samples is not None:
        stream = stream.take(config.max_train_samples)
    # undecoded (images stay bytes until the fit reads them); a CSV/JSON stream has no features, so nothing to decode
    head = list((stream.decode(False) if stream.features else stream).take(config.streaming_fit_samples))
    if not head:
        source = config.dataset_name or config.train_data_dir
        raise ValueError(
            f"The dataset {source!r} (split {config.split!r}) streamed no rows; there is nothing to train on."
        )
    columns = list(head[0])
    preprocessor = modality.fit_preprocessor(datasets.Dataset.from_list(head, features=stream.features), config)
    del head
    if seed is not None:
        stream = stream.shuffle(seed=seed, buffer_size=config.shuffle_buffer_size)

    def transform(examples):
        return modality.to_tensors(examples, preprocessor, config)

    # after the shuffle, so the buffer holds raw (encoded) rows; one map batch per training batch bounds the memory
    stream = stream.map(transform, batched=True, batch_size=config.train_batch_size, remove_columns=columns)
    return stream, preprocessor


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


def _register_state_hooks(accelerator, ema_model, model_cls):
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


def _training_target(noise_scheduler, x0, noise, timesteps):
    prediction_type = noise_scheduler.config.prediction_type
    if prediction_type == "epsilon":
        return noise
    if prediction_type == "sample":
        return x0
    return noise_scheduler.get_velocity(x0, noise, timesteps)


def _denoise(model, x_t, timesteps, batch):
    if "class_labels" in batch:
        return model(x_t, timesteps, class_labels=batch["class_labels"]).sample
    return model(x_t, timesteps).sample


def _drop_labels(labels: torch.Tensor, prob: float, null_label: int, generator) -> torch.Tensor:
    """Label dropout for classifier-free guidance: each label becomes the null class with probability `prob`, drawn
    from the run's noise generator (so a resumed run replays it and streamed batches equal map-style ones)."""
    drop = torch.rand(labels.shape, generator=generator, device=generator.device).to(labels.device) < prob
    return torch.where(drop, torch.full_like(labels, null_label), labels)


def _diffusion_loss(model, noise_scheduler, batch, generator, label_dropout: tuple[float, int] | None = None):
    r"""
    $\lVert f_\theta(x_t, t) - \text{target} \rVert^2$ where
    $x_t = \sqrt{\bar\alpha_t} x_0 + \sqrt{1-\bar\alpha_t}\epsilon$ and the target is $\epsilon$, $x_0$ or $v$
    by `prediction_type`; noise and $t$ are drawn from `generator`. `label_dropout=(p, null_label)` drops class
    labels to the null class (class-conditional images).
    """
    x0 = batch["x0"]
    noise = torch.randn(x0.shape, generator=generator, device=generator.device, dtype=x0.dtype).to(x0.device)
    t_max = noise_scheduler.config.num_train_timesteps
    timesteps = torch.randint(0, t_max, (x0.shape[0],), generator=generator, device=generator.device).to(x0.device)
    x_t = noise_scheduler.add_noise(x0, noise, timesteps)
    if label_dropout is not None and "class_labels" in batch:
        batch = {**batch, "class_labels": _drop_labels(batch["class_labels"], *label_dropout, generator)}
    prediction = _denoise(model, x_t, timesteps, batch)
    return F.mse_loss(prediction.float(), _training_target(noise_scheduler, x0, noise, timesteps).float())


@torch.no_grad()
def _validation_loss(model, noise_scheduler, dataloader, seed: int, accelerator) -> float:
    """Mean loss on the held-out split with a fixed noise generator, so values are comparable across steps."""
    generator = torch.Generator(accelerator.device).manual_seed(seed)
    total, count = 0.0, 0
    model.eval()
    for batch in dataloader:
        batch = {k: v.to(accelerator.device) for k, v in batch.items()}
        with accelerator.autocast():
            loss = _diffusion_loss(model, noise_scheduler, batch, generator)
        total += loss.item() * batch["x0"].shape[0]
        count += batch["x0"].shape[0]
    model.train()
    return total / max(count, 1)


def _params_finite(model) -> bool:
    return all(torch.isfinite(p).all() for p in model.parameters())


def _tracker_config(config: TrainingConfig) -> dict:
    # tensorboard's hparams only take scalars and strings
    out = {}
    for key, value in config.to_dict().items():
        out[key] = value if isinstance(value, (int, float, str, bool)) else str(value)
    return out


def _save_pipeline(pipeline, output_dir: str) -> None:
    """`save_pretrained` into a temp dir, then move each entry into `output_dir`, `model_index.json` last, so a
    loader never sees an index that points at half-written components."""
    tmp = os.path.join(output_dir, ".pipeline.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    pipeline.save_pretrained(tmp, safe_serialization=True)
    names = sorted(os.listdir(tmp), key=lambda name: name == "model_index.json")
    for name in names:
        target = os.path.join(output_dir, name)
        if os.path.isdir(target):
            shutil.rmtree(target)
        os.replace(os.path.join(tmp, name), target)
    shutil.rmtree(tmp, ignore_errors=True)


def train(config: TrainingConfig) -> TrainResult:
    """
    Train a diffusion model as `config` says, and save its pipeline (and a model card) to `config.output_dir`.

    Works for every registered modality ([`Modality`]), single process or under `accelerate launch`. A run stops at
    `max_train_steps` (or `num_epochs`) or after `max_train_minutes`, whichever comes first, and resumes from
    `resume_from_checkpoint` (`"latest"` or a folder) exactly where the checkpoint left off: same step, weights,
    optimizer, LR schedule, EMA, data order and noise. Raises [`NonFiniteLossError`] on a NaN/inf loss.

    Args:
        config ([`TrainingConfig`]): the run's settings.

    Returns:
        [`TrainResult`] with the saved pipeline (EMA weights when enabled), the output dir, the step and the losses.

    Example:

    ```py
    >>> from diffusers_xai.training import TrainingConfig, train
    >>> config = TrainingConfig.from_yaml("train/configs/digits.yaml", {"max_train_minutes": 4})
    >>> result = train(config)
    >>> result.global_step, result.loss_history[-1]
    ```
    """
    from accelerate.utils import set_seed
    from diffusers.training_utils import EMAModel

    if not isinstance(config, TrainingConfig):
        raise TypeError(f"`config` must be a TrainingConfig, got {type(config).__name__}.")
    config.validate()
    if config.push_to_hub:  # no token: say so now, not after hours of training
        from ..hub.publish import resolve_token

        resolve_token(None)  # HF_TOKEN or the `hf auth login` cache; never a config key
    modality = get_modality(config.modality)
    accelerator = _make_accelerator(config)
    seed = config.seed if config.seed is not None else random.SystemRandom().randrange(2**31)
    set_seed(seed)
    if accelerator.is_main_process:
        os.makedirs(config.output_dir, exist_ok=True)

    resume_path = None
    if config.resume_from_checkpoint is not None:
        resume_path = resolve_checkpoint(config.resume_from_checkpoint, config.output_dir)
        if resume_path is None:
            logger.info(f"No checkpoint in {config.output_dir!r} to resume from; starting a new run.")

    # 1. data (every input check happens before the first step)
    if config.streaming:
        train_dataset, preprocessor = _prepare_stream(modality, config, seed)
        validation_dataset = None  # the config refuses `validation_split` with streaming
    else:
        train_dataset, validation_dataset, preprocessor = _prepare_data(modality, config)
    # A stream goes through `accelerate`'s default for iterable datasets, `dispatch_batches`: the main process reads
    # `num_processes` batches per step and sends each rank its own. Rather than per-rank shards
    # (`split_dataset_by_node`, or accelerate's `dispatch_batches=False`): those give ranks unequal row counts
    # whenever the shards are uneven (one CSV is one shard), and a rank that runs out first leaves the others
    # waiting in DDP's all-reduce; dispatching keeps the batches even and the order that of one process.
    train_dataloader = torch.utils.data.DataLoader(
        train_dataset,
        batch_size=config.train_batch_size,
        shuffle=not config.streaming,  # a stream shuffles itself (shards + buffer, reseeded by `set_epoch`)
        num_workers=config.dataloader_num_workers,
    )
    validation_dataloader = None
    if validation_dataset is not None:
        validation_dataloader = torch.utils.data.DataLoader(validation_dataset, batch_size=config.train_batch_size)

    # 2. model, noise schedule, EMA
    # (fine-tuning: the pretrained UNet and noise schedule, with a LoRA adapter when `lora_rank` is set)
    model = prepare_for_finetuning(modality.build_model(config, preprocessor), config)
    noise_scheduler = build_noise_scheduler(config)
    # class-conditional images: (p, null class index) of the label dropout (see `modalities/image/labels.py`)
    dropout_prob = config.modality_options.get("class_dropout_prob", 0.0)
    num_class_embeds = getattr(getattr(model, "config", None), "num_class_embeds", None)
    label_dropout = (dropout_prob, num_class_embeds - 1) if dropout_prob and num_class_embeds else None
    ema_model = None
    if config.use_ema:
        ema_model = EMAModel(
            model.parameters(),
            decay=config.ema_max_decay,
            use_ema_warmup=True,
            inv_gamma=config.ema_inv_gamma,
            power=config.ema_power,
            model_cls=type(model),
            model_config=model.config,
            foreach=True,
        )

    # 3. optimisation
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad],
        lr=config.learning_rate,
        betas=(config.adam_beta1, config.adam_beta2),
        weight_decay=config.adam_weight_decay,
        eps=config.adam_epsilon,
    )
    if config.streaming:  # no length, so no epochs to count: `max_train_steps` (required by the config) ends the run
        max_train_steps, steps_per_epoch, num_epochs = config.max_train_steps, None, None
    else:
        # batches each process sees per epoch once `prepare` has sharded the loader (as diffusers' text_to_image)
        batches_per_process = math.ceil(len(train_dataloader) / accelerator.num_processes)
        steps_per_epoch = math.ceil(batches_per_process / config.gradient_accumulation_steps)
        max_train_steps = config.max_train_steps or config.num_epochs * steps_per_epoch
        num_epochs = math.ceil(max_train_steps / steps_per_epoch)
    # a `max_train_minutes` run that stops early still goes through its whole LR schedule (see `schedule.py`)
    budget = TimeBudget(config.max_train_minutes) if config.max_train_minutes else None
    lr_scheduler = get_budgeted_scheduler(
        config.lr_scheduler,
        optimizer,
        num_warmup_steps=config.lr_warmup_steps * accelerator.num_processes,
        num_training_steps=max_train_steps * accelerator.num_processes,
        budget=budget,
    )
    _register_state_hooks(accelerator, ema_model, type(model))
    model, optimizer, train_dataloader, lr_scheduler = accelerator.prepare(
        model, optimizer, train_dataloader, lr_scheduler
    )
    if ema_model is not None:
        ema_model.to(accelerator.device)
    if accelerator.is_main_process and config.report_to != "none":
        accelerator.init_trackers(config.tracker_project_name, config=_tracker_config(config))

    # noise and timesteps come from their own generator, checkpointed with the run, so a resumed run replays them
    noise_generator = torch.Generator(accelerator.device).manual_seed(seed + accelerator.process_index)

    # 4. resume
    global_step = 0
    loss_history: list[float] = []
    validation_losses: list[tuple[int, float]] = []
    # streaming: where the data stood at the last step, `{"epoch", "batches"}` (micro-batches read in that epoch)
    stream_position = {"epoch": 0, "batches": 0}
    if resume_path is not None:
        logger.info(f"Resuming from {resume_path}")
        state = load_checkpoint(accelerator, resume_path, noise_generator)
        global_step = int(state["global_step"])
        loss_history = [float(v) for v in state.get("loss_history", [])][:global_step]
        validation_losses = [(int(s), float(v)) for s, v in state.get("validation_loss_history", [])]
        if config.streaming and global_step:
            if "stream_position" not in state:
                logger.warning(f"{resume_path} was not written by a streaming run; the data order restarts.")
            stream_position = {k: int(v) for k, v in state.get("stream_position", stream_position).items()}
    initial_global_step = global_step

    total_batch = config.train_batch_size * accelerator.num_processes * config.gradient_accumulation_steps
    logger.info(
        f"***** Running training ({config.modality}) *****\n"
        f"  examples = {'streamed' if config.streaming else len(train_dataset)}\n"
        f"  total batch size = {total_batch}\n  optimization steps = {max_train_steps} (from {global_step})"
    )

    def trainer_state() -> dict:
        state = {
            "loss_history": loss_history,
            "validation_loss_history": validation_losses,
            "config": config.to_dict(),
        }
        if config.streaming:
            state["stream_position"] = dict(stream_position)
        return state

    def run_validation(step: int) -> None:
        unwrapped = accelerator.unwrap_model(model)
        if validation_dataloader is not None:
            loss = _validation_loss(unwrapped, noise_scheduler, validation_dataloader, seed, accelerator)
            validation_losses.append((step, loss))
            accelerator.log({"validation_loss": loss}, step=step)
        if ema_model is not None:
            ema_model.store(unwrapped.parameters())
            ema_model.copy_to(unwrapped.parameters())
        unwrapped.eval()
        try:
            pipeline = modality.build_pipeline(unwrapped, noise_scheduler, preprocessor)
            modality.log_validation(pipeline, step, config, accelerator)
        finally:
            unwrapped.train()
            if ema_model is not None:
                ema_model.restore(unwrapped.parameters())

    # 5. the loop
    progress_bar = tqdm(
        total=max_train_steps, initial=global_step, desc="Steps", disable=not accelerator.is_local_main_process
    )
    stop_reason = "max_train_steps"
    check_grad_norm = config.mixed_precision != "fp16"  # fp16's GradScaler skips inf-gradient steps by design
    if config.streaming:
        # A stream cannot be indexed: resume replays the checkpoint's epoch (`set_epoch` reseeds the same shuffle)
        # and drops the batches consumed before the checkpoint with `skip_first_batches`: exact, at the cost of
        # reading and preprocessing those rows again. `IterableDataset.state_dict()` would not re-read them, but
        # datasets drops the shuffle buffer on resume, so the order would differ from an uninterrupted run.
        first_epoch, resume_batches = stream_position["epoch"], stream_position["batches"]
        epochs = itertools.count(first_epoch)
    else:
        first_epoch = global_step // steps_per_epoch
        resume_batches = (global_step % steps_per_epoch) * config.gradient_accumulation_steps
        epochs = range(first_epoch, num_epochs)
    window_losses: list[torch.Tensor] = []
    start = time.perf_counter()
    if budget is not None:
        budget.start()
    model.train()
    try:
        for epoch in epochs:
            if global_step >= max_train_steps or stop_reason == "max_train_minutes":
                break
            if config.streaming:
                if epoch > first_epoch and stream_position["batches"] == 0:  # else `itertools.count` never ends
                    raise ValueError(
                        f"The stream yielded no batch in epoch {epoch - 1}; there is nothing to train on."
                    )
                stream_position.update(epoch=epoch, batches=resume_batches if epoch == first_epoch else 0)
            train_dataloader.set_epoch(epoch)
            batches = train_dataloader
            if epoch == first_epoch and resume_batches:
                batches = accelerator.skip_first_batches(train_dataloader, resume_batches)
            for batch in batches:
                stream_position["batches"] += 1
                with accelerator.accumulate(model):
                    loss = _diffusion_loss(model, noise_scheduler, batch, noise_generator, label_dropout)
                    mean_loss = accelerator.gather(loss.detach()[None]).mean()
                    if not torch.isfinite(mean_loss):
                        raise NonFiniteLossError(
                            f"Training loss became {mean_loss.item()} at step {global_step + 1} (epoch {epoch}); "
                            "stopped before updating the weights, no checkpoint written. Lower `learning_rate`, "
                            "keep `max_grad_norm` set, or use `mixed_precision: no`; resume from the last checkpoint."
                        )
                    window_losses.append(mean_loss)
                    accelerator.backward(loss)
                    if accelerator.sync_gradients and config.max_grad_norm is not None:
                        grad_norm = accelerator.clip_grad_norm_(model.parameters(), config.max_grad_norm)
                        if check_grad_norm and not torch.isfinite(grad_norm):
                            raise NonFiniteLossError(
                                f"Gradient norm became {float(grad_norm)} at step {global_step + 1} (epoch {epoch}); "
                                "stopped before updating the weights, no checkpoint written. Lower `learning_rate`."
                            )
                    optimizer.step()
                    lr_scheduler.step()
                    optimizer.zero_grad(set_to_none=True)

                if not accelerator.sync_gradients:
                    continue
                # one optimizer step done
                if ema_model is not None:
                    ema_model.step(model.parameters())
                global_step += 1
                step_loss = torch.stack(window_losses).mean().item()
                window_losses.clear()
                loss_history.append(step_loss)
                logs = {"loss": step_loss, "lr": lr_scheduler.get_last_lr()[0]}
                if ema_model is not None:
                    logs["ema_decay"] = ema_model.cur_decay_value
                progress_bar.update(1)
                progress_bar.set_postfix(loss=f"{step_loss:.4f}", lr=f"{logs['lr']:.2e}")
                accelerator.log(logs, step=global_step)

                if config.checkpointing_steps and global_step % config.checkpointing_steps == 0:
                    if not _params_finite(accelerator.unwrap_model(model)):
                        raise NonFiniteLossError(
                            f"Weights became non-finite at step {global_step}; checkpoint not written."
                        )
                    path = save_checkpoint(
                        accelerator, config.output_dir, global_step, trainer_state(), noise_generator
                    )
                    if accelerator.is_main_process:
                        prune_checkpoints(config.output_dir, config.checkpoints_total_limit)
                        logger.info(f"Saved state to {path}")
                if config.validation_steps and global_step % config.validation_steps == 0:
                    if accelerator.is_main_process:
                        run_validation(global_step)
                    accelerator.wait_for_everyone()

                if global_step >= max_train_steps:
                    break
                if budget is not None:
                    elapsed = torch.tensor(budget.elapsed_fraction(), device=accelerator.device)
                    if accelerator.num_processes > 1:  # the main process's clock decides for everyone
                        from accelerate.utils import broadcast

                        elapsed = broadcast(elapsed)
                    budget.update(elapsed.item())
                    if budget.exhausted:
                        stop_reason = "max_train_minutes"
                        break
        train_seconds = time.perf_counter() - start
        progress_bar.close()

        # 6. save the pipeline (EMA weights), the model card, push
        accelerator.wait_for_everyone()
        pipeline = evaluation = commit_url = None
        if accelerator.is_main_process:
            unwrapped = accelerator.unwrap_model(model)
            if ema_model is not None:
                ema_model.copy_to(unwrapped.parameters())
            unwrapped.eval()
            pipeline = modality.build_pipeline(unwrapped, noise_scheduler, preprocessor)
            if config.lora_rank:
                save_finetuned(pipeline, config)
            else:
                _save_pipeline(pipeline, config.output_dir)
            # evaluation (eval_samples), explanation card, push: the pipeline is saved first, so a failure here
            # (e.g. the Hub is down) never costs the trained weights
            run = RunSummary(
                global_step=global_step,
                final_loss=loss_history[-1] if loss_history else None,
                num_processes=accelerator.num_processes,
                train_seconds=train_seconds,
                stop_reason=stop_reason,
            )
            finished = finish_run(pipeline, modality, config, run)
            evaluation = finished["report"]
            commit_url = finished["commit_url"]
        accelerator.wait_for_everyone()
    finally:
        progress_bar.close()
        accelerator.end_training()

    return TrainResult(
        pipeline=pipeline,
        output_dir=config.output_dir,
        global_step=global_step,
        initial_global_step=initial_global_step,
        loss_history=loss_history,
        validation_loss_history=validation_losses,
        stop_reason=stop_reason,
        train_seconds=train_seconds,
        evaluation=evaluation,
        commit_url=commit_url,
    )
