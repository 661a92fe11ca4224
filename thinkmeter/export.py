"""The span path: finished spans -> column-oriented otel_traces rows -> segments or a ClickHouse server.

The caller's thread only appends the finished span to a bounded queue. A daemon thread turns queued
spans into otel_traces columns, encoded exactly as the OTel Collector's clickhouseexporter does, as
one Native block per batch, and either
- writes it as a segment file under <data_dir>/segments (the default: the application never opens the
  embedded store; `thinkmeter serve`, or the next reader, ingests segments in large batches), or
- inserts it into the ClickHouse server at clickhouse_url (large batches, deduplicated by id),
  keeping it as a segment when the server fails and retrying the segments on later flushes.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

from thinkmeter.config import Settings
from thinkmeter.segments import (
    TRACE_COLUMN_NAMES,
    TRACES_TABLE,
    SegmentWriteError,
    SegmentWriter,
    ingest_segments,
    insert_blocks,
    new_segment_id,
    pending_segments,
    trace_block,
)

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

log = logging.getLogger(__name__)

_SHUTDOWN_JOIN_S = 30.0
_EXPONENT_ZERO = re.compile(r"e([+-])0(\d)")

# ------------------------------------------------------------------------------------ attribute encoding


def _format_double(value: float) -> str:
    """Go pdata Value.AsString for doubles: shortest digits, ES6 number layout (1.0 -> "1", 1e-7 -> "1e-7")."""
    text = repr(value)
    if "e" not in text and "n" not in text:  # the common case: plain digits ("nan"/"inf" hold an n)
        return text[:-2] if text.endswith(".0") else text
    if math.isnan(value) or math.isinf(value):
        return f"json: unsupported value: {'NaN' if math.isnan(value) else ('+Inf' if value > 0 else '-Inf')}"
    magnitude = abs(value)
    if magnitude < 1e-6 or magnitude >= 1e21:
        return _EXPONENT_ZERO.sub(r"e\1\2", text)
    text = format(Decimal(text), "f")
    return text[:-2] if text.endswith(".0") else text


def _json_element(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _format_double(value)
    return json.dumps(str(value), ensure_ascii=False)


def _json_array(value: Sequence[Any]) -> str:
    return "[" + ",".join(_json_element(item) for item in value) + "]"


_STRING_TUPLES: dict[tuple[str, ...], str] = {}
_STRING_TUPLES_MAX = 4096


def _json_tuple(value: tuple[Any, ...]) -> str:
    """Tuples of strings (finish reasons) repeat from span to span: encode each one once. Only strings:
    (1,) == (True,) == (1.0,) as keys, but they encode differently."""
    try:
        encoded = _STRING_TUPLES.get(value)
    except TypeError:  # an unhashable item
        return _json_array(value)
    if encoded is not None:
        return encoded
    encoded = _json_array(value)
    if all(type(item) is str for item in value):
        if len(_STRING_TUPLES) >= _STRING_TUPLES_MAX:
            _STRING_TUPLES.clear()
        _STRING_TUPLES[value] = encoded
    return encoded


# Exact types first (one dict lookup per value on the export path); subclasses fall back below.
_ENCODERS: dict[type, Callable[[Any], str]] = {
    str: str,
    bool: lambda value: "true" if value else "false",
    int: int.__repr__,
    float: _format_double,
    tuple: _json_tuple,
    list: _json_array,
}


def attribute_value(value: Any) -> str:
    """One attribute value as the collector stores it: bool "true"/"false", numbers as text, lists as JSON."""
    encode = _ENCODERS.get(type(value))
    if encode is not None:
        return encode(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, float):
        return _format_double(float(value))
    if isinstance(value, (list, tuple)):
        return _json_array(value)
    return str(value)


def encode_attributes(attributes: Mapping[str, Any] | None) -> dict[str, str]:
    if not attributes:
        return {}
    out = dict(attributes)  # a C-level copy when given a dict; most values are str and stay as they are
    encoders = _ENCODERS
    for key, value in out.items():
        if type(value) is not str:
            out[key] = encoders.get(type(value), attribute_value)(value)  # same keys: safe while iterating
    return out


def _span_attributes(span: ReadableSpan) -> Mapping[str, Any] | None:
    """The span's attributes as a plain dict where the SDK keeps one (its BoundedAttributes._dict): the
    public mappingproxy is iterated in Python, which cost ~6 us of the export thread per span."""
    plain = getattr(getattr(span, "_attributes", None), "_dict", None)
    return plain if type(plain) is dict else span.attributes


# -------------------------------------------------------------------------------------- span -> columns


def spans_to_columns(spans: Iterable[ReadableSpan]) -> dict[str, list[Any]]:
    """Column-oriented otel_traces rows: ns integers for times, lowercase hex ids, collector enum names."""
    columns: dict[str, list[Any]] = {name: [] for name in TRACE_COLUMN_NAMES}
    # Bound appends, one per column: this loop runs once per span on the export thread.
    (timestamp, trace_id, span_id, parent_span_id, trace_state, span_name, span_kind, service_name,
     resource_attrs, scope_name, scope_version, span_attrs, duration, status_code, status_message,
     event_times, event_names, event_attrs, link_trace_ids, link_span_ids, link_states,
     link_attrs) = (columns[name].append for name in TRACE_COLUMN_NAMES)
    resource = None
    resource_attributes: dict[str, str] = {}
    service = ""
    scope = None
    scope_fields = ("", "")
    kinds: dict[Any, str] = {}
    codes: dict[Any, str] = {}
    for span in spans:
        if span.resource is not resource:  # one provider => usually one resource for the whole batch
            resource = span.resource
            resource_attributes = encode_attributes(resource.attributes if resource else None)
            service = resource_attributes.get("service.name", "")
        if span.instrumentation_scope is not scope:  # and one tracer
            scope = span.instrumentation_scope
            scope_fields = (scope.name, scope.version or "") if scope else ("", "")
        context = span.context
        start = span.start_time or 0
        status = span.status
        parent = span.parent
        state = context.trace_state
        kind = span.kind
        code = status.status_code
        timestamp(start)
        trace_id(format(context.trace_id, "032x"))
        span_id(format(context.span_id, "016x"))
        parent_span_id(format(parent.span_id, "016x") if parent else "")
        trace_state(state.to_header() if state else "")
        span_name(span.name)
        span_kind(kinds.get(kind) or kinds.setdefault(kind, f"SPAN_KIND_{kind.name}"))
        service_name(service)
        resource_attrs(resource_attributes)
        scope_name(scope_fields[0])
        scope_version(scope_fields[1])
        span_attrs(encode_attributes(_span_attributes(span)))
        duration(max(0, (span.end_time or start) - start))
        status_code(codes.get(code) or codes.setdefault(code, f"STATUS_CODE_{code.name}"))
        status_message(status.description or "")
        events = span.events
        if events:
            event_times([event.timestamp for event in events])
            event_names([event.name for event in events])
            event_attrs([encode_attributes(event.attributes) for event in events])
        else:
            event_times([])
            event_names([])
            event_attrs([])
        links = span.links
        if links:
            link_trace_ids([format(link.context.trace_id, "032x") for link in links])
            link_span_ids([format(link.context.span_id, "016x") for link in links])
            link_states([link.context.trace_state.to_header() if link.context.trace_state else "" for link in links])
            link_attrs([encode_attributes(link.attributes) for link in links])
        else:
            link_trace_ids([])
            link_span_ids([])
            link_states([])
            link_attrs([])
    return columns


# ------------------------------------------------------------------------------------------------- sinks


class _SegmentSink:
    """The embedded store's writer: each batch becomes one segment file for `thinkmeter serve` (or the
    next reader) to ingest. The application never opens the store."""

    def __init__(self, settings: Settings):
        self._writer = SegmentWriter(settings.segments_dir, settings.segments_max_bytes)
        self.label = f"segments directory {settings.segments_dir}"

    def put(self, columns: dict[str, list[Any]]) -> None:
        self._writer.write(TRACES_TABLE, trace_block(columns))

    def settle(self) -> bool:
        return True  # a written segment is as safe as a stored row

    def close(self) -> None:
        pass


class _ServerSink:
    """Insert each batch straight into the server; on failure keep it as a segment (same id, so a
    failed insert that did land is not stored twice) and retry the segments on later flushes."""

    _MAX_BACKOFF_S = 60.0

    def __init__(self, settings: Settings):
        from thinkmeter.store import store_database, store_label  # clickhouse-connect: only in server mode

        self._settings = settings
        self.label = store_label(settings)
        self._database = store_database(settings)
        self._writer = SegmentWriter(settings.segments_dir, settings.segments_max_bytes)
        self._client: Client | None = None
        self._failures = 0
        self._retry_at = 0.0

    def _connected(self) -> Client:
        if self._client is None:
            from thinkmeter.store import ensure_schema, open_client

            client = open_client(self._settings)
            try:
                ensure_schema(client, self._settings)
            except Exception:
                client.close()
                raise
            self._client = client
        return self._client

    def _failed(self) -> None:
        # Back off so an unreachable server costs one attempt per interval, not one per batch.
        self._failures += 1
        backoff = min(self._MAX_BACKOFF_S, self._settings.flush_interval_s * 2 ** min(self._failures, 16))
        self._retry_at = time.monotonic() + backoff
        self.close()

    def _server_usable(self) -> bool:
        return time.monotonic() >= self._retry_at

    def put(self, columns: dict[str, list[Any]]) -> None:
        segment_id = new_segment_id()
        block = trace_block(columns)
        if self._server_usable():
            try:
                insert_blocks(self._connected(), TRACES_TABLE, self._database, segment_id, [block])
                self._failures = 0
                return
            except Exception:
                self._writer.write(TRACES_TABLE, block, segment_id)
                self._failed()
                raise
        self._writer.write(TRACES_TABLE, block, segment_id)

    def settle(self) -> bool:
        directory = self._settings.segments_dir
        if not pending_segments(directory):
            return True
        if not self._server_usable():
            return False
        try:
            ingest_segments(self._connected(), directory, self._database, one_per_insert=True)
        except Exception:
            self._failed()
            raise
        self._failures = 0
        return not pending_segments(directory)

    def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            client.close()


# --------------------------------------------------------------------------------------------- processor


@dataclass
class _FlushRequest:
    deadline: float
    done: threading.Event = field(default_factory=threading.Event)
    complete: bool = False


class ClickHouseSpanProcessor(SpanProcessor):
    """Queues finished spans (never blocking, never raising) and exports them from a daemon thread."""

    def __init__(self, settings: Settings):
        self._settings = settings
        self._capacity = settings.queue_size
        self._batch_size = settings.batch_size
        self._sink = _ServerSink(settings) if settings.clickhouse_url else _SegmentSink(settings)
        self._dropped = 0
        self._failing = False
        self._start_worker()
        weak_self = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: _restart_in_child(weak_self()))

    def _start_worker(self) -> None:
        self._queue: deque[ReadableSpan] = deque()
        self._wake = threading.Event()
        self._requests_lock = threading.Lock()
        self._requests: list[_FlushRequest] = []
        self._drop_lock = threading.Lock()
        self._dropping = False
        self._segments_failing = False
        self._stopping = False
        self._worker = threading.Thread(target=self._run, name="thinkmeter-export", daemon=True)
        self._worker.start()

    @property
    def dropped_spans(self) -> int:
        """Spans dropped since this processor started: the queue was full, or the segments directory
        could not take them (full: nothing ingests it, or the disk is full)."""
        return self._dropped

    @property
    def pending_spans(self) -> int:
        return len(self._queue)

    # ---- caller's thread: keep it to a length check and an append

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        if self._stopping or not span.context.trace_flags.sampled:
            return
        queue = self._queue
        if len(queue) >= self._capacity:
            self._drop()
            return
        queue.append(span)
        if len(queue) >= self._batch_size:
            self._wake.set()

    def _segment_lost(self, count: int, exc: SegmentWriteError) -> None:
        """No room for a batch's segment (nothing ingests them, or the disk is full): drop it, counted."""
        with self._drop_lock:
            self._dropped += count
            first = not self._segments_failing
            self._segments_failing = True
        if first:
            log.error("thinkmeter: %s; dropping span batches until it has room (%d spans dropped so far)", exc, self._dropped)

    def _drop(self) -> None:
        with self._drop_lock:
            self._dropped += 1
            episode_starts = not self._dropping
            self._dropping = True
        if episode_starts:
            log.warning(
                "thinkmeter: export queue full (%d spans); dropping new spans until the exporter catches up "
                "(%d dropped so far; raise queue_size or lower flush_interval_s)",
                self._capacity,
                self._dropped,
            )

    # ---- export thread

    def _run(self) -> None:
        while True:
            self._wake.wait(self._settings.flush_interval_s)
            self._wake.clear()
            with self._requests_lock:
                requests, self._requests = self._requests, []
            stopping = self._stopping
            complete = self._export_pending()
            for request in requests:
                request.complete = complete
                request.done.set()
            if stopping:
                return

    def _export_pending(self) -> bool:
        """Export everything queued; True when it is all written (segments, or the server)."""
        lost = False
        try:
            while self._queue:
                spans = [self._queue.popleft() for _ in range(min(self._batch_size, len(self._queue)))]
                try:
                    self._sink.put(spans_to_columns(spans))
                except SegmentWriteError as exc:
                    self._segment_lost(len(spans), exc)
                    lost = True
            complete = self._sink.settle()
        except Exception as exc:  # never let the thread die; batches that failed are kept as segments
            if not self._failing:
                log.warning(
                    "thinkmeter: could not write spans to the %s (%s: %s); they are kept in %s and retried",
                    self._sink.label,
                    type(exc).__name__,
                    exc,
                    self._settings.segments_dir,
                )
            self._failing = True
            return False
        if self._failing:
            log.info("thinkmeter: span export to the %s works again", self._sink.label)
            self._failing = False
        if not lost:
            self._segments_failing = False
        self._dropping = False  # the queue has room again: the next drop starts a new episode (and log line)
        return complete and not lost

    # ---- SpanProcessor API

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Write everything queued so far (segments, or the server); False if not all done in time."""
        if not self._worker.is_alive():
            return not self._queue
        timeout_s = timeout_millis / 1000
        request = _FlushRequest(deadline=time.monotonic() + timeout_s)
        with self._requests_lock:
            self._requests.append(request)
        self._wake.set()
        return request.done.wait(timeout_s) and request.complete

    def shutdown(self) -> None:
        """Write everything queued (segments, or the server and segments while it fails); then stop."""
        if self._stopping:
            return
        self._stopping = True
        self._wake.set()
        self._worker.join(_SHUTDOWN_JOIN_S)
        self._sink.close()


def _restart_in_child(processor: ClickHouseSpanProcessor | None) -> None:
    # A forked child (pre-fork servers) gets its own empty queue and export thread; the parent's queued
    # spans are the parent's to export.
    if processor is not None and not processor._stopping:
        processor._start_worker()


def build_span_processor(settings: Settings) -> SpanProcessor | None:
    """The processor for settings.exporter: ours for "clickhouse", OTLP (OTEL_EXPORTER_OTLP_* env) or none."""
    if settings.exporter == "clickhouse":
        return ClickHouseSpanProcessor(settings)
    if settings.exporter == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        return BatchSpanProcessor(OTLPSpanExporter())
    return None
