"""The budget policy file (YAML or JSON), validated at load with errors that name the file and line.

    task_classes:            # matched against thinkmeter.tags(task_class=...)
      lookup:  {max_reasoning_tokens: 1024, max_cost_usd: 0.02, max_thinking_s: 15}
      math:    {max_reasoning_tokens: 16000, max_cost_usd: 0.50}
    default:   {max_cost_usd: 2.00}
    tenants:                 # windows over what the store holds
      acme:    {daily_usd: 50, daily_reasoning_tokens: 20000000}
    mode: enforce            # or "observe"
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

# Room for the answer kept above the reasoning cap where one knob counts both (OpenAI
# max_completion_tokens, vLLM/SGLang max_tokens, Anthropic max_tokens) and the class names no
# max_output_tokens: the cap is on thinking, not on the answer.
ANSWER_ROOM_TOKENS = 4096
# Anthropic refuses a thinking budget under this many tokens.
ANTHROPIC_MIN_BUDGET = 1024

if TYPE_CHECKING:
    import yaml


class ClassBudget(BaseModel):
    """Caps for the calls of one task class (or the default). Every field is optional."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Hidden reasoning tokens of one call: injected as the provider's thinking knob, and a streamed
    # call whose visible reasoning passes it is cut off.
    max_reasoning_tokens: int | None = Field(None, gt=0)
    # Every generated token, reasoning included (OpenAI max_completion_tokens / max_output_tokens,
    # vLLM/SGLang max_tokens); default: max_reasoning_tokens + ANSWER_ROOM_TOKENS.
    max_output_tokens: int | None = Field(None, gt=0)
    # OpenAI reasoning_effort / reasoning.effort, Gemini 3 thinking_level.
    reasoning_effort: Literal["minimal", "low", "medium", "high"] | None = None
    # Running cost of one streamed call (priced tokens seen so far).
    max_cost_usd: float | None = Field(None, gt=0)
    # Seconds from the request to the first visible token: the cap for providers that hide reasoning.
    max_thinking_s: float | None = Field(None, gt=0)

    @property
    def output_cap(self) -> int | None:
        """The cap for knobs that count reasoning and answer together."""
        if self.max_output_tokens is not None:
            return self.max_output_tokens
        if self.max_reasoning_tokens is not None:
            return self.max_reasoning_tokens + ANSWER_ROOM_TOKENS
        return None

    @property
    def live(self) -> bool:
        """Whether a streamed call of this class is watched as it streams."""
        return self.max_reasoning_tokens is not None or self.max_cost_usd is not None or self.max_thinking_s is not None


class TenantBudget(BaseModel):
    """Limits over the current window (a UTC day unless the policy sets `tenant_window`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    daily_usd: float | None = Field(None, gt=0)
    daily_reasoning_tokens: int | None = Field(None, gt=0)


class Policy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    task_classes: dict[str, ClassBudget] = Field(default_factory=dict)
    # Calls whose task class has no entry (or that have none).
    default: ClassBudget | None = None
    tenants: dict[str, TenantBudget] = Field(default_factory=dict)
    mode: Literal["enforce", "observe"] = "enforce"
    # Length of the tenant windows, aligned to the UTC epoch ("1d": the UTC day), like 1h, 1d, 7d.
    tenant_window: str = "1d"

    @field_validator("tenant_window")
    @classmethod
    def _duration(cls, text: str) -> str:
        window_seconds(text)
        return text

    @property
    def tenant_window_s(self) -> int:
        return window_seconds(self.tenant_window)

    def class_budget(self, task_class: str | None) -> tuple[str, ClassBudget] | None:
        """(policy path prefix, caps) for a call of `task_class`, or None when nothing caps it."""
        if task_class is not None:
            caps = self.task_classes.get(task_class)
            if caps is not None:
                return f"task_classes.{task_class}", caps
        if self.default is not None:
            return "default", self.default
        return None


def window_seconds(text: str) -> int:
    """"1d" -> 86400, as the CLI's --window reads it."""
    from thinkmeter.cli._options import window

    try:
        return window(str(text))
    except argparse.ArgumentTypeError as exc:
        raise ValueError(str(exc)) from None


class PolicyError(ValueError):
    """The policy file cannot be used; the message names the file, line and field."""


@dataclass(frozen=True)
class LoadedPolicy:
    """A validated policy and where each of its entries is written, for messages."""

    policy: Policy
    path: Path
    lines: dict[tuple[str, ...], int]

    def location(self, dotted: str) -> str:
        """"budgets.yaml:3" for "task_classes.lookup.max_reasoning_tokens" (the nearest entry written)."""
        key = tuple(dotted.split("."))
        while key and key not in self.lines:
            key = key[:-1]
        return f"{self.path.name}:{self.lines[key]}" if key else self.path.name


def load_policy(path: str | Path) -> LoadedPolicy:
    """Read and validate a policy file (YAML, or JSON, which YAML reads too)."""
    import yaml  # here, not at the top: every instrumented application imports this module, few load a policy

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError(f"budget policy {path}: cannot read it ({exc.strerror or exc})") from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text) if node is not None else {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise PolicyError(f"budget policy {where}: not valid YAML or JSON ({problem})") from None
    lines = _entry_lines(node) if node is not None else {}
    if not isinstance(data, dict):
        raise PolicyError(f"budget policy {path}: expected a mapping with task_classes / default / tenants / mode")
    try:
        policy = Policy.model_validate(data)
    except ValidationError as exc:
        loaded = LoadedPolicy(Policy(), path, lines)
        problems = [
            f"  {loaded.location('.'.join(map(str, e['loc'])))}: {'.'.join(map(str, e['loc'])) or '(top level)'}: {_problem(e)}"
            for e in exc.errors()
        ]
        raise PolicyError(f"budget policy {path} is not valid:\n" + "\n".join(problems)) from None
    return LoadedPolicy(policy, path, lines)


def _problem(error: dict[str, Any]) -> str:
    if error["type"] == "extra_forbidden":
        return "unknown field"
    if error["type"] == "literal_error":
        return error["msg"].lower()
    return error["msg"]


def _entry_lines(node: yaml.Node, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], int]:
    """Line of every mapping key, by its path of keys."""
    from yaml import MappingNode

    lines: dict[tuple[str, ...], int] = {}
    if isinstance(node, MappingNode):
        for key, value in node.value:
            path = (*prefix, str(key.value))
            lines[path] = key.start_mark.line + 1
            lines.update(_entry_lines(value, path))
    return lines


def describe(loaded: LoadedPolicy) -> str:
    """The effective policy, as `thinkmeter budgets check` prints it: what each class injects and watches."""
    policy = loaded.policy
    out = [f"budget policy {loaded.path}: valid; mode {policy.mode}"]
    entries = [(f"task_classes.{name}", caps) for name, caps in policy.task_classes.items()]
    if policy.default is not None:
        entries.append(("default", policy.default))
    if not entries:
        out.append("  no task-class caps")
    for prefix, caps in entries:
        out.append(f"  {prefix} ({loaded.location(prefix)})")
        for knob in injected_knobs(caps):
            out.append(f"    inject  {knob}")
        for field in ("max_reasoning_tokens", "max_cost_usd", "max_thinking_s"):
            value = getattr(caps, field)
            if value is not None:
                out.append(f"    stream  cut past {field} = {value:g}")
    out.append(f"  tenant windows: {policy.tenant_window} (aligned to UTC)")
    for tenant, limits in policy.tenants.items():
        caps = ", ".join(f"{k} = {v}" for k, v in limits.model_dump(exclude_none=True).items()) or "no limits"
        out.append(f"    tenants.{tenant} ({loaded.location('tenants.' + tenant)}): {caps}")
    return "\n".join(out)


def injected_knobs(caps: ClassBudget) -> list[str]:
    """What a class puts into calls that do not set it, per provider."""
    knobs = []
    output = caps.output_cap
    if output is not None:
        knobs.append(f"OpenAI chat max_completion_tokens / Responses max_output_tokens / vLLM, SGLang max_tokens = {output}")
    if caps.reasoning_effort is not None:
        knobs.append(f"OpenAI reasoning_effort / Gemini 3 thinking_level = {caps.reasoning_effort}")
    if caps.max_reasoning_tokens is not None:
        budget = max(ANTHROPIC_MIN_BUDGET, caps.max_reasoning_tokens)
        knobs.append(f"Anthropic thinking = enabled, budget_tokens {budget} (max_tokens raised above it when needed)")
        knobs.append(f"Gemini 2.5 thinking_config.thinking_budget = {caps.max_reasoning_tokens}")
        if caps.reasoning_effort is None:
            knobs.append(f"Gemini 3 thinking_level = {gemini_level(caps.max_reasoning_tokens)}")
    return knobs


def gemini_level(max_reasoning_tokens: int) -> str:
    """Gemini 3 takes a level, not a budget: the level whose budget (Gemini's OpenAI-compatible mapping:
    low 1,024, high 24,576 tokens) covers the cap; levels Gemini 3 Pro takes only."""
    return "low" if max_reasoning_tokens <= 1024 else "high"
