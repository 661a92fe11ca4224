"""A loopback simulator of reasoning-model APIs with a known ground truth for every reply.

Example:

    with start_simulator(time_scale=0.01) as sim:
        client = OpenAI(base_url=sim.base_url, api_key="x", max_retries=0)
        tags, scenario = TrafficMix(seed=1).draw()
        client.chat.completions.create(model=scenario.model, messages=[...], extra_headers=scenario.headers())
        sim.replies[-1].scenario  # what the server sent, to compare with what was recorded
"""

from .routes import Ask, BadRequest, Emit, Plan, Reply, Request, Route, SimOptions
from .scenario import SCENARIO_HEADER, Scenario
from .server import ROUTES, Simulator, start_simulator
from .traffic import MODELS, TASK_CLASSES, UNPRICED_MODEL, TrafficMix, derived_scenario

__all__ = [
    "MODELS",
    "ROUTES",
    "SCENARIO_HEADER",
    "TASK_CLASSES",
    "UNPRICED_MODEL",
    "Ask",
    "BadRequest",
    "Emit",
    "Plan",
    "Reply",
    "Request",
    "Route",
    "Scenario",
    "SimOptions",
    "Simulator",
    "TrafficMix",
    "derived_scenario",
    "start_simulator",
]
