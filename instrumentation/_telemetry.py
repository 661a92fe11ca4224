"""The one place where a call record becomes span attributes and metrics."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Mapping
from operator import attrgetter
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.context import Context
from opentelemetry.trace import SpanKind, Status, StatusCode

from thinkmeter._version import __version__
from thinkmeter.instrumentation._content import ContentCapture
from thinkmeter.instrumentation._safety import log_once
from thinkmeter.instrumentation._tags import current_tag_attributes
from thinkmeter.instrumentation._task import TaskState, current_task
from thinkmeter.instrumentation._tokenize import EngineTokenizer, reasoning_span
from thinkmeter.pricing import Cost, PriceTable
from thinkmeter.schemas import semconv as sc
from thinkmeter.schemas.contract import RECORD_ATTRIBUTES
from thinkmeter.schemas.record import CallRecord, Source

if TYPE_CHECKING:
    from thinkmeter.instrumentation._budget import Budgets, StreamMeter


def record_attributes(record: CallRecord) -> dict[str, Any]:
    """Span attributes of a finished call: only what has a value, so unknown stays absent."""
    attrs: dict[str, Any] = {}
    for key, read in _RECORD_READERS:
        value = read(record)
        if value is not None:
            attrs[key] = value
    if record.attributes:
        attrs.update(record.attributes)
    return attrs


# (attribute, reader) from the contract table; attrgetter follows dotted paths in C, once per field.
_RECORD_READERS = tuple((key, attrgetter(path)) for key, path in RECORD_ATTRIBUTES)

# (server address, port) -> the span attributes a call to that self-hosted engine starts with: the
# engine and GPU pressure at request start, as this process's collectors last saw it.
RequestContext = Callable[[str, "int | None"], Mapping[str, float | int]]


class Telemetry:
    """Tracer, meter instruments and price table shared by every patched SDK method."""

    def __init__(
        self,
        tracer_provider: trace.TracerProvider | None,
        meter_provider: metrics.MeterProvider | None,
        prices: PriceTable,
        capture_content: ContentCapture | None = None,
        request_context: RequestContext | None = None,
        budgets: Budgets | None = None,
    ) -> None:
        self.tracer = trace.get_tracer("thinkmeter", __version__, tracer_provider)
        meter = metrics.get_meter("thinkmeter", __version__, meter_provider)
        self.prices = prices
        self.capture_content = capture_content
        self.request_context = request_context
        self.budgets = budgets
        self.tokenizer = EngineTokenizer()
        self._token_usage = meter.create_histogram(
            sc.METRIC_TOKEN_USAGE,
            unit="{token}",
            description="Input and output tokens per call (output includes reasoning)",
            explicit_bucket_boundaries_advisory=list(sc.TOKEN_BUCKETS),
        )
        self._duration = meter.create_histogram(
            sc.METRIC_OPERATION_DURATION,
            unit="s",
            description="Duration of the LLM call, from the SDK call to its last byte",
            explicit_bucket_boundaries_advisory=list(sc.DURATION_BUCKETS),
        )
        self._time_to_first_chunk = meter.create_histogram(
            sc.METRIC_TIME_TO_FIRST_CHUNK,
            unit="s",
            description="Time from the SDK call to the first streamed chunk",
            explicit_bucket_boundaries_advisory=list(sc.DURATION_BUCKETS),
        )

    def emit_span(
        self, record: CallRecord, parent: Context, start_ns: int, attrs: dict[str, Any], end_ns: int | None = None
    ) -> None:
        """The call's span, created once the call is over with every attribute (samplers see them all),
        so the SDK checks each attribute once instead of at start and again at the end."""
        span = self.tracer.start_span(
            f"{record.operation} {record.request_model}" if record.request_model else record.operation,
            context=parent,
            kind=SpanKind.CLIENT,
            attributes=attrs,
            start_time=start_ns,
        )
        if record.error_type is not None:
            span.set_status(Status(StatusCode.ERROR, record.error_type))
        span.end(end_ns)

    def finish(
        self,
        record: CallRecord,
        parent: Context,
        start_ns: int,
        duration_s: float,
        error: BaseException | None,
        tags: dict[str, str],
        task: TaskState | None,
        end_ns: int | None = None,
    ) -> None:
        if error is not None and record.error_type is None:
            record.error_type = type(error).__qualname__
        usage = record.usage
        if record.cost_usd is None:
            cost = self._cost(record)
            if cost is not None:
                record.cost_usd, record.reasoning_cost_usd = cost.total_usd, cost.reasoning_usd
                record.cost_source = "price_table"
            elif usage.output_tokens is not None:
                record.cost_source = "unknown_price"
        attrs = record_attributes(record)
        attrs.update(tags)
        if task is not None:
            task.add(record)
        self._record_metrics(record, duration_s)
        self.emit_span(record, parent, start_ns, attrs, end_ns)

    def _cost(self, record: CallRecord) -> Cost | None:
        model = record.response_model or record.request_model
        if not record.usage_by_model:
            return self.prices.cost(record.provider, model, record.usage)
        total = reasoning = 0.0
        for part_model, part in record.usage_by_model:
            cost = self.prices.cost(record.provider, part_model or model, part)
            if cost is None:
                return None  # one part unpriced: the call's cost is unknown, not understated
            total += cost.total_usd
            reasoning += cost.reasoning_usd or 0.0
        return Cost(total, reasoning if record.usage.reasoning_tokens is not None else None)

    def _record_metrics(self, record: CallRecord, duration_s: float) -> None:
        dims: dict[str, Any] = {sc.OPERATION: record.operation, sc.PROVIDER: record.provider}
        if record.request_model:
            dims[sc.REQUEST_MODEL] = record.request_model
        if record.response_model:
            dims[sc.RESPONSE_MODEL] = record.response_model
        if record.error_type:
            dims[sc.ERROR_TYPE] = record.error_type
        self._duration.record(duration_s, dims)
        if record.time_to_first_chunk is not None:
            self._time_to_first_chunk.record(record.time_to_first_chunk, dims)
        usage = record.usage
        if usage.input_tokens is not None:
            self._token_usage.record(usage.input_tokens, {**dims, sc.TOKEN_TYPE: "input"})
        if usage.output_tokens is not None:
            self._token_usage.record(usage.output_tokens, {**dims, sc.TOKEN_TYPE: "output"})


class Call:
    """One traced LLM call: its record, the context and wall-clock start of its span (which is made
    when the call ends), and time points (perf_counter seconds)."""

    __slots__ = (
        "telemetry",
        "record",
        "parent",
        "start_ns",
        "started",
        "first_chunk",
        "first_token",
        "first_visible",
        "last_token",
        "hide_usage_chunk",
        "meter",
        "ended",
        "tags",
        "task",
        "engine_origin",
        "reasoning_text",
    )

    def __init__(self, telemetry: Telemetry, record: CallRecord) -> None:
        self.telemetry = telemetry
        self.record = record
        self.parent = otel_context.get_current()  # the caller's trace, even if a stream ends elsewhere
        # Likewise its tags and task: a stream read to its end after the block that started it still
        # belongs to that block.
        self.tags = current_tag_attributes()
        self.task = current_task()
        if record.engine is not None and record.server_address is not None and telemetry.request_context is not None:
            # The pressure the engine was under when this request arrived (empty without a collector).
            record.attributes.update(telemetry.request_context(record.server_address, record.server_port))
        self.start_ns = time.time_ns()
        self.started = time.perf_counter()
        self.first_chunk: float | None = None
        self.first_token: float | None = None
        self.first_visible: float | None = None
        self.last_token: float | None = None
        # Set when thinkmeter asked a stream for a usage chunk the caller did not ask for.
        self.hide_usage_chunk = False
        # A streamed call under a budget policy: what it has used against its caps (instrumentation/_budget.py).
        self.meter: StreamMeter | None = None
        self.ended = False
        # An engine whose tokenizer can count the reasoning text (scheme://host:port), and that text
        # when the reply carried reasoning without a count.
        self.engine_origin: str | None = None
        self.reasoning_text: str | None = None

    def finish(self, error: BaseException | None = None) -> None:
        """End the call once; later calls (close after exhaustion, GC after close) do nothing."""
        if self.ended:
            return
        self.ended = True
        duration = time.perf_counter() - self.started
        end_ns = self.start_ns + int(duration * 1e9)
        text, origin = self.reasoning_text, self.engine_origin
        # The engine's tokenizer counts the reasoning on the tokenizer's thread, which then ends the span;
        # when it cannot take the text now, the estimate stands and the span ends here. A call inside a
        # task keeps the estimate: the task's totals are summed when its block ends, on the caller's thread.
        if text and origin and error is None and self.task is None and self.record.usage.reasoning_source is Source.ESTIMATED:
            if self.telemetry.tokenizer.submit(origin, reasoning_span(text), functools.partial(self._counted, duration, end_ns)):
                return
        self._complete(duration, end_ns, error)

    def _counted(self, duration: float, end_ns: int, count: int | None) -> None:
        usage = self.record.usage
        if count is not None:
            usage.reasoning_tokens = count if usage.output_tokens is None else min(count, usage.output_tokens)
            usage.reasoning_source = Source.TOKENIZED
        try:
            self._complete(duration, end_ns, None)
        except Exception:
            log_once("Call._counted", "thinkmeter: cannot finish a call after counting its reasoning")

    def _complete(self, duration: float, end_ns: int, error: BaseException | None) -> None:
        record = self.record
        try:
            if record.stream:
                self._set_stream_timings()
            if self.meter is not None:
                self.meter.settle(record)
            self.telemetry.finish(record, self.parent, self.start_ns, duration, error, self.tags, self.task, end_ns)
        except Exception:
            # Figures that cannot be read must not cost the call its span.
            attrs = {sc.OPERATION: record.operation, sc.PROVIDER: record.provider}
            self.telemetry.emit_span(record, self.parent, self.start_ns, attrs, end_ns)
            raise

    def _set_stream_timings(self) -> None:
        record, started = self.record, self.started
        if self.first_chunk is not None:
            record.time_to_first_chunk = self.first_chunk - started
        if self.first_token is not None:
            record.time_to_first_token = self.first_token - started
        if self.first_visible is not None:
            record.time_to_first_visible_token = self.first_visible - started
        # Mean gap between generated tokens after the first, over the tokens this stream showed:
        # all output when reasoning was streamed, otherwise the visible part only.
        usage = record.usage
        reasoning_seen = self.first_token is not None and self.first_token != self.first_visible
        tokens = usage.output_tokens if reasoning_seen else usage.visible_output_tokens
        if tokens is not None and tokens > 1 and self.first_token is not None and self.last_token is not None:
            record.time_per_output_token = (self.last_token - self.first_token) / (tokens - 1)


def mark_tokens(call: Call, now: float, visible: bool, chars: int = 0) -> None:
    """Note generated tokens (reasoning, or visible when `visible`; `chars` of text) arriving in a streamed chunk."""
    meter = call.meter
    if meter is not None:
        if visible:
            meter.visible(chars)
        else:
            meter.reasoning(chars)
    if call.first_token is None:
        call.first_token = now
    if visible and call.first_visible is None:
        call.first_visible = now
    call.last_token = now
