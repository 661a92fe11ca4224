"""Shared test helper: thinkmeter instrumented into an in-memory span exporter.

Usage in a test module:

    from tests.instrumented import instrumented  # noqa: F401  (pytest fixture)

    def test_x(instrumented):
        ... call an SDK ...
        span = instrumented.only_span()
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import thinkmeter


class Spans:
    def __init__(self, exporter: InMemorySpanExporter) -> None:
        self.exporter = exporter

    def all(self) -> list[ReadableSpan]:
        thinkmeter.flush()  # spans of calls whose reasoning an engine's tokenizer is counting end there
        return list(self.exporter.get_finished_spans())

    def only_span(self) -> ReadableSpan:
        spans = self.all()
        if len(spans) != 1:
            gc.collect()  # abandoned streams end their span when collected (a full collection is slow)
            spans = self.all()
        assert len(spans) == 1, f"expected one finished span, got {[s.name for s in spans]}"
        return spans[0]

    def only_attributes(self) -> dict[str, Any]:
        return dict(self.only_span().attributes or {})

    def clear(self) -> None:
        self.exporter.clear()


def _into_memory(**options: Any) -> Iterator[Spans]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    thinkmeter.uninstrument()
    thinkmeter.instrument(tracer_provider=provider, exporter="none", **options)
    try:
        yield Spans(exporter)
    finally:
        thinkmeter.uninstrument()


@pytest.fixture
def instrumented(request: pytest.FixtureRequest) -> Iterator[Spans]:
    """thinkmeter.instrument() into memory; a test may pass `providers` via
    @pytest.mark.parametrize('instrumented', [{"127.0.0.1": "vllm"}], indirect=True)."""
    yield from _into_memory(providers=getattr(request, "param", None))


@pytest.fixture
def capturing(request: pytest.FixtureRequest) -> Iterator[Spans]:
    """Like `instrumented`, with content capture on; a test may pass more instrument() options
    (redact=..., content_max_chars=...) via indirect parametrization of `capturing`."""
    yield from _into_memory(capture_content=True, **(getattr(request, "param", None) or {}))
