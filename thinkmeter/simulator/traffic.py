"""A realistic, seeded mix of reasoning-model traffic: who calls, for what, and what the model does.

Task classes run from easy (lookup) to hard (agentic planning); reasoning lengths are heavy-tailed per
class (lognormal, Pareto for agentic work), and about one call in a hundred runs away, thinking 10-50x
its class's 95th percentile until the model's output limit stops it.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .scenario import Scenario

UNPRICED_MODEL = "acme-reasoner-1"  # deliberately absent from every price table

_Z95 = 1.6448536269514722  # standard normal 95th percentile
RUNAWAY_PROBABILITY = 0.01
_ERROR_PROBABILITY = 0.008
_DISCONNECT_PROBABILITY = 0.005
_HIDDEN_REASONING_PROBABILITY = 0.2
# OpenAI-style prompt caching: prefixes of at least 1024 tokens, cached in 128-token steps.
_CACHE_MIN_TOKENS = 1024
_CACHE_STEP_TOKENS = 128


@dataclass(frozen=True)
class LogNormal:
    median: float
    sigma: float

    def draw(self, rng: random.Random) -> float:
        return rng.lognormvariate(math.log(self.median), self.sigma)

    @property
    def p95(self) -> float:
        return self.median * math.exp(_Z95 * self.sigma)


@dataclass(frozen=True)
class Pareto:
    scale: float  # the minimum
    alpha: float  # tail index: smaller is heavier

    def draw(self, rng: random.Random) -> float:
        return self.scale * rng.paretovariate(self.alpha)

    @property
    def p95(self) -> float:
        return self.scale * math.pow(0.05, -1 / self.alpha)


@dataclass(frozen=True)
class ModelProfile:
    name: str
    reasoning_tokens_per_s: float
    visible_tokens_per_s: float
    prefill_tokens_per_s: float
    queue_mean_s: float
    max_output_tokens: int
    thinks_longer: float  # multiplier on every class's reasoning length


@dataclass(frozen=True)
class TaskClass:
    name: str
    weight: float
    reasoning: LogNormal | Pareto
    visible: LogNormal
    input: LogNormal
    cache_hit_probability: float
    features: tuple[str, ...]
    models: dict[str, float]  # model name -> weight


MODELS = {
    profile.name: profile
    for profile in (
        ModelProfile("o4-mini", 170.0, 150.0, 20_000.0, 0.08, 100_000, 1.0),
        ModelProfile("gpt-5", 90.0, 70.0, 8_000.0, 0.25, 128_000, 1.3),
        ModelProfile("gpt-5-mini", 180.0, 140.0, 15_000.0, 0.10, 128_000, 1.0),
        ModelProfile(UNPRICED_MODEL, 60.0, 50.0, 5_000.0, 0.30, 64_000, 1.5),
    )
}

TASK_CLASSES = (
    TaskClass(
        "lookup", weight=0.35, reasoning=LogNormal(120, 0.8), visible=LogNormal(30, 0.6), input=LogNormal(400, 0.7),
        cache_hit_probability=0.3, features=("support-bot", "search"),
        models={"gpt-5-mini": 5, "o4-mini": 4, "gpt-5": 1, UNPRICED_MODEL: 0.5},
    ),
    TaskClass(
        "summarize", weight=0.25, reasoning=LogNormal(350, 0.7), visible=LogNormal(120, 0.5),
        input=LogNormal(4_000, 0.8), cache_hit_probability=0.6, features=("doc-summary", "support-bot"),
        models={"gpt-5-mini": 5, "o4-mini": 3, "gpt-5": 2, UNPRICED_MODEL: 0.5},
    ),
    TaskClass(
        "code", weight=0.18, reasoning=LogNormal(1_500, 1.0), visible=LogNormal(250, 0.7),
        input=LogNormal(2_500, 0.8), cache_hit_probability=0.5, features=("code-review", "ide-assist"),
        models={"gpt-5": 5, "o4-mini": 3, "gpt-5-mini": 2, UNPRICED_MODEL: 0.5},
    ),
    TaskClass(
        "math", weight=0.12, reasoning=LogNormal(3_500, 1.1), visible=LogNormal(80, 0.6), input=LogNormal(250, 0.6),
        cache_hit_probability=0.1, features=("analytics", "tutor"),
        models={"o4-mini": 5, "gpt-5": 4, "gpt-5-mini": 1, UNPRICED_MODEL: 0.5},
    ),
    TaskClass(
        "agentic-plan", weight=0.10, reasoning=Pareto(1_500, 1.2), visible=LogNormal(150, 0.6),
        input=LogNormal(9_000, 0.6), cache_hit_probability=0.8, features=("planner", "ide-assist"),
        models={"gpt-5": 6, "o4-mini": 2, "gpt-5-mini": 1, UNPRICED_MODEL: 0.5},
    ),
)  # fmt: skip

# tenant -> (share of traffic, number of users); users within a tenant follow a Zipf-like law.
TENANTS = {"acme": (0.45, 12), "globex": (0.25, 8), "initech": (0.15, 6), "umbrella": (0.10, 4), "hooli": (0.05, 3)}
_ERROR_STATUSES = ((429, 0.6), (500, 0.25), (503, 0.15))


class TrafficMix:
    """`TrafficMix(seed).draw()` -> (tags, scenario); the same seed yields the same sequence."""

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(seed)

    def draw(self) -> tuple[dict[str, str], Scenario]:
        rng = self._rng
        task = _pick(rng, [(task, task.weight) for task in TASK_CLASSES])
        tenant = _pick(rng, [(name, share) for name, (share, _) in TENANTS.items()])
        users = TENANTS[tenant][1]
        user = _pick(rng, [(f"{tenant}-u{index:02d}", 1 / (index + 1)) for index in range(users)])
        tags = {"tenant": tenant, "user": user, "feature": rng.choice(task.features), "task_class": task.name}
        model = MODELS[_pick(rng, task.models.items())]
        runaway = rng.random() < RUNAWAY_PROBABILITY
        scenario = _scenario(rng, task, model, runaway=runaway)
        failure = rng.random()
        if failure < _ERROR_PROBABILITY:
            status = _pick(rng, _ERROR_STATUSES)
            scenario = scenario.model_copy(update={"error_status": status})
        elif failure < _ERROR_PROBABILITY + _DISCONNECT_PROBABILITY:
            cut = rng.randint(0, max(0, scenario.visible_tokens - 1))
            scenario = scenario.model_copy(update={"disconnect_after_visible": cut})
        return tags, scenario


def derived_scenario(model: str | None, prompt: Any) -> Scenario:
    """The scenario for a request that names none: fixed by the model and the prompt, never failing
    or running away, with the prompt's word count as its input tokens."""
    text = json.dumps([model, prompt], sort_keys=True, default=str)
    rng = random.Random(int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big"))
    task = _pick(rng, [(task, task.weight) for task in TASK_CLASSES if not isinstance(task.reasoning, Pareto)])
    profile = MODELS.get(model or "", MODELS["o4-mini"])
    scenario = _scenario(rng, task, profile, runaway=False, input_tokens=max(1, _word_count(prompt)))
    return scenario.model_copy(update={"model": model})


def _scenario(
    rng: random.Random, task: TaskClass, model: ModelProfile, *, runaway: bool, input_tokens: int | None = None
) -> Scenario:
    if input_tokens is None:
        input_tokens = max(1, round(task.input.draw(rng)))
    cached = cache_write = 0
    if input_tokens >= _CACHE_MIN_TOKENS:
        steps = int(rng.uniform(0.5, 0.95) * (input_tokens - _CACHE_MIN_TOKENS) / _CACHE_STEP_TOKENS)
        prefix = _CACHE_MIN_TOKENS + _CACHE_STEP_TOKENS * steps
        if rng.random() < task.cache_hit_probability:
            cached = prefix
        else:
            cache_write = prefix
    reasoning = task.reasoning.draw(rng) * model.thinks_longer
    if runaway:
        reasoning = task.reasoning.p95 * model.thinks_longer * rng.uniform(10, 50)
    reasoning_tokens = max(1, round(reasoning))
    visible_tokens = max(1, round(task.visible.draw(rng)))
    jitter = rng.lognormvariate(0, 0.15)
    uncached = input_tokens - cached
    prefill_s = rng.expovariate(1 / model.queue_mean_s) + (uncached + cached / 10) / model.prefill_tokens_per_s
    scenario = Scenario(
        model=model.name,
        input_tokens=input_tokens,
        cached_input_tokens=cached,
        cache_write_tokens=cache_write,
        reasoning_tokens=reasoning_tokens,
        visible_tokens=visible_tokens,
        reasoning_text="hidden" if rng.random() < _HIDDEN_REASONING_PROBABILITY else "summary",
        prefill_s=prefill_s,
        thinking_s=reasoning_tokens / (model.reasoning_tokens_per_s * jitter),
        visible_tokens_per_s=model.visible_tokens_per_s * jitter,
    )
    return scenario.capped(model.max_output_tokens)


def _pick(rng: random.Random, weighted: Iterable[tuple[Any, float]]) -> Any:
    choices, weights = zip(*weighted, strict=True)
    return rng.choices(choices, weights=weights)[0]


def _word_count(value: Any) -> int:
    if isinstance(value, str):
        return len(value.split())
    if isinstance(value, dict):
        return sum(_word_count(item) for item in value.values())
    if isinstance(value, (list, tuple)):
        return sum(_word_count(item) for item in value)
    return 0
