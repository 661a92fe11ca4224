"""`import thinkmeter` (the line every application runs, often only for `tags` or `task`) loads nothing
heavy: no OTel SDK (the OTel API only, which `task` needs for its context), pydantic, wrapt, LLM SDK,
collector, ClickHouse client or store code until instrument() or the CLI needs them. Checked in a
fresh interpreter."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = (
    "opentelemetry.sdk",
    "pydantic",
    "wrapt",
    "openai",
    "anthropic",
    "clickhouse_connect",
    "chdb",
    "thinkmeter.collectors",
    "thinkmeter.config",
    "thinkmeter.export",
    "thinkmeter.store",
    "thinkmeter.instrumentation._telemetry",
)


def test_import_thinkmeter_loads_no_sdk_collector_or_store_code() -> None:
    code = (
        "import json, sys; import thinkmeter\n"
        "with thinkmeter.tags(tenant='acme'): pass\n"
        "print(json.dumps(sorted(sys.modules)))"
    )
    loaded = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    heavy = [m for m in loaded if any(m == h or m.startswith(h + ".") for h in HEAVY)]
    assert heavy == []
