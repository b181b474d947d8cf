"""Early stopping on a modality's held-out check (the tabular DCR-ratio guard): record each check and keep the
weights of the last one that passed, stop every rank when one fails, and train again with finer checks when the
guard would keep its very first check's weights or no weights passed."""

from __future__ import annotations

import logging

import torch

from .run import Run, main_process_value

__all__ = [
    "FINER_CHECKS",
    "finer_check_steps",
    "record_check",
    "restored_step",
    "stopped_early",
    "warn_finer_kept_first",
]

logger = logging.getLogger(__name__)

# when the guard would keep its first check's weights, the run is trained again with checks this many times as often
FINER_CHECKS = 5


def record_check(run: Run, step: int, model: torch.nn.Module, check: tuple[str, float, bool]) -> None:
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


def restored_step(run: Run) -> int | None:
    """The step whose weights were saved after a failed early-stopping check (`None`: no check failed or passed)."""
    return run.passed_state[0] if run.stop_reason == "early_stopping" and run.passed_state else None


def finer_check_steps(run: Run) -> int | None:
    """
    The check interval to train again with, or `None`. When the first early-stopping check is the one whose weights
    would be kept (it passed, the second failed), the model went from not yet learnt to copying within one interval
    and the guard would keep the least-trained weights it saw (iris conditioned at seed 0: Trend 0.789, DCR ratio
    1.855; vega's 63-row la-riots). When the first check fails, no weights passed and the run would save the ones
    that failed (plotly's 100-row experiment table: update 250 of 4,000, lower bound 0.844). Either way the run is
    trained again from the start with checks `FINER_CHECKS` times as often, which find the last passing weights
    inside that interval; the same seed gives the same updates, so the new run's checks up to the old first one
    read the same. Once per run, and not for a resumed run (its first check here is not the run's first); the main
    process decides.
    """
    interval = run.config.validation_steps
    history = run.early_stopping_history
    stopped_fresh = run.stop_reason == "early_stopping" and run.initial_global_step == 0
    first_kept = len(history) == 2 and run.passed_state is not None and run.passed_state[0] == history[0][0]
    first_failed = len(history) == 1 and run.passed_state is None
    finer = interval // FINER_CHECKS if stopped_fresh and (first_kept or first_failed) and interval else 0
    if finer and first_kept:
        (first, _), (second, value) = history
        logger.warning(
            f"The early-stopping check at update {second} failed ({value:.4f}) right after the first one: the "
            f"weights of update {first} may not have learnt the data yet. Training again with a check every {finer} "
            "updates."
        )
    elif finer:
        [(first, value)] = history
        logger.warning(
            f"The first early-stopping check, at update {first}, failed ({value:.4f}): no weights passed. Training "
            f"again with a check every {finer} updates."
        )
    return int(main_process_value(run, finer)) or None


def warn_finer_kept_first(run: Run) -> None:
    """
    After the finer pass of [`finer_check_steps`]: when it too keeps its first check's weights, say that they may
    not have learnt the table; when no check passed at all, that the saved weights are those that failed.
    statsmodels' heart (55 training rows, 3 columns): the check at update 250 failed, the finer pass passed update
    50 (lower bound 2.167, rows far from every training row) and failed 100, and the run
    saved update 50's weights (Quality 0.721, detection AUC 0.900) with no word but the checks' line.
    """
    history, interval = run.early_stopping_history, run.config.validation_steps
    if run.stop_reason != "early_stopping" or not history:
        return
    first, value = history[0]
    if run.passed_state is None:
        logger.warning(
            f"Even with a check every {interval} updates, no check passed (update {first}: lower bound {value:.3f}): "
            "the saved weights are those that failed. Add rows, or lower early_stopping_confidence (0.5: the ratio "
            "itself)."
        )
        return
    if run.passed_state[0] != first:
        return
    logger.warning(
        f"Even with a check every {interval} updates, the guard kept its first check's weights (update {first}, lower "
        f"bound {value:.3f}): the model went from not learnt to copying within {interval} updates, so its rows may "
        "not have learnt the table (read the end-of-run Quality and detection AUC). A table this small leaves the "
        "guard no weights between; add rows, or lower early_stopping_confidence (0.5: the ratio itself)."
    )


def stopped_early(run: Run) -> bool:
    """After a validation step: whether the main process's early-stopping check failed (it decides for every rank)."""
    stopped = bool(main_process_value(run, float(run.stop_reason == "early_stopping")))
    if stopped:
        run.stop_reason = "early_stopping"
    return stopped
