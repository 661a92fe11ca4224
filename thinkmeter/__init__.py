"""thinkmeter: the hidden cost of reasoning models, as OpenTelemetry spans in ClickHouse.

    import thinkmeter
    thinkmeter.instrument()

Every call of the installed LLM SDKs then becomes a span with reasoning and visible tokens, cost, time
to first token and time to first visible token; see README.md for the attribute contract.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from thinkmeter._version import __version__
from thinkmeter.budgets import BudgetExceeded
from thinkmeter.instrumentation._tags import tags
from thinkmeter.instrumentation._task import record_outcome, task

__all__ = ["instrument", "uninstrument", "flush", "tags", "task", "record_outcome", "BudgetExceeded", "__version__"]

logger = logging.getLogger("thinkmeter")


class _State:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.patcher: Any = None
        self.processor: Any = None
        self.collectors: Any = None
        self.telemetry: Any = None
        self.instrumented: list[str] = []


_state = _State()


def instrument(
    *,
    tracer_provider: Any = None,
    meter_provider: Any = None,
    exporter: str | None = None,
    clickhouse_url: str | None = None,
    data_dir: str | Path | None = None,
    price_file: str | Path | None = None,
    capture_content: bool | None = None,
    content_max_chars: int | None = None,
    redact: Callable[[str], str] | None = None,
    providers: dict[str, str] | None = None,
    collect_gpu: bool | None = None,
    engines: Sequence[str | dict[str, str]] | None = None,
    queue_size: int | None = None,
    batch_size: int | None = None,
    flush_interval_s: float | None = None,
    segments_max_bytes: int | None = None,
    budgets: str | Path | None = None,
) -> list[str]:
    """Trace every call of the installed LLM SDKs; returns the SDKs it patched.

    Safe to call twice (the second call does nothing) and offline: nothing touches the network or
    the store until spans are exported in the background. Without `tracer_provider` it uses the
    global one, creating an SDK TracerProvider (honouring OTEL_SERVICE_NAME) only if none is set.
    `exporter`: "clickhouse" (default: embedded chDB under data_dir, or `clickhouse_url`),
    "otlp" (OTEL_EXPORTER_OTLP_* variables) or "none" (your provider exports).
    `providers` maps "host" or "host:port" of a base URL to a provider name (e.g. {"gpu-box:8000": "vllm"}).
    `capture_content` records prompts and completions (off by default); `redact` (str -> str) runs on
    every text first and `content_max_chars` bounds each of the two attributes.
    `collect_gpu` samples this host's GPUs (NVML) and `engines` scrapes inference-engine /metrics URLs
    in a background thread (defaults: THINKMETER_COLLECT_GPU, THINKMETER_COLLECT_ENGINES,
    THINKMETER_COLLECT_INTERVAL): their readings go to the metrics tables and onto the spans of calls to
    those engines (KV-cache usage, queue, GPU load at request start).
    `queue_size` (pending spans before new ones are dropped and counted), `batch_size` (spans per
    insert), `flush_interval_s` and `segments_max_bytes` (rows waiting for `thinkmeter serve` before new
    ones are dropped and counted) tune the background export.
    `budgets` (THINKMETER_BUDGETS) is a budget policy file: caps per task class injected as each
    provider's own knobs, streams cut off past them, tenants refused past their window, raising
    `thinkmeter.BudgetExceeded` (or, with `mode: observe`, only recorded).
    An unknown keyword raises TypeError, as in any Python call; a bad value or environment setting is
    logged and leaves the application running untraced.
    """
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        logger.info("thinkmeter: OTEL_SDK_DISABLED=true, not instrumenting")
        return []
    with _state.lock:
        if _state.patcher is not None:
            return list(_state.instrumented)
        try:
            return _instrument_locked(
                tracer_provider,
                meter_provider,
                exporter=exporter,
                clickhouse_url=clickhouse_url,
                data_dir=Path(data_dir) if data_dir is not None else None,
                price_file=Path(price_file) if price_file is not None else None,
                capture_content=capture_content,
                content_max_chars=content_max_chars,
                redact=redact,
                providers=providers,
                collect_gpu=collect_gpu,
                engines=engines,
                queue_size=queue_size,
                batch_size=batch_size,
                flush_interval_s=flush_interval_s,
                segments_max_bytes=segments_max_bytes,
                budgets=Path(budgets) if budgets is not None else None,
            )
        except Exception as error:
            # A configuration mistake must not take the application down: say it once, run untraced.
            logger.error("thinkmeter: not instrumenting: %s", error)
            return []


def _instrument_locked(
    tracer_provider: Any,
    meter_provider: Any,
    collect_gpu: bool | None,
    engines: Sequence[str | dict[str, str]] | None,
    **options: Any,
) -> list[str]:
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import ProxyTracerProvider

    from thinkmeter.config import Settings
    from thinkmeter.instrumentation import instrument_installed
    from thinkmeter.instrumentation._content import ContentCapture
    from thinkmeter.instrumentation._endpoints import EndpointResolver
    from thinkmeter.instrumentation._patch import Patcher
    from thinkmeter.instrumentation._task import use_tracer
    from thinkmeter.instrumentation._telemetry import Telemetry
    from thinkmeter.pricing import PriceTable

    settings = Settings.from_env(**options)
    prices = PriceTable.load(settings.price_file)  # a bad price file stops here, before anything is set up
    budgets = _budgets(settings, prices)  # and so does a bad budget policy
    collect = None
    if collect_gpu is not None or engines is not None or any(name.startswith("THINKMETER_COLLECT_") for name in os.environ):
        from thinkmeter.collectors.config import CollectConfig

        collect = CollectConfig.resolve(gpu=collect_gpu, engines=engines)  # a bad THINKMETER_COLLECT_* stops here
    if tracer_provider is None:
        tracer_provider = trace.get_tracer_provider()
        if isinstance(tracer_provider, ProxyTracerProvider):  # nobody set one: ours becomes global
            tracer_provider = TracerProvider()
            trace.set_tracer_provider(tracer_provider)
    if settings.exporter != "none":
        from thinkmeter.export import build_span_processor

        if not hasattr(tracer_provider, "add_span_processor"):
            raise ValueError(
                f"the tracer provider {type(tracer_provider).__name__} takes no span processors; "
                "pass exporter='none' and export with it, or pass an SDK TracerProvider"
            )
        processor = build_span_processor(settings)
        tracer_provider.add_span_processor(processor)
        _state.processor = processor
        atexit.register(flush)
    content = ContentCapture(settings.content_max_chars, settings.redact) if settings.capture_content else None
    request_context = None
    if collect is not None and (collect.gpu or collect.engines):
        from thinkmeter.collectors.context import engine_context_attributes
        from thinkmeter.collectors.runner import start_collectors

        _state.collectors = start_collectors(
            settings if settings.exporter == "clickhouse" else None,
            collect_gpu=collect.gpu,
            engines=collect.engines,
            interval_s=collect.interval_s,
        )
        atexit.register(_state.collectors.stop)
        # Calls to the watched engines carry the pressure these collectors last saw.
        request_context = engine_context_attributes
    telemetry = Telemetry(
        tracer_provider, meter_provider, prices, capture_content=content, request_context=request_context, budgets=budgets
    )
    use_tracer(telemetry.tracer)  # task and outcome spans
    patcher = Patcher()
    _state.instrumented = instrument_installed(patcher, telemetry, EndpointResolver(settings.providers))
    _state.patcher = patcher
    _state.telemetry = telemetry
    return list(_state.instrumented)


def _budgets(settings: Any, prices: Any) -> Any:
    """The runtime of the budget policy file, if one is set; a bad file stops instrument() here."""
    if settings.budgets is None:
        return None
    from thinkmeter.budgets.policy import load_policy
    from thinkmeter.budgets.windows import TenantWindows
    from thinkmeter.instrumentation._budget import Budgets

    loaded = load_policy(settings.budgets)
    policy = loaded.policy
    windows = TenantWindows(settings.data_dir, policy.tenant_window_s) if policy.tenants else None
    logger.info("thinkmeter: budget policy %s in %s mode", loaded.path, policy.mode)
    return Budgets(loaded, windows, prices)


def uninstrument() -> None:
    """Remove every patch and flush what is pending; `instrument()` may be called again after."""
    with _state.lock:
        if _state.patcher is not None:
            from thinkmeter.instrumentation._task import use_tracer

            _state.patcher.unwrap_all()
            _state.patcher = None
            _state.instrumented = []
            use_tracer(None)
        processor, _state.processor = _state.processor, None
        collectors, _state.collectors = _state.collectors, None
        telemetry, _state.telemetry = _state.telemetry, None
    if collectors is not None:
        collectors.stop()
    if telemetry is not None:
        telemetry.tokenizer.drain(10.0)
    if processor is not None:
        processor.shutdown()


def flush(timeout_s: float = 10.0) -> bool:
    """Export every finished span now (bounded by timeout_s); True when all were written. Calls whose
    reasoning an engine's tokenizer is still counting are waited for first."""
    deadline = time.monotonic() + timeout_s
    telemetry = _state.telemetry
    drained = telemetry is None or telemetry.tokenizer.drain(timeout_s)
    processor = _state.processor
    if processor is None:
        return drained
    remaining_ms = max(0, int((deadline - time.monotonic()) * 1000))
    return bool(processor.force_flush(remaining_ms)) and drained
