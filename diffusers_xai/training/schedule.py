r"""
The learning-rate schedule of a run that may be cut short by `max_train_minutes`.

diffusers' `get_scheduler` schedules over `num_training_steps`; a run stopped by the clock long before that step never
decays (a 100-epoch cosine stopped after 8 minutes is still at its peak rate, which is what the EMA then averages).
With a time budget, the schedule's position is the further of the step count and the elapsed fraction of the budget:

$$s_\text{eff} = \max(s,\ \lfloor (\text{elapsed} / \text{budget}) \cdot \text{max\_train\_steps} \rfloor)$$

so the schedule reaches its end at whichever limit comes first. Without a budget it is diffusers' schedule exactly.
The elapsed time makes a budgeted run's LR depend on the machine's speed, as its step count already does.
"""

from __future__ import annotations

import time

__all__ = ["TimeBudget", "get_budgeted_scheduler"]


class TimeBudget:
    """
    Wall-clock budget of the training loop. `start()` when the first step begins; after each step the loop calls
    `update(elapsed_fraction())` (under `accelerate launch`, with the main process's value broadcast, so every rank
    reads the same learning rate); the schedule reads `fraction`, and the run stops once `exhausted`.
    """

    def __init__(self, minutes: float):
        if not minutes > 0:
            raise ValueError(f"A time budget must be > 0 minutes, got {minutes}.")
        self.seconds = 60.0 * minutes
        self.fraction = 0.0
        self._start: float | None = None

    def start(self) -> None:
        self._start = time.monotonic()

    def elapsed_fraction(self) -> float:
        """This process's clock: elapsed / budget since `start()` (0 before)."""
        if self._start is None:
            return 0.0
        return (time.monotonic() - self._start) / self.seconds

    def update(self, fraction: float) -> None:
        self.fraction = min(1.0, max(self.fraction, float(fraction)))

    @property
    def exhausted(self) -> bool:
        return self.fraction >= 1.0


def get_budgeted_scheduler(
    name: str, optimizer, num_warmup_steps: int, num_training_steps: int, budget: TimeBudget | None = None
):
    """
    diffusers' `get_scheduler(name, ...)`; with a `budget`, each LR factor is read at the effective step above (the
    warm-up stays in steps unless the budget runs out first). Returns the `LambdaLR`.
    """
    from diffusers.optimization import get_scheduler

    scheduler = get_scheduler(
        name, optimizer=optimizer, num_warmup_steps=num_warmup_steps, num_training_steps=num_training_steps
    )
    if budget is None:
        return scheduler

    def follow_budget(inner):
        def lr_lambda(step: int) -> float:
            return inner(max(step, int(budget.fraction * num_training_steps)))

        return lr_lambda

    scheduler.lr_lambdas = [follow_budget(inner) for inner in scheduler.lr_lambdas]
    return scheduler
