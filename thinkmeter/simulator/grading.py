"""Graded tasks: the chance a task is solved depends on the thinking budget it was given, along an inverted
U per task class (more thinking helps, then over-thinking hurts), mild on `lookup` and steep on `math`.

Outcomes are stratified, so a bucket's accuracy is the curve's: of `count` tasks at a budget, exactly
round(chance x count) are solved (in a seeded random order). That makes the best budget the data shows
the one the curve was built with, which the demo checks.

Workloads:
- `curve_tasks`: one call per task, at each budget of a grid;
- `best_of_n_tasks`: N samples per task at one budget, solved when any sample is (a perfect picker);
- `verified_tasks`: a generator call, then a verifier call whose verdict is the outcome.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from .scenario import Scenario

BUDGETS = (1024, 2048, 4096, 8192, 16384)  # the anthropic SDK refuses non-streamed calls above ~21k max_tokens
THINKING_TOKENS_PER_S = 150.0  # the simulated model's reasoning speed: thinking time grows with the budget
_BUDGET_USE = (0.55, 0.95)  # share of its budget a task's reasoning uses


@dataclass(frozen=True)
class AccuracyCurve:
    """Chance of a correct answer at a thinking budget: `floor + (peak - floor) * exp(-d^2 / 2 width^2)`,
    d being the distance from `best_budget` in doublings."""

    best_budget: int
    peak: float
    floor: float
    width: float  # doublings; smaller is steeper

    def chance(self, budget: int) -> float:
        doublings = math.log2(budget / self.best_budget)
        return self.floor + (self.peak - self.floor) * math.exp(-(doublings**2) / (2 * self.width**2))


CURVES = {
    "lookup": AccuracyCurve(best_budget=2048, peak=0.90, floor=0.55, width=1.5),
    "math": AccuracyCurve(best_budget=8192, peak=0.85, floor=0.05, width=0.9),
    "code": AccuracyCurve(best_budget=4096, peak=0.60, floor=0.15, width=1.2),
    "summarize": AccuracyCurve(best_budget=1024, peak=0.80, floor=0.50, width=2.0),
}


@dataclass(frozen=True)
class GradedTask:
    task_id: str
    task_class: str
    budget: int
    samples: tuple[Scenario, ...]  # one scenario per call of the task
    solved: bool


def solved_count(chance: float, count: int) -> int:
    return round(chance * count)


def _stratified(rng: random.Random, chance: float, count: int) -> list[bool]:
    solved = solved_count(chance, count)
    outcomes = [index < solved for index in range(count)]
    rng.shuffle(outcomes)
    return outcomes


def thinking_scenario(rng: random.Random, budget: int, model: str, visible_tokens: int = 40) -> Scenario:
    """A reply that spends most of its thinking budget, at THINKING_TOKENS_PER_S."""
    reasoning = max(1, round(budget * rng.uniform(*_BUDGET_USE)))
    return Scenario(
        model=model,
        input_tokens=max(1, round(rng.lognormvariate(math.log(300), 0.5))),
        reasoning_tokens=reasoning,
        visible_tokens=visible_tokens,
        reasoning_text="summary",
        prefill_s=rng.uniform(0.1, 0.4),
        thinking_s=reasoning / THINKING_TOKENS_PER_S,
        visible_tokens_per_s=100.0,
    )


class GradedWorkload:
    """Seeded graded tasks; ids are `<prefix>-<class>-<n>`."""

    def __init__(self, seed: int, prefix: str) -> None:
        self._rng = random.Random(seed)
        self._prefix = prefix
        self._count = 0

    def _id(self, task_class: str) -> str:
        self._count += 1
        return f"{self._prefix}-{task_class}-{self._count}"

    def curve_tasks(self, task_class: str, model: str, per_budget: int, budgets: tuple[int, ...] = BUDGETS) -> list[GradedTask]:
        curve, tasks = CURVES[task_class], []
        for budget in budgets:
            for solved in _stratified(self._rng, curve.chance(budget), per_budget):
                sample = thinking_scenario(self._rng, budget, model)
                tasks.append(GradedTask(self._id(task_class), task_class, budget, (sample,), solved))
        return tasks

    def best_of_n_tasks(self, task_class: str, model: str, budget: int, widths: tuple[int, ...], per_width: int) -> list[GradedTask]:
        """Solved when any of N samples is: chance 1 - (1 - p)^N."""
        chance, tasks = CURVES[task_class].chance(budget), []
        for width in widths:
            for solved in _stratified(self._rng, 1 - (1 - chance) ** width, per_width):
                samples = tuple(thinking_scenario(self._rng, budget, model) for _ in range(width))
                tasks.append(GradedTask(self._id(task_class), task_class, budget, samples, solved))
        return tasks

    def verified_tasks(self, task_class: str, model: str, budget: int, verifier_model: str, count: int) -> list[GradedTask]:
        """A generator call at `budget` and a short verifier call; the verdict (the outcome) is right."""
        tasks = []
        for solved in _stratified(self._rng, CURVES[task_class].chance(budget), count):
            generator = thinking_scenario(self._rng, budget, model)
            verifier = thinking_scenario(self._rng, 1024, verifier_model, visible_tokens=5)
            tasks.append(GradedTask(self._id(task_class), task_class, budget, (generator, verifier), solved))
        return tasks


def best_budget(task_class: str, budgets: tuple[int, ...] = BUDGETS, per_budget: int | None = None) -> int:
    """The budget the curve was built to favour: the highest chance (as stratified over per_budget tasks,
    when given), ties to the smaller budget."""
    curve = CURVES[task_class]

    def accuracy(budget: int) -> float:
        chance = curve.chance(budget)
        return chance if per_budget is None else solved_count(chance, per_budget) / per_budget

    return max(budgets, key=lambda budget: (accuracy(budget), -budget))
