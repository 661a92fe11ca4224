"""thinkmeter as an OpenTelemetry instrumentor, for zero-code setups: `opentelemetry-instrument python
app.py` (and OTel distros) load it through the `opentelemetry_instrumentor` entry point named
"thinkmeter", after configuring the SDK from the OTEL_* variables.

Spans then go through that configured pipeline (OTEL_TRACES_EXPORTER, OTEL_EXPORTER_OTLP_ENDPOINT, ...):
thinkmeter adds no exporter of its own unless THINKMETER_EXPORTER names one. The usual switches work:
OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=thinkmeter leaves it out, OTEL_SDK_DISABLED=true turns it off.
"""

from __future__ import annotations

import os
from collections.abc import Collection
from typing import Any

from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]

import thinkmeter


class ThinkmeterInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    def instrumentation_dependencies(self) -> Collection[str]:
        # Every supported SDK is optional: each is patched when installed.
        return ()

    def _instrument(self, **kwargs: Any) -> None:
        exporter = None if "THINKMETER_EXPORTER" in os.environ else "none"
        thinkmeter.instrument(
            tracer_provider=kwargs.get("tracer_provider"), meter_provider=kwargs.get("meter_provider"), exporter=exporter
        )

    def _uninstrument(self, **kwargs: Any) -> None:
        thinkmeter.uninstrument()
