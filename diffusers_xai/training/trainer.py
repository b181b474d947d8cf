"""`train(config) -> TrainResult`: the one DDPM training loop, for every modality.

The loop is diffusers' `examples/unconditional_image_generation/train_unconditional.py` (accelerate `prepare`,
`accumulate`, `backward`, `clip_grad_norm_`, `sync_gradients`, EMAModel, save/load-state hooks) with what it lacks:
modality plug-ins, atomic checkpoints, exact resume (noise from a checkpointed generator, seeded data order),
a wall-clock budget, and a stop on a non-finite loss before it reaches the weights or a checkpoint.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import os
import random
import shutil
import time
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from ..modalities.registry import get_modality
from ..utils.io import atomic_write
from .checkpointing import load_checkpoint, prune_checkpoints, resolve_checkpoint, save_checkpoint
from .config import TrainingConfig
from .data import prepare_data, prepare_stream
from .finetune import build_noise_scheduler, prepare_for_finetuning, save_finetuned
from .finish import RunSummary, early_stopping_line, finish_run
from .objective import diffusion_loss, validation_loss
from .publishing import check_push
from .schedule import TimeBudget, get_budgeted_scheduler
from .state_hooks import register_state_hooks

__all__ = ["NonFiniteLossError", "TrainResult", "train"]

logger = logging.getLogger(__name__)


# when the guard would keep its first check's weights, the run is trained again with checks this many times as often
FINER_CHECKS = 5


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
        stop_reason (`str`): `"max_train_steps"`, `"max_train_minutes"` or `"early_stopping"` (a modality's held-out
            check failed, e.g. the tabular `early_stopping_dcr_ratio`; the saved weights are those of the last check
            that passed, `restored_step`).
        holdout_pass ([`TrainResult`], *optional*): with a modality's refit on all rows (the tabular
            `refit_on_all_rows`), the first pass on the rows left after the holdout, whose checks chose this run's
            `global_step` (its `early_stopping_history` and `restored_step`); its folder is removed once chosen.
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
    early_stopping_history: list[tuple[int, float]] = field(default_factory=list)
    restored_step: int | None = None
    holdout_pass: TrainResult | None = None

    def summary(self, what: str | None = None) -> str:
        """What the training commands print at the end: where `what` (default: the pipeline's class) was saved, the
        early-stopping checks, and the evaluation's table when `eval_samples` was set."""
        final = f"; final loss {self.loss_history[-1]:.4f}" if self.loss_history else ""
        what = what or type(self.pipeline).__name__
        lines = [f"Saved {what} to {self.output_dir} after {self.global_step} steps ({self.stop_reason}){final}."]
        checks = early_stopping_line(self.early_stopping_history, self.stop_reason, self.restored_step)
        if checks:
            lines.append(f"Early-stopping checks: {checks}.")
        if self.evaluation is not None:
            lines.append(self.evaluation.summary())  # its table, then its warnings
        return "\n".join(lines)

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


@dataclass
class _Run:
    """Everything one training run works with, shared by the named steps of [`train`] (instead of closures)."""

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


def _start_run(config: TrainingConfig) -> _Run:
    """Validate the config (and the Hub token when pushing), build the accelerator, seed everything."""
    from accelerate.utils import set_seed

    if not isinstance(config, TrainingConfig):
        raise TypeError(f"`config` must be a TrainingConfig, got {type(config).__name__}.")
    config.validate()
    check_push(config, need_token=True)  # no token: say so now, not after hours of training
    modality = get_modality(config.modality)
    accelerator = _make_accelerator(config)
    seed = config.seed if config.seed is not None else random.SystemRandom().randrange(2**31)
    set_seed(seed)
    if accelerator.is_main_process:
        os.makedirs(config.output_dir, exist_ok=True)
    return _Run(config=config, modality=modality, accelerator=accelerator, seed=seed)


def _resume_path(config: TrainingConfig) -> str | None:
    if config.resume_from_checkpoint is None:
        return None
    path = resolve_checkpoint(config.resume_from_checkpoint, config.output_dir)
    if path is None:
        logger.info(f"No checkpoint in {config.output_dir!r} to resume from; starting a new run.")
    return path


def _build_dataloaders(run: _Run) -> None:
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


def _build_model(run: _Run) -> None:
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


def _build_optimization(run: _Run) -> None:
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
        accelerator.init_trackers(config.tracker_project_name, config=_tracker_config(config))
    # noise and timesteps come from their own generator, checkpointed with the run, so a resumed run replays them
    run.noise_generator = torch.Generator(accelerator.device).manual_seed(run.seed + accelerator.process_index)


def _resume(run: _Run, resume_path: str | None) -> None:
    """Restore weights, optimizer, LR schedule, EMA, noise generator, step, histories and stream position."""
    if resume_path is not None:
        logger.info(f"Resuming from {resume_path}")
        state = load_checkpoint(run.accelerator, resume_path, run.noise_generator)
        run.global_step = int(state["global_step"])
        run.loss_history = [float(v) for v in state.get("loss_history", [])][: run.global_step]
        run.validation_losses = [(int(s), float(v)) for s, v in state.get("validation_loss_history", [])]
        if run.config.streaming and run.global_step:
            if "stream_position" not in state:
                logger.warning(f"{resume_path} was not written by a streaming run; the data order restarts.")
            run.stream_position = {k: int(v) for k, v in state.get("stream_position", run.stream_position).items()}
    run.initial_global_step = run.global_step


def _trainer_state(run: _Run) -> dict:
    """What a checkpoint stores besides accelerate's state: histories, config, stream position."""
    state = {
        "loss_history": run.loss_history,
        "validation_loss_history": run.validation_losses,
        "config": run.config.to_dict(),
    }
    if run.config.streaming:
        state["stream_position"] = dict(run.stream_position)
    return state


def _run_validation(run: _Run, step: int) -> None:
    """Held-out loss, then the modality's validation samples from the EMA weights (main process)."""
    accelerator, ema_model = run.accelerator, run.ema_model
    unwrapped = accelerator.unwrap_model(run.model)
    if run.validation_dataloader is not None:
        loss = validation_loss(unwrapped, run.noise_scheduler, run.validation_dataloader, run.seed, accelerator)
        run.validation_losses.append((step, loss))
        accelerator.log({"validation_loss": loss}, step=step)
    if ema_model is not None:
        ema_model.store(unwrapped.parameters())
        ema_model.copy_to(unwrapped.parameters())
    unwrapped.eval()
    try:
        pipeline = run.modality.build_pipeline(unwrapped, run.noise_scheduler, run.preprocessor)
        run.modality.log_validation(pipeline, step, run.config, accelerator)
        check = run.modality.early_stopping_check(pipeline, run.config)
        if check is not None:
            _record_check(run, step, unwrapped, check)
    finally:
        unwrapped.train()
        if ema_model is not None:
            ema_model.restore(unwrapped.parameters())


def _record_check(run: _Run, step: int, model: torch.nn.Module, check: tuple[str, float, bool]) -> None:
    """Log an early-stopping check; keep a copy of the (EMA) weights that passed it, or mark the run to stop."""
    name, value, passed = check
    run.early_stopping_history.append((step, float(value)))
    run.accelerator.log({name: value}, step=step)
    if passed:
        run.passed_state = (step, {k: v.detach().clone() for k, v in model.state_dict().items()})
        return
    run.stop_reason = "early_stopping"
    kept = f"the weights of step {run.passed_state[0]}" if run.passed_state else "these weights (no check passed)"
    logger.warning(f"Early stopping at step {step}: {name} {value:.4f} failed its check; saving {kept}.")


def _restored_step(run: _Run) -> int | None:
    """The step whose weights were saved after a failed early-stopping check (`None`: no check failed or passed)."""
    return run.passed_state[0] if run.stop_reason == "early_stopping" and run.passed_state else None


def _main_process_value(run: _Run, value: float) -> float:
    """The main process's `value` on every rank (a decision one process makes for all); `value` itself on one."""
    if run.accelerator.num_processes == 1:
        return value
    from accelerate.utils import broadcast

    return broadcast(torch.tensor(float(value), device=run.accelerator.device)).item()


def _finer_check_steps(run: _Run) -> int | None:
    """
    The check interval to train again with, or `None`. When the first early-stopping check is the one whose weights
    would be kept (it passed, the second failed), the model went from not yet learnt to copying within one interval
    and the guard would keep the least-trained weights it saw (iris conditioned at seed 0: Trend 0.789, DCR ratio
    1.855; vega's 63-row la-riots). The run is then trained again from the start with checks `FINER_CHECKS` times
    as often, which find the last passing weights inside that interval; the same seed gives the same updates, so
    the new run's checks up to the old first one read the same. Once per run, and not for a resumed run (its first
    check here is not the run's first); the main process decides.
    """
    interval = run.config.validation_steps
    history = run.early_stopping_history
    first_kept = (
        run.stop_reason == "early_stopping" and run.initial_global_step == 0 and len(history) == 2
        and run.passed_state is not None and run.passed_state[0] == history[0][0]
    )  # fmt: skip
    finer = interval // FINER_CHECKS if first_kept and interval and interval >= FINER_CHECKS else 0
    if finer:
        (first, _), (second, value) = history
        logger.warning(
            f"The early-stopping check at update {second} failed ({value:.4f}) right after the first one: the "
            f"weights of update {first} may not have learnt the data yet. Training again with a check every {finer} "
            "updates."
        )
    return int(_main_process_value(run, finer)) or None


def _stopped_early(run: _Run) -> bool:
    """After a validation step: whether the main process's early-stopping check failed (it decides for every rank)."""
    stopped = bool(_main_process_value(run, float(run.stop_reason == "early_stopping")))
    if stopped:
        run.stop_reason = "early_stopping"
    return stopped


def _epoch_batches(run: _Run):
    """`(epoch, batches)` from where the run stands: a resumed run skips the micro-batches it had consumed.

    A stream cannot be indexed: resume replays the checkpoint's epoch (`set_epoch` reseeds the same shuffle) and drops
    the batches consumed before the checkpoint with `skip_first_batches`: exact, at the cost of reading and
    preprocessing those rows again. `IterableDataset.state_dict()` would not re-read them, but datasets drops the
    shuffle buffer on resume, so the order would differ from an uninterrupted run.
    """
    config, dataloader = run.config, run.train_dataloader
    if config.streaming:
        first_epoch, resume_batches = run.stream_position["epoch"], run.stream_position["batches"]
        epochs = itertools.count(first_epoch)
    else:
        first_epoch = run.global_step // run.steps_per_epoch
        resume_batches = (run.global_step % run.steps_per_epoch) * config.gradient_accumulation_steps
        epochs = range(first_epoch, run.num_epochs)
    for epoch in epochs:
        if run.global_step >= run.max_train_steps or run.stop_reason != "max_train_steps":
            return
        if config.streaming:
            if epoch > first_epoch and run.stream_position["batches"] == 0:  # else `itertools.count` never ends
                raise ValueError(f"The stream yielded no batch in epoch {epoch - 1}; there is nothing to train on.")
            run.stream_position.update(epoch=epoch, batches=resume_batches if epoch == first_epoch else 0)
        dataloader.set_epoch(epoch)
        if epoch == first_epoch and resume_batches:
            yield epoch, run.accelerator.skip_first_batches(dataloader, resume_batches)
        else:
            yield epoch, dataloader


def _train_micro_step(run: _Run, batch: dict, epoch: int) -> None:
    """Loss, backward, clipping and (on a sync step) the optimizer step; a non-finite loss or gradient norm stops
    the run before the weights change."""
    config, accelerator, model = run.config, run.accelerator, run.model
    with accelerator.accumulate(model):
        loss = diffusion_loss(model, run.noise_scheduler, batch, run.noise_generator, run.label_dropout)
        mean_loss = accelerator.gather(loss.detach()[None]).mean()
        if not torch.isfinite(mean_loss):
            raise NonFiniteLossError(
                f"Training loss became {mean_loss.item()} at step {run.global_step + 1} (epoch {epoch}); "
                "stopped before updating the weights, no checkpoint written. Lower `learning_rate`, "
                "keep `max_grad_norm` set, or use `mixed_precision: no`; resume from the last checkpoint."
            )
        run.window_losses.append(mean_loss)
        accelerator.backward(loss)
        if accelerator.sync_gradients and config.max_grad_norm is not None:
            grad_norm = accelerator.clip_grad_norm_(model.parameters(), config.max_grad_norm)
            # fp16's GradScaler skips inf-gradient steps by design
            if config.mixed_precision != "fp16" and not torch.isfinite(grad_norm):
                raise NonFiniteLossError(
                    f"Gradient norm became {float(grad_norm)} at step {run.global_step + 1} (epoch {epoch}); "
                    "stopped before updating the weights, no checkpoint written. Lower `learning_rate`."
                )
        run.optimizer.step()
        run.lr_scheduler.step()
        run.optimizer.zero_grad(set_to_none=True)


def _log_step(run: _Run, progress_bar) -> None:
    """After an optimizer step: EMA update, step count, loss history, progress bar and trackers."""
    if run.ema_model is not None:
        run.ema_model.step(run.model.parameters())
    run.global_step += 1
    step_loss = torch.stack(run.window_losses).mean().item()
    run.window_losses.clear()
    run.loss_history.append(step_loss)
    logs = {"loss": step_loss, "lr": run.lr_scheduler.get_last_lr()[0]}
    if run.ema_model is not None:
        logs["ema_decay"] = run.ema_model.cur_decay_value
    progress_bar.update(1)
    progress_bar.set_postfix(loss=f"{step_loss:.4f}", lr=f"{logs['lr']:.2e}")
    run.accelerator.log(logs, step=run.global_step)


def _checkpoint_and_validate(run: _Run) -> None:
    """Every `checkpointing_steps`: an atomic checkpoint (never of non-finite weights); every `validation_steps`:
    [`_run_validation`] on the main process."""
    config, accelerator, step = run.config, run.accelerator, run.global_step
    if config.checkpointing_steps and step % config.checkpointing_steps == 0:
        if not _params_finite(accelerator.unwrap_model(run.model)):
            raise NonFiniteLossError(f"Weights became non-finite at step {step}; checkpoint not written.")
        path = save_checkpoint(accelerator, config.output_dir, step, _trainer_state(run), run.noise_generator)
        if accelerator.is_main_process:
            prune_checkpoints(config.output_dir, config.checkpoints_total_limit)
            logger.info(f"Saved state to {path}")
    if config.validation_steps and step % config.validation_steps == 0:
        if accelerator.is_main_process:
            _run_validation(run, step)
        accelerator.wait_for_everyone()


def _out_of_time(run: _Run) -> bool:
    """Whether `max_train_minutes` is spent (the main process's clock decides for every rank)."""
    if run.budget is None:
        return False
    run.budget.update(_main_process_value(run, run.budget.elapsed_fraction()))
    return run.budget.exhausted


def _save_and_finish(run: _Run, train_seconds: float) -> tuple:
    """Save the pipeline (EMA weights), then evaluate, write the card and push (main process); the pipeline is
    saved first, so a failure afterwards (e.g. the Hub is down) never costs the trained weights."""
    accelerator, config = run.accelerator, run.config
    accelerator.wait_for_everyone()
    pipeline = evaluation = commit_url = None
    if accelerator.is_main_process:
        unwrapped = accelerator.unwrap_model(run.model)
        if run.ema_model is not None:
            run.ema_model.copy_to(unwrapped.parameters())
        if run.stop_reason == "early_stopping" and run.passed_state is not None:
            unwrapped.load_state_dict(run.passed_state[1])
        unwrapped.eval()
        pipeline = run.modality.build_pipeline(unwrapped, run.noise_scheduler, run.preprocessor)
        if config.lora_rank:
            save_finetuned(pipeline, config)
        else:
            _save_pipeline(pipeline, config.output_dir)
        summary = RunSummary(
            global_step=run.global_step,
            final_loss=run.loss_history[-1] if run.loss_history else None,
            num_processes=accelerator.num_processes,
            train_seconds=train_seconds,
            stop_reason=run.stop_reason,
            early_stopping_history=list(run.early_stopping_history),
            restored_step=_restored_step(run),
        )
        finished = finish_run(pipeline, run.modality, config, summary)
        evaluation, commit_url = finished["report"], finished["commit_url"]
    accelerator.wait_for_everyone()
    return pipeline, evaluation, commit_url


def _log_start(run: _Run) -> None:
    config = run.config
    total_batch = config.train_batch_size * run.accelerator.num_processes * config.gradient_accumulation_steps
    logger.info(
        f"***** Running training ({config.modality}) *****\n"
        f"  examples = {'streamed' if config.streaming else run.num_examples}\n"
        f"  total batch size = {total_batch}\n  optimization steps = {run.max_train_steps} (from {run.global_step})"
    )


def _run_loop(run: _Run, progress_bar) -> None:
    """The training loop: micro-steps until `max_train_steps`, an early stop or `max_train_minutes`."""
    config = run.config
    for epoch, batches in _epoch_batches(run):
        for batch in batches:
            run.stream_position["batches"] += 1
            _train_micro_step(run, batch, epoch)
            if not run.accelerator.sync_gradients:
                continue
            _log_step(run, progress_bar)
            _checkpoint_and_validate(run)
            if run.global_step >= run.max_train_steps:
                return
            if config.validation_steps and run.global_step % config.validation_steps == 0 and _stopped_early(run):
                return
            if _out_of_time(run):
                run.stop_reason = "max_train_minutes"
                return


def train(config: TrainingConfig) -> TrainResult:
    """
    Train a diffusion model as `config` says, and save its pipeline (and a model card) to `config.output_dir`.

    Works for every registered modality ([`Modality`]), single process or under `accelerate launch`. A run stops at
    `max_train_steps` (or `num_epochs`) or after `max_train_minutes`, whichever comes first, and resumes from
    `resume_from_checkpoint` (`"latest"` or a folder) exactly where the checkpoint left off: same step, weights,
    optimizer, LR schedule, EMA, data order and noise. Raises [`NonFiniteLossError`] on a NaN/inf loss. With a
    modality's refit on all rows (the tabular `refit_on_all_rows`), a first pass chooses the number of updates on
    a holdout and a second one trains on every row for that many (see [`_train_and_refit`]).

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
    if not isinstance(config, TrainingConfig):
        raise TypeError(f"`config` must be a TrainingConfig, got {type(config).__name__}.")
    modality = get_modality(config.modality)
    if not modality.refit_on_all_rows(config):
        return _train_pass(config)
    return _train_and_refit(config, modality)


def _train_and_refit(config: TrainingConfig, modality) -> TrainResult:
    """
    Early stopping's usual refit: a first pass on the rows left after the `validation_split` holdout, in
    `output_dir/holdout_pass` (no evaluation, card or push), whose held-out checks choose the number of updates (the
    last passing check's step, or every update when none failed); then a second pass of the same trainer from scratch
    on every row for that many updates, saved, evaluated and pushed as any run. The first pass's folder is removed
    and its checks are kept in `holdout_pass.json` and `TrainResult.holdout_pass`.
    """
    first_dir = os.path.join(config.output_dir, "holdout_pass")
    first = _train_pass(
        config.replace(
            output_dir=first_dir, refit_on_all_rows=False, eval_samples=None, push_to_hub=False, explanation_card=False
        )
    )
    steps = first.restored_step if first.stop_reason == "early_stopping" else first.global_step
    record = {"chosen_step": steps, "stop_reason": first.stop_reason, "checks": first.early_stopping_history}
    if first.pipeline is not None:
        atomic_write(os.path.join(config.output_dir, "holdout_pass.json"), json.dumps(record, indent=2))
    if not steps:  # the first check already failed: there is no passing step to refit for
        logger.warning(f"No held-out check passed; not refitting. The first pass's pipeline is in {first_dir}.")
        return first
    logger.info(f"Refitting on every row for {steps} updates (chosen on the holdout; checks {record['checks']}).")
    shutil.rmtree(first_dir, ignore_errors=True)
    first.pipeline = None
    result = _train_pass(modality.refit_config(config, steps))
    result.holdout_pass = first
    return result


def _train_pass(config: TrainingConfig, finer_checks: bool = True) -> TrainResult:
    """One run of the loop of [`train`]: setup, steps, save, evaluation, card, push; or, when the guard would keep
    its first check's weights, the same run again with finer checks (see [`_finer_check_steps`])."""
    # 1. accelerator, seed, data (every input check happens before the first step)
    run = _start_run(config)
    resume_path = _resume_path(config)
    _build_dataloaders(run)
    # 2. model, noise schedule, EMA; 3. optimisation; 4. resume
    _build_model(run)
    _build_optimization(run)
    _resume(run, resume_path)
    accelerator = run.accelerator
    _log_start(run)
    # 5. the loop
    progress_bar = tqdm(
        total=run.max_train_steps,
        initial=run.global_step,
        desc="Steps",
        disable=not accelerator.is_local_main_process,
    )
    start = time.perf_counter()
    if run.budget is not None:
        run.budget.start()
    run.model.train()
    finer = None
    try:
        _run_loop(run, progress_bar)
        train_seconds = time.perf_counter() - start
        progress_bar.close()
        finer = _finer_check_steps(run) if finer_checks else None
        if finer is None:  # 6. save the pipeline (EMA weights), the model card, push
            pipeline, evaluation, commit_url = _save_and_finish(run, train_seconds)
    finally:
        progress_bar.close()
        accelerator.end_training()
    if finer is not None:
        return _train_pass(config.replace(validation_steps=finer, resume_from_checkpoint=None), finer_checks=False)
    return TrainResult(
        pipeline=pipeline,
        output_dir=config.output_dir,
        global_step=run.global_step,
        initial_global_step=run.initial_global_step,
        loss_history=run.loss_history,
        validation_loss_history=run.validation_losses,
        stop_reason=run.stop_reason,
        train_seconds=train_seconds,
        evaluation=evaluation,
        commit_url=commit_url,
        early_stopping_history=run.early_stopping_history,
        restored_step=_restored_step(run),
    )
