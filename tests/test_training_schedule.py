"""The LR schedule follows `max_train_minutes` when the clock ends a run before `max_train_steps`."""

import math

import pytest
import torch
from diffusers.optimization import get_scheduler

from diffusers_xai.training import schedule
from diffusers_xai.training.schedule import TimeBudget, get_budgeted_scheduler


def optimizer():
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)


def lr_after(scheduler, steps):
    for _ in range(steps):
        scheduler.optimizer.step()
        scheduler.step()
    return scheduler.get_last_lr()[0]


class FakeClock:
    """`schedule.time.monotonic` under the test's control; `advance(budget, seconds)` also updates the budget."""

    def __init__(self, monkeypatch, now: float):
        self.now = now
        monkeypatch.setattr(schedule.time, "monotonic", lambda: self.now)

    def advance(self, budget, seconds: float):
        self.now += seconds
        budget.update(budget.elapsed_fraction())


def test_without_a_budget_it_is_diffusers_schedule():
    ours = get_budgeted_scheduler("cosine", optimizer(), num_warmup_steps=10, num_training_steps=100)
    stock = get_scheduler("cosine", optimizer=optimizer(), num_warmup_steps=10, num_training_steps=100)
    for _ in range(100):
        assert lr_after(ours, 1) == lr_after(stock, 1)


def test_cosine_reaches_the_fraction_of_the_budget_not_the_step(monkeypatch):
    clock = FakeClock(monkeypatch, 1000.0)
    budget = TimeBudget(minutes=2)
    scheduler = get_budgeted_scheduler("cosine", optimizer(), 0, num_training_steps=1000, budget=budget)
    budget.start()
    clock.advance(budget, 60)  # half the budget, after only 10 steps
    assert budget.fraction == 0.5 and not budget.exhausted
    # step 10 of 1000 reads the factor of step 500: cos(pi/2) midway, i.e. 0.5 of the peak
    assert lr_after(scheduler, 10) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5)))
    clock.advance(budget, 90)  # past the budget
    assert budget.fraction == 1.0 and budget.exhausted
    assert lr_after(scheduler, 1) == pytest.approx(0.0, abs=1e-12)


def test_steps_win_when_they_are_ahead_of_the_clock(monkeypatch):
    clock = FakeClock(monkeypatch, 0.0)
    budget = TimeBudget(minutes=60)
    scheduler = get_budgeted_scheduler("linear", optimizer(), 0, num_training_steps=100, budget=budget)
    budget.start()
    clock.advance(budget, 36)  # 1% of the budget
    assert lr_after(scheduler, 50) == pytest.approx(0.5)  # step 50 of 100, not step 1


def test_budget_fraction_never_goes_back_and_must_be_positive():
    budget = TimeBudget(minutes=1)
    budget.update(0.4)
    budget.update(0.1)
    assert budget.fraction == 0.4
    with pytest.raises(ValueError, match="A time budget must be > 0 minutes, got 0"):
        TimeBudget(minutes=0)
