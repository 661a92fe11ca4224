"""Budgets that act: per-task-class caps injected as each provider's own knobs, live cut-off of runaway
streams, and tenant spend windows published by `thinkmeter serve`.

`BudgetExceeded` lives here, apart from the policy and its parser, so `import thinkmeter` stays light.
"""

from __future__ import annotations


class BudgetExceeded(RuntimeError):
    """A call stopped by the budget policy: the one exception thinkmeter raises into an application, and
    only where the policy says `mode: enforce`.

    `line` is the policy entry that acted (e.g. "task_classes.lookup.max_reasoning_tokens"), `location`
    where it is written ("budgets.yaml:3"), `cap` its value and `reached` the figure the call reached, in
    `unit`; `source` says how that figure was counted (reported, estimated or measured). `cut` is True for
    a stream closed mid-way, False for a call refused before anything was sent.
    """

    def __init__(
        self,
        *,
        line: str,
        location: str,
        cap: float,
        reached: float,
        unit: str,
        source: str,
        cut: bool,
        task_class: str | None = None,
        tenant: str | None = None,
    ) -> None:
        self.line = line
        self.location = location
        self.cap = cap
        self.reached = reached
        self.unit = unit
        self.source = source
        self.cut = cut
        self.task_class = task_class
        self.tenant = tenant
        action = "stream closed" if cut else "call refused before sending"
        super().__init__(
            f"thinkmeter budget {line} = {_figure(cap)} ({location}) reached: {_figure(reached)} {unit} ({source}); "
            f"{action}. Raise the cap in the policy, or set `mode: observe` to record instead of stopping."
        )


def _figure(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)
