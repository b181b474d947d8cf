"""One training run's state ([`Run`]) and the steps that build it before the loop: the accelerator and seed, the
data, the denoiser with its noise schedule and EMA copy, the optimisation, and the resume from a checkpoint."""

from __future__ import annotations

import logging
import math
import os
import random
from dataclasses import dataclass, field

import torch

from ..modalities.registry import get_modality
from .checkpointing import load_checkpoint, resolve_checkpoint
from .config import TrainingConfig
from .data import prepare_data, prepare_stream
from .finetune import build_noise_scheduler, prepare_for_finetuning
from .publishing import check_push
from .schedule import TimeBudget, get_budgeted_scheduler
from .state_hooks import register_state_hooks

__all__ = ["Run", "main_process_value", "prepare_run"]

logger = logging.getLogger(__name__)


def make_accelerator(config: TrainingConfig):
    """The run's `accelerate.Accelerator`: precision, gradient accumulation, trackers, seeded data order."""
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


def tracker_config(config: TrainingConfig) -> dict:
    """The config as tracker hyperparameters (tensorboard's hparams only take scalars and strings)."""
    out = {}
    for key, value in config.to_dict().items():
        out[key] = value if isinstance(value, (int, float, str, bool)) else str(value)
    return out


@dataclass
class Run:
    """Everything one training run works with, shared by the named steps of `trainer.train` (instead of closures)."""

    config: TrainingConfig
    modality: object
    accelerator: object
    seed: int
    preprocessor: object = None
    train_dataloader: object = None
    validation_dataloader: object = None
    num_examples: int | None = None
    model: torch.nn.Module | None = None
    noise_scheduler: object = None
    ema_model: object = None
    label_dropout: tuple[float, int] | None = None
    optimizer: object = None
    lr_scheduler: object = None
    budget: TimeBudget | None = None
    noise_generator: torch.Generator | None = None
    max_train_steps: int = 0
    steps_per_epoch: int | None = None
    num_epochs: int | None = None
    global_step: int = 0
    initial_global_step: int = 0
    loss_history: list[float] = field(default_factory=list)
    validation_losses: list[tuple[int, float]] = field(default_factory=list)
    # streaming: where the data stood at the last step, `{"epoch", "batches"}` (micro-batches read in that epoch)
    stream_position: dict[str, int] = field(default_factory=lambda: {"epoch": 0, "batches": 0})
    window_losses: list[torch.Tensor] = field(default_factory=list)
    stop_reason: str = "max_train_steps"
    # the modality's early-stopping checks: `(step, value)`, and `(step, weights)` of the last one that passed
    early_stopping_history: list[tuple[int, float]] = field(default_factory=list)
    passed_state: tuple[int, dict[str, torch.Tensor]] | None = None


def start_run(config: TrainingConfig) -> Run:
    """Validate the config (and the Hub token when pushing), build the accelerator, seed everything."""
    from accelerate.utils import set_seed

    if not isinstance(config, TrainingConfig):
        raise TypeError(f"`config` must be a TrainingConfig, got {type(config).__name__}.")
    config.validate()
    check_push(config, need_token=True)  # no token: say so now, not after hours of training
    modality = get_modality(config.modality)
    accelerator = make_accelerator(config)
    seed = config.seed if config.seed is not None else random.SystemRandom().randrange(2**31)
    set_seed(seed)
    if accelerator.is_main_process:
        os.makedirs(config.output_dir, exist_ok=True)
    return Run(config=config, modality=modality, accelerator=accelerator, seed=seed)


def resume_path(config: TrainingConfig) -> str | None:
    """The checkpoint folder `resume_from_checkpoint` names (`"latest"`: the newest), or `None`."""
    if config.resume_from_checkpoint is None:
        return None
    path = resolve_checkpoint(config.resume_from_checkpoint, config.output_dir)
    if path is None:
        logger.info(f"No checkpoint in {config.output_dir!r} to resume from; starting a new run.")
    return path


def build_dataloaders(run: Run) -> None:
    """The modality's data as DataLoaders (every input check happens here, before the first step)."""
    config = run.config
    if config.streaming:
        train_dataset, run.preprocessor = prepare_stream(run.modality, config, run.seed)
        validation_dataset = None  # the config refuses `validation_split` with streaming
    else:
        train_dataset, validation_dataset, run.preprocessor = prepare_data(run.modality, config)
        run.num_examples = len(train_dataset)
    # A stream goes through `accelerate`'s default for iterable datasets, `dispatch_batches`: the main process reads
    # `num_processes` batches per step and sends each rank its own. Rather than per-rank shards
    # (`split_dataset_by_node`, or accelerate's `dispatch_batches=False`): those give ranks unequal row counts
    # whenever the shards are uneven (one CSV is one shard), and a rank that runs out first leaves the others
    # waiting in DDP's all-reduce; dispatching keeps the batches even and the order that of one process.
    run.train_dataloader = torch.utils.data.DataLoader(
        train_dataset,
        batch_size=config.train_batch_size,
        shuffle=not config.streaming,  # a stream shuffles itself (shards + buffer, reseeded by `set_epoch`)
        num_workers=config.dataloader_num_workers,
    )
    if validation_dataset is not None:
        run.validation_dataloader = torch.utils.data.DataLoader(validation_dataset, batch_size=config.train_batch_size)


def build_model(run: Run) -> None:
    """The denoiser (fine-tuning: the pretrained one, with a LoRA adapter when `lora_rank` is set), the noise
    schedule, label dropout for classifier-free guidance and the EMA copy."""
    from diffusers.training_utils import EMAModel

    config = run.config
    run.model = prepare_for_finetuning(run.modality.build_model(config, run.preprocessor), config)
    run.noise_scheduler = build_noise_scheduler(config)
    # (p, null class index) of the label dropout: class-conditional images (`modalities/image/labels.py`) and tables
    # with `class_dropout_prob` (`modalities/tabular/modality.py`)
    dropout_prob = getattr(config.modality_options, "class_dropout_prob", 0.0)
    num_class_embeds = getattr(getattr(run.model, "config", None), "num_class_embeds", None)
    run.label_dropout = (dropout_prob, num_class_embeds - 1) if dropout_prob and num_class_embeds else None
    if config.use_ema:
        run.ema_model = EMAModel(
            run.model.parameters(),
            decay=config.ema_max_decay,
            use_ema_warmup=True,
            inv_gamma=config.ema_inv_gamma,
            power=config.ema_power,
            model_cls=type(run.model),
            model_config=run.model.config,
            foreach=True,
        )


def build_optimization(run: Run) -> None:
    """AdamW, the step budget (steps, epochs, minutes) and the LR schedule; then `accelerator.prepare`."""
    config, accelerator = run.config, run.accelerator
    run.optimizer = torch.optim.AdamW(
        [p for p in run.model.parameters() if p.requires_grad],
        lr=config.learning_rate,
        betas=(config.adam_beta1, config.adam_beta2),
        weight_decay=config.adam_weight_decay,
        eps=config.adam_epsilon,
    )
    if config.streaming:  # no length, so no epochs to count: `max_train_steps` (required by the config) ends the run
        run.max_train_steps = config.max_train_steps
    else:
        # batches each process sees per epoch once `prepare` has sharded the loader (as diffusers' text_to_image)
        batches_per_process = math.ceil(len(run.train_dataloader) / accelerator.num_processes)
        run.steps_per_epoch = math.ceil(batches_per_process / config.gradient_accumulation_steps)
        run.max_train_steps = config.max_train_steps or config.num_epochs * run.steps_per_epoch
        run.num_epochs = math.ceil(run.max_train_steps / run.steps_per_epoch)
    # a `max_train_minutes` run that stops early still goes through its whole LR schedule (see `schedule.py`)
    run.budget = TimeBudget(config.max_train_minutes) if config.max_train_minutes else None
    run.lr_scheduler = get_budgeted_scheduler(
        config.lr_scheduler,
        run.optimizer,
        num_warmup_steps=config.lr_warmup_steps * accelerator.num_processes,
        num_training_steps=run.max_train_steps * accelerator.num_processes,
        budget=run.budget,
    )
    register_state_hooks(accelerator, run.ema_model, type(run.model))
    run.model, run.optimizer, run.train_dataloader, run.lr_scheduler = accelerator.prepare(
        run.model, run.optimizer, run.train_dataloader, run.lr_scheduler
    )
    if run.ema_model is not None:
        run.ema_model.to(accelerator.device)
    if accelerator.is_main_process and config.report_to != "none":
        accelerator.init_trackers(config.tracker_project_name, config=tracker_config(config))
    # noise and timesteps come from their own generator, checkpointed with the run, so a resumed run replays them
    run.noise_generator = torch.Generator(accelerator.device).manual_seed(run.seed + accelerator.process_index)


def resume(run: Run, checkpoint: str | None) -> None:
    """Restore weights, optimizer, LR schedule, EMA, noise generator, step, histories and stream position."""
    if checkpoint is not None:
        logger.info(f"Resuming from {checkpoint}")
        state = load_checkpoint(run.accelerator, checkpoint, run.noise_generator)
        run.global_step = int(state["global_step"])
        run.loss_history = [float(v) for v in state.get("loss_history", [])][: run.global_step]
        run.validation_losses = [(int(s), float(v)) for s, v in state.get("validation_loss_history", [])]
        if run.config.streaming and run.global_step:
            if "stream_position" not in state:
                logger.warning(f"{checkpoint} was not written by a streaming run; the data order restarts.")
            run.stream_position = {k: int(v) for k, v in state.get("stream_position", run.stream_position).items()}
    run.initial_global_step = run.global_step


def prepare_run(config: TrainingConfig) -> Run:
    """Everything before the loop, in the order of diffusers' `train_unconditional.py`."""
    # 1. accelerator, seed, data (every input check happens before the first step)
    created = not os.path.exists(config.output_dir)
    run = start_run(config)
    checkpoint = resume_path(config)
    try:
        build_dataloaders(run)
    except Exception:  # bad data leaves no run folder behind (an empty one was made for the run, none existed)
        if created and run.accelerator.is_main_process and os.path.isdir(config.output_dir):
            if not os.listdir(config.output_dir):
                os.rmdir(config.output_dir)
        raise
    # 2. model, noise schedule, EMA; 3. optimisation; 4. resume
    build_model(run)
    build_optimization(run)
    resume(run, checkpoint)
    return run


def main_process_value(run: Run, value: float) -> float:
    """The main process's `value` on every rank (a decision one process makes for all); `value` itself on one."""
    if run.accelerator.num_processes == 1:
        return value
    from accelerate.utils import broadcast

    return broadcast(torch.tensor(float(value), device=run.accelerator.device)).item()
