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
import os
import shutil
import time
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from ..modalities.registry import get_modality
from ..utils.io import atomic_write
from .checkpointing import prune_checkpoints, save_checkpoint
from .config import TrainingConfig
from .early_stopping import finer_check_steps, record_check, restored_step, stopped_early, warn_finer_kept_first
from .finetune import save_finetuned
from .finish import RunSummary, early_stopping_line, finish_run
from .objective import diffusion_loss, validation_loss
from .run import Run, main_process_value, prepare_run

__all__ = ["NonFiniteLossError", "TrainResult", "train"]

logger = logging.getLogger(__name__)


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


def _params_finite(model) -> bool:
    return all(torch.isfinite(p).all() for p in model.parameters())


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


def _trainer_state(run: Run) -> dict:
    """What a checkpoint stores besides accelerate's state: histories, config, stream position."""
    state = {
        "loss_history": run.loss_history,
        "validation_loss_history": run.validation_losses,
        "config": run.config.to_dict(),
    }
    if run.config.streaming:
        state["stream_position"] = dict(run.stream_position)
    return state


def _run_validation(run: Run, step: int) -> None:
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
            record_check(run, step, unwrapped, check)
    finally:
        unwrapped.train()
        if ema_model is not None:
            ema_model.restore(unwrapped.parameters())


def _epoch_batches(run: Run):
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


def _train_micro_step(run: Run, batch: dict, epoch: int) -> None:
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


def _log_step(run: Run, progress_bar) -> None:
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


def _checkpoint_and_validate(run: Run) -> None:
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


def _out_of_time(run: Run) -> bool:
    """Whether `max_train_minutes` is spent (the main process's clock decides for every rank)."""
    if run.budget is None:
        return False
    run.budget.update(main_process_value(run, run.budget.elapsed_fraction()))
    return run.budget.exhausted


def _save_and_finish(run: Run, train_seconds: float) -> tuple:
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
        run.modality.finalize_pipeline(pipeline, config)
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
            restored_step=restored_step(run),
        )
        finished = finish_run(pipeline, run.modality, config, summary)
        evaluation, commit_url = finished["report"], finished["commit_url"]
    accelerator.wait_for_everyone()
    return pipeline, evaluation, commit_url


def _log_start(run: Run) -> None:
    config = run.config
    total_batch = config.train_batch_size * run.accelerator.num_processes * config.gradient_accumulation_steps
    logger.info(
        f"***** Running training ({config.modality}) *****\n"
        f"  examples = {'streamed' if config.streaming else run.num_examples}\n"
        f"  total batch size = {total_batch}\n  optimization steps = {run.max_train_steps} (from {run.global_step})"
    )


def _run_loop(run: Run, progress_bar) -> None:
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
            if config.validation_steps and run.global_step % config.validation_steps == 0 and stopped_early(run):
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
    its first check's weights, the same run again with finer checks (see [`finer_check_steps`])."""
    # 1.-4. accelerator, seed, data, model, noise schedule, EMA, optimisation, resume (see `run.prepare_run`)
    run = prepare_run(config)
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
        finer = finer_check_steps(run) if finer_checks else None
        if not finer_checks and accelerator.is_main_process:
            warn_finer_kept_first(run)
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
        restored_step=restored_step(run),
    )
