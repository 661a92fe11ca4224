"""Shared by the provider tests: one simulator per test module, and checks against its ground truth.

    from tests.simulated import sim  # noqa: F401  (pytest fixture)
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from thinkmeter.pricing import PriceTable
from thinkmeter.schemas import semconv as sc
from thinkmeter.simulator import Scenario, Simulator, start_simulator

# A time point is measured from the SDK call, which comes before the server's clock starts, so it is
# never early; how late it may be covers a loaded 2-core CI machine. Scenarios keep their thinking
# phase longer than LATE_S (in wall seconds), so TTFT at the first visible token instead of the first
# reasoning token still fails.
EARLY_S = 0.005
LATE_S = 0.5


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    with start_simulator(time_scale=1.0) as simulator:
        yield simulator


def assert_at(measured: Any, truth_s: float) -> None:
    assert measured is not None, f"no time recorded, expected {truth_s:.3f} s"
    assert truth_s - EARLY_S <= measured <= truth_s + LATE_S, f"measured {measured:.3f} s, truth {truth_s:.3f} s"


def expected_cost(model: str, scenario: Scenario) -> tuple[float, float]:
    """(total, reasoning) USD of the scenario, worked out here from the rates, independently of pricing.cost."""
    price = PriceTable.load().lookup(None, model)
    assert price is not None, f"{model} is missing from prices.json"
    uncached = scenario.input_tokens - scenario.cached_input_tokens - scenario.cache_write_tokens
    total = (
        uncached * price.input
        + scenario.cached_input_tokens * price.cache_read
        + scenario.cache_write_tokens * price.cache_write
        + scenario.visible_tokens * price.output
        + scenario.reasoning_tokens * price.reasoning
    )
    return total / 1e6, scenario.reasoning_tokens * price.reasoning / 1e6


def assert_stream_timings(attrs: dict[str, Any], scenario: Scenario, *, reasoning_streamed: bool) -> None:
    """TTFT at the first reasoning token when reasoning text is streamed, else at the first visible one."""
    first_token = scenario.first_token_s if reasoning_streamed else scenario.first_visible_s
    assert_at(attrs.get(sc.TIME_TO_FIRST_TOKEN), first_token)
    assert_at(attrs.get(sc.TIME_TO_FIRST_VISIBLE_TOKEN), scenario.first_visible_s)
    assert attrs[sc.TIME_TO_FIRST_CHUNK] <= attrs[sc.TIME_TO_FIRST_TOKEN]
