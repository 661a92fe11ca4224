"""Budgets at call time: what a call may spend, decided before it is sent, and watched while it streams.

`Budgets.admit` runs on every call when a policy is loaded: a tenant over its window is refused before
anything is sent; a capped task class gets the provider's own knobs injected where the caller set none
(each Surface's `inject`), and a streamed call gets a `StreamMeter`. The meter counts what the stream
shows (reasoning and answer text, usage reported mid-stream, time to the first visible token); the
stream proxy asks it after every chunk whether to cut. A provider that shows nothing while it thinks is
cut at `max_thinking_s` by a watchdog that shuts the connection's socket, which ends the blocked read.
"""

from __future__ import annotations

import heapq
import logging
import os
import socket
import threading
import time
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from thinkmeter.budgets import BudgetExceeded
from thinkmeter.budgets.policy import ClassBudget, LoadedPolicy
from thinkmeter.budgets.windows import TenantWindows
from thinkmeter.instrumentation._estimate import estimated_tokens
from thinkmeter.instrumentation._safety import log_once
from thinkmeter.instrumentation._tags import current_tag_attributes
from thinkmeter.pricing import Price, PriceTable
from thinkmeter.schemas import semconv as sc
from thinkmeter.schemas.record import CallRecord, Source

if TYPE_CHECKING:
    from thinkmeter.instrumentation._telemetry import Call

log = logging.getLogger("thinkmeter")


@dataclass(frozen=True, slots=True)
class Breach:
    line: str  # e.g. "task_classes.lookup.max_reasoning_tokens"
    cap: float
    reached: float
    unit: str
    source: str  # how `reached` was counted: reported, estimated, measured


class Budgets:
    """The loaded policy, the tenant windows and the prices, shared by every patched method."""

    def __init__(self, loaded: LoadedPolicy, windows: TenantWindows | None, prices: PriceTable) -> None:
        self.loaded = loaded
        self.policy = loaded.policy
        self.enforce = loaded.policy.mode == "enforce"
        self.windows = windows
        self.prices = prices

    def admit(self, surface: Any, call: Call, kwargs: dict[str, Any], injected: list[str] | None = None) -> BudgetExceeded | None:
        """Apply the policy to a call about to be sent; the exception to raise when it is refused.
        `injected`: knobs already put into the request (a stream manager built before the call starts)."""
        try:
            return self._admit(surface, call, kwargs, injected)
        except Exception:
            log_once("budgets.admit", "thinkmeter: the budget policy could not be applied to a call; it goes on unchecked")
            return None

    def _admit(self, surface: Any, call: Call, kwargs: dict[str, Any], injected: list[str] | None) -> BudgetExceeded | None:
        tags = call.tags  # the tags in force when the call started
        tenant = tags.get(sc.TENANT)
        task_class = tags.get(sc.TASK_CLASS)
        record = call.record
        if tenant is not None and self.windows is not None:
            breach = self._tenant_breach(tenant)
            if breach is not None:
                mark(record, breach, sc.BUDGET_REJECTED if self.enforce else sc.BUDGET_WOULD_REJECT)
                if self.enforce:
                    return self.exception(breach, cut=False, task_class=task_class, tenant=tenant)
        plan = self.policy.class_budget(task_class)
        if plan is None:
            return None
        prefix, caps = plan
        if injected is None and self.enforce:
            injected = self.inject(surface, record, kwargs, caps)
        if injected:
            record.attributes[sc.BUDGET_INJECTED] = tuple(injected)
        if record.stream and caps.live:
            call.meter = StreamMeter(self, call, prefix, caps, task_class, tenant)
        return None

    def inject(self, surface: Any, record: CallRecord, kwargs: dict[str, Any], caps: ClassBudget | None = None) -> list[str]:
        """Put the class's caps into `kwargs` where the caller set none; what was put, as "knob=value"."""
        if caps is None:
            plan = self.policy.class_budget(current_tag_attributes().get(sc.TASK_CLASS))
            if plan is None:
                return []
            caps = plan[1]
        inject = getattr(surface, "inject", None)
        return inject(record, kwargs, caps) if inject is not None else []

    def _tenant_breach(self, tenant: str) -> Breach | None:
        limits = self.policy.tenants.get(tenant)
        if limits is None:
            return None
        assert self.windows is not None
        figures = self.windows.figures(tenant)
        if figures is None:
            return None
        if limits.daily_usd is not None and figures.cost_usd >= limits.daily_usd:
            return Breach(f"tenants.{tenant}.daily_usd", limits.daily_usd, round(figures.cost_usd, 6), "USD in the window", "store")
        if limits.daily_reasoning_tokens is not None and figures.reasoning_tokens >= limits.daily_reasoning_tokens:
            return Breach(
                f"tenants.{tenant}.daily_reasoning_tokens", limits.daily_reasoning_tokens, figures.reasoning_tokens,
                "reasoning tokens in the window", "store",
            )
        return None

    def exception(self, breach: Breach, *, cut: bool, task_class: str | None, tenant: str | None) -> BudgetExceeded:
        return BudgetExceeded(
            line=breach.line,
            location=self.loaded.location(breach.line),
            cap=breach.cap,
            reached=breach.reached,
            unit=breach.unit,
            source=breach.source,
            cut=cut,
            task_class=task_class,
            tenant=tenant,
        )


def mark(record: CallRecord, breach: Breach, flag: str) -> None:
    attributes = record.attributes
    attributes[flag] = True
    attributes[sc.BUDGET_LINE] = breach.line
    attributes[sc.BUDGET_CAP] = breach.cap
    attributes[sc.BUDGET_REACHED] = breach.reached


class StreamMeter:
    """What a streamed call has used so far, against its class's caps.

    Reasoning reported mid-stream (Gemini's running usage) is taken as is; otherwise each streamed
    reasoning delta counts as at least one token and its text as 4 characters a token, whichever is more
    (estimated). The running cost prices what is known so far: input not reported until the end is left
    out, so a cut never comes early. Thinking time runs from the request to the first visible token.
    """

    __slots__ = (
        "budgets", "call", "prefix", "caps", "task_class", "tenant", "price", "reasoning_deltas", "reasoning_chars",
        "visible_deltas", "visible_chars", "input_tokens", "reported_reasoning", "reported_output", "breach",
        "cut_cost_usd", "cut", "__weakref__",
    )  # fmt: skip

    def __init__(self, budgets: Budgets, call: Call, prefix: str, caps: ClassBudget, task_class: str | None, tenant: str | None) -> None:
        self.budgets = budgets
        self.call = call
        self.prefix = prefix
        self.caps = caps
        self.task_class = task_class
        self.tenant = tenant
        self.price: Price | None = budgets.prices.lookup(call.record.provider, call.record.request_model) if caps.max_cost_usd is not None else None
        self.reasoning_deltas = 0
        self.reasoning_chars = 0
        self.visible_deltas = 0
        self.visible_chars = 0
        self.input_tokens: int | None = None
        self.reported_reasoning: int | None = None
        self.reported_output: int | None = None
        self.breach: Breach | None = None  # the first cap passed
        self.cut_cost_usd: float | None = None
        self.cut = False  # the stream was closed because of it

    # --- fed by the stream accumulators
    def reasoning(self, chars: int) -> None:
        self.reasoning_deltas += 1
        self.reasoning_chars += chars

    def visible(self, chars: int) -> None:
        self.visible_deltas += 1
        self.visible_chars += chars

    def reported(self, input_tokens: int | None = None, reasoning: int | None = None, output: int | None = None) -> None:
        if input_tokens is not None:
            self.input_tokens = input_tokens
        if reasoning is not None:
            self.reported_reasoning = reasoning
        if output is not None:
            self.reported_output = output

    # --- figures so far
    def reasoning_tokens(self) -> tuple[int, str]:
        if self.reported_reasoning is not None:
            return self.reported_reasoning, Source.REPORTED.value
        return max(self.reasoning_deltas, estimated_tokens(self.reasoning_chars)), Source.ESTIMATED.value

    def visible_tokens(self) -> int:
        if self.reported_output is not None and self.reported_reasoning is not None:
            return max(0, self.reported_output - self.reported_reasoning)
        return max(self.visible_deltas, estimated_tokens(self.visible_chars))

    def cost_usd(self) -> float | None:
        price = self.price
        if price is None:
            return None
        reasoning, _ = self.reasoning_tokens()
        micro = (self.input_tokens or 0) * price.input + reasoning * price.reasoning + self.visible_tokens() * price.output
        return micro / 1e6

    def thinking_s(self, now: float) -> float:
        call = self.call
        return (call.first_visible if call.first_visible is not None else now) - call.started

    # --- decisions
    def should_cut(self) -> bool:
        """After each chunk: True when the stream must be closed now (enforce mode, a cap passed)."""
        if self.breach is None:
            breach = self._first_breach(time.perf_counter())
            if breach is None:
                return False
            self._passed(breach)
        return self.budgets.enforce and not self.cut

    def _first_breach(self, now: float) -> Breach | None:
        caps, prefix = self.caps, self.prefix
        if caps.max_reasoning_tokens is not None:
            tokens, source = self.reasoning_tokens()
            if tokens > caps.max_reasoning_tokens:
                return Breach(f"{prefix}.max_reasoning_tokens", caps.max_reasoning_tokens, tokens, "reasoning tokens", source)
        if caps.max_cost_usd is not None:
            cost = self.cost_usd()
            if cost is not None and cost > caps.max_cost_usd:
                return Breach(f"{prefix}.max_cost_usd", caps.max_cost_usd, round(cost, 6), "USD", "estimated")
        if caps.max_thinking_s is not None:
            thinking = self.thinking_s(now)
            if thinking > caps.max_thinking_s:
                return Breach(f"{prefix}.max_thinking_s", caps.max_thinking_s, round(thinking, 3), "s of thinking", "measured")
        return None

    def _passed(self, breach: Breach) -> None:
        self.breach = breach
        if self.price is None:  # looked up only now for a class without a cost cap
            self.price = self.budgets.prices.lookup(self.call.record.provider, self.call.record.request_model)
        self.cut_cost_usd = self.cost_usd()

    def thinking_deadline(self, now: float) -> bool:
        """The watchdog's question at max_thinking_s: True when the connection must be shut now."""
        call = self.call
        if call.ended or call.first_visible is not None or self.breach is not None:
            return False
        breach = self._first_breach(now)
        if breach is None:
            return False
        self._passed(breach)
        return self.budgets.enforce

    def exception(self) -> BudgetExceeded:
        assert self.breach is not None
        self.cut = True
        return self.budgets.exception(self.breach, cut=True, task_class=self.task_class, tenant=self.tenant)

    def settle(self, record: CallRecord) -> None:
        """At the end of the call: the budget attributes, and for a cut stream what it used up to the cut."""
        if self.breach is None:
            return
        mark(record, self.breach, sc.BUDGET_CUT if self.cut else sc.BUDGET_WOULD_CUT)
        if self.cut_cost_usd is not None:
            record.attributes[sc.BUDGET_CUT_COST_USD] = self.cut_cost_usd
        usage = record.usage
        if self.cut and usage.output_tokens is None:
            reasoning, source = self.reasoning_tokens()
            usage.reasoning_tokens = reasoning
            usage.output_tokens = reasoning + self.visible_tokens()
            usage.reasoning_source = Source(source)
            usage.output_source = Source.ESTIMATED
            if usage.input_tokens is None and self.input_tokens is not None:
                usage.input_tokens = self.input_tokens


# ------------------------------------------------------------------------------ thinking-time watchdog


def connection_socket(stream: Any) -> Any:
    """The socket under an SDK stream (openai/anthropic: an httpx response), or None: a socket.socket
    for sync clients, asyncio's TransportSocket (which also has shutdown()) for async ones."""
    response = getattr(stream, "response", None)
    extensions = getattr(response, "extensions", None)
    network_stream = extensions.get("network_stream") if isinstance(extensions, dict) else None
    sock = network_stream.get_extra_info("socket") if network_stream is not None else None
    return sock if callable(getattr(sock, "shutdown", None)) else None


class _Watchdog:
    """One thread for every watched stream: at a stream's max_thinking_s deadline, if it is still
    thinking, the meter decides and the connection is shut (the blocked read then ends)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, weakref.ref, Any]] = []
        self._count = 0
        self._pid: int | None = None

    def watch(self, meter: StreamMeter, stream: Any) -> None:
        caps = meter.caps
        if caps.max_thinking_s is None:
            return
        deadline = meter.call.started + caps.max_thinking_s
        sock = connection_socket(stream)
        with self._cond:
            if self._pid != os.getpid():  # first use, or a forked child: no thread runs here yet
                self._pid = os.getpid()
                self._heap.clear()
                threading.Thread(target=self._run, name="thinkmeter-budget-watchdog", daemon=True).start()
            self._count += 1
            heapq.heappush(self._heap, (deadline, self._count, weakref.ref(meter), sock))
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._heap:
                    self._cond.wait()
                deadline, _, ref, sock = self._heap[0]
                now = time.perf_counter()
                if deadline > now:
                    self._cond.wait(deadline - now + 0.001)
                    continue
                heapq.heappop(self._heap)
            meter = ref()
            try:
                if meter is not None and meter.thinking_deadline(time.perf_counter()) and sock is not None:
                    sock.shutdown(socket.SHUT_RDWR)
            except Exception:
                log_once("budgets.watchdog", "thinkmeter: could not close a stream past its thinking time")


watchdog = _Watchdog()


# ------------------------------------------------------------------------------------- injection helpers


def set_absent(kwargs: dict[str, Any], name: str, value: Any, injected: list[str]) -> bool:
    """kwargs[name] = value unless the caller gave one (None and the SDKs' NOT_GIVEN count as not given)."""
    from thinkmeter.instrumentation._patch import given

    if given(kwargs.get(name)) is not None:
        return False
    kwargs[name] = value
    injected.append(f"{name}={value}")
    return True
