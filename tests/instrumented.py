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
        return list(self.exporter.get_finished_spans())

    def only_span(self) -> ReadableSpan:
        gc.collect()  # abandoned streams end their span when collected
        spans = self.all()
        assert len(spans) == 1, f"expected one finished span, got {[s.name for s in spans]}"
        return spans[0]

    def only_attributes(self) -> dict[str, Any]:
        return dict(self.only_span().attributes or {})

    def clear(self) -> None:
        self.exporter.clear()


@pytest.fixture
def instrumented(request: pytest.FixtureRequest) -> Iterator[Spans]:
    """thinkmeter.instrument() into memory; a test may pass `providers` via
    @pytest.mark.parametrize('instrumented', [{"127.0.0.1": "vllm"}], indirect=True)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    providers = getattr(request, "param", None)
    thinkmeter.uninstrument()
    thinkmeter.instrument(tracer_provider=provider, exporter="none", providers=providers)
    try:
        yield Spans(exporter)
    finally:
        thinkmeter.uninstrument()
