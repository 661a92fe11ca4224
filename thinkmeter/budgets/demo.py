"""The demo's budget pass: the same kind of traffic once more, under a policy, and what it cut and saved.

The simulator plays each call's plan whatever the client asks, except where a provider's own knob caps
it (max tokens, a thinking budget), so "planned" is what each call would have spent without the policy
and "spent" what the store holds for it (a cut stream's tokens up to the cut, as thinkmeter counted them).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import thinkmeter
from thinkmeter.config import Settings
from thinkmeter.pricing import PriceTable
from thinkmeter.schemas.record import Usage
from thinkmeter.simulator import Scenario


def demo_policy(time_scale: float) -> str:
    """Caps per task class of the simulator's traffic. Thinking time is wall time: 40 simulated seconds."""
    return f"""# thinkmeter demo budget policy
task_classes:
  lookup:       {{max_reasoning_tokens: 1024, max_thinking_s: {40 * time_scale:g}}}
  summarize:    {{max_reasoning_tokens: 2048}}
  code:         {{max_reasoning_tokens: 8000, max_cost_usd: 0.20}}
  math:         {{max_reasoning_tokens: 16000, max_cost_usd: 0.50}}
  agentic-plan: {{max_reasoning_tokens: 16000, max_cost_usd: 0.50}}
mode: enforce
"""


@dataclass
class ClassFigures:
    calls: int = 0
    injected: int = 0
    cut: int = 0
    planned_reasoning: int = 0
    spent_reasoning: int = 0
    planned_usd: float = 0.0
    spent_usd: float = 0.0


@dataclass
class BudgetPass:
    policy_path: Path
    calls: int
    by_class: dict[str, ClassFigures] = field(default_factory=dict)
    raised: int = 0  # BudgetExceeded seen by the callers

    @property
    def total(self) -> ClassFigures:
        total = ClassFigures()
        for figures in self.by_class.values():
            for name in vars(total):
                setattr(total, name, getattr(total, name) + getattr(figures, name))
        return total


def run_budget_pass(settings: Settings, calls: int, concurrency: int, time_scale: float, seed: int) -> BudgetPass:
    from thinkmeter.demo import Fleet, _clients, _request, plan

    policy_path = settings.data_dir / "demo-budgets.yaml"
    policy_path.parent.mkdir(parents=True, exist_ok=True)
    policy_path.write_text(demo_policy(time_scale))
    planned = plan(calls, seed)
    fleet = Fleet(time_scale)
    thinkmeter.uninstrument()
    thinkmeter.instrument(
        exporter="clickhouse",
        clickhouse_url=settings.clickhouse_url,
        data_dir=settings.data_dir,
        providers=fleet.providers,
        budgets=policy_path,
    )
    urls = fleet.urls
    clients = _clients(urls)
    result = BudgetPass(policy_path, calls)

    def one(call: Any) -> bool:
        try:
            with thinkmeter.tags(**call.tags, session=f"budgets-{call.index}"):
                _request(urls, clients, call)
        except thinkmeter.BudgetExceeded:
            return True
        except Exception:  # the simulator plays rate limits, server errors and dropped connections
            pass
        return False

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        result.raised = sum(pool.map(one, planned))
    fleet.stop()
    thinkmeter.flush(timeout_s=60)
    _tally(settings, planned, result)
    return result


def _tally(settings: Settings, planned: list[Any], result: BudgetPass) -> None:
    from thinkmeter.store import store_session

    with store_session(settings) as client:
        rows = list(client.query(
            "SELECT session, budget_cut, notEmpty(budget_injected) AS injected, reasoning_tokens, cost_usd,"
            " budget_cut_cost_usd FROM llm_calls WHERE session IN {sessions:Array(String)}",
            parameters={"sessions": [f"budgets-{call.index}" for call in planned]},
        ).named_results())
    prices = PriceTable.load(settings.price_file)
    for row in rows:
        call = planned[int(row["session"].removeprefix("budgets-"))]
        scenario: Scenario = call.scenario
        figures = result.by_class.setdefault(call.tags.get("task_class", ""), ClassFigures())
        figures.calls += 1
        figures.injected += row["injected"]
        figures.cut += row["budget_cut"]
        figures.planned_reasoning += scenario.reasoning_tokens
        figures.spent_reasoning += row["reasoning_tokens"] or 0
        planned_cost = prices.cost(
            call.provider,
            scenario.model,
            Usage(
                input_tokens=scenario.input_tokens,
                cache_read_tokens=scenario.cached_input_tokens,
                cache_write_tokens=scenario.cache_write_tokens,
                output_tokens=scenario.output_tokens,
                reasoning_tokens=scenario.reasoning_tokens,
            ),
        )
        spent = row["cost_usd"] if row["cost_usd"] is not None else row["budget_cut_cost_usd"]
        if planned_cost is not None and spent is not None:  # calls to an unpriced model are left out of both
            figures.planned_usd += planned_cost.total_usd
            figures.spent_usd += spent


def format_budget_pass(result: BudgetPass) -> str:
    lines = [
        f"Budgets: {result.calls} more calls of the same traffic under {result.policy_path}",
        f"  {result.raised} calls raised thinkmeter.BudgetExceeded (streams closed past their class's cap)",
        "",
        f"  {'task class':<14}{'calls':>6}{'capped':>8}{'cut':>5}{'reasoning planned':>19}{'spent':>10}"
        f"{'USD planned':>13}{'spent':>10}{'saved':>10}",
    ]
    for name, f in sorted(result.by_class.items()) + [("total", result.total)]:
        lines.append(
            f"  {name or '(none)':<14}{f.calls:>6}{f.injected:>8}{f.cut:>5}{f.planned_reasoning:>19,}{f.spent_reasoning:>10,}"
            f"{f.planned_usd:>13.4f}{f.spent_usd:>10.4f}{f.planned_usd - f.spent_usd:>10.4f}"
        )
    lines.append(
        "  capped: calls that got the class's cap in the provider's own knob; planned: what the simulator would have"
        " generated without the policy; spent: what the store holds (a cut stream up to its cut)."
    )
    return "\n".join(lines)
