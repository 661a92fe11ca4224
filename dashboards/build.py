"""Generate every Grafana file thinkmeter ships; `python -m thinkmeter.dashboards.build` rewrites them.

    dashboards/json/*.json                  the six dashboards
    dashboards/provisioning/datasource.yaml the ClickHouse datasource, traces pointed at otel_traces
    dashboards/provisioning/dashboards.yaml the dashboard provider
    alerts/provisioning/rules.yaml          the alert rules (from alerts/rules.py, default settings)
    alerts/provisioning/contact-points.yaml an example webhook contact point

tests/test_dashboards.py fails when a committed file differs from what this generates.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from thinkmeter.alerts.grafana import (
    FOLDER_TITLE,
    FOLDER_UID,
    contact_points_file,
    provisioning_file,
)
from thinkmeter.alerts.rules import AlertSettings, build_rules
from thinkmeter.dashboards.boards import dashboards
from thinkmeter.dashboards.model import DATASOURCE_TYPE, DATASOURCE_UID, render
from thinkmeter.dashboards.sql import TRACE_ID_SUFFIX
from thinkmeter.serve.client import READER_USER
from thinkmeter.serve.server import ServeOptions

PACKAGE_DIR = Path(__file__).resolve().parent
ALERTS_DIR = PACKAGE_DIR.parent / "alerts"
DASHBOARDS_PATH = "/var/lib/grafana/dashboards/thinkmeter"
EXAMPLE_WEBHOOK_URL = "http://localhost:9099/thinkmeter-alerts"
SERVE_PORT = ServeOptions.port  # where `thinkmeter serve` listens unless told


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (SQL) as literal blocks."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def to_yaml(document: dict[str, Any], header: str) -> str:
    body = yaml.dump(document, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=120)
    return "".join(f"# {line}".rstrip() + "\n" for line in header.strip().splitlines()) + body


def datasource_document(
    host: str = "localhost", port: int = SERVE_PORT, protocol: str = "http", username: str = READER_USER, database: str = "default"
) -> dict[str, Any]:
    """The datasource as provisioning YAML and as the body of POST /api/datasources (plus secureJsonData).
    By default it reads the embedded store through `thinkmeter serve` on this machine."""
    return {
        "name": "thinkmeter ClickHouse",
        "uid": DATASOURCE_UID,
        "type": DATASOURCE_TYPE,
        "access": "proxy",
        "isDefault": False,
        "jsonData": {
            "host": host,
            "port": port,
            "protocol": protocol,
            "secure": False,
            "username": username,
            "defaultDatabase": database,
            "traces": {
                "defaultDatabase": database,
                "defaultTable": "otel_traces",
                "otelEnabled": True,
                "otelVersion": "latest",
                "traceIdColumn": "TraceId",
                "spanIdColumn": "SpanId",
                "operationNameColumn": "SpanName",
                "parentSpanIdColumn": "ParentSpanId",
                "serviceNameColumn": "ServiceName",
                "durationColumn": "Duration",
                "durationUnit": "nanoseconds",
                "startTimeColumn": "Timestamp",
                "tagsColumn": "SpanAttributes",
                "serviceTagsColumn": "ResourceAttributes",
                "kindColumn": "SpanKind",
                "statusCodeColumn": "StatusCode",
                "statusMessageColumn": "StatusMessage",
                "stateColumn": "TraceState",
                "flattenNested": False,
                "traceEventsColumnPrefix": "Events",
                "traceLinksColumnPrefix": "Links",
                "traceTimestampTableSuffix": TRACE_ID_SUFFIX,
            },
        },
    }


def dashboards_provider() -> dict[str, Any]:
    return {
        "apiVersion": 1,
        "providers": [
            {
                "name": "thinkmeter",
                "orgId": 1,
                "folder": FOLDER_TITLE,
                "folderUid": FOLDER_UID,
                "type": "file",
                "disableDeletion": False,
                "updateIntervalSeconds": 60,
                "allowUiUpdates": False,
                "options": {"path": DASHBOARDS_PATH, "foldersFromFilesStructure": False},
            }
        ],
    }


def generated_files() -> dict[Path, str]:
    """Path -> content of every generated file."""
    files: dict[Path, str] = {}
    for dashboard in dashboards():
        files[PACKAGE_DIR / "json" / f"{dashboard.uid}.json"] = json.dumps(render(dashboard), indent=2) + "\n"
    datasource = {**datasource_document(), "secureJsonData": {"password": ""}}
    files[PACKAGE_DIR / "provisioning" / "datasource.yaml"] = to_yaml(
        {"apiVersion": 1, "datasources": [datasource]},
        """
Grafana datasource for thinkmeter: copy to /etc/grafana/provisioning/datasources/ (needs the
grafana-clickhouse-datasource plugin). As generated it reads the embedded store through `thinkmeter serve`
on the Grafana host (protocol http, port 8123, user thinkmeter_reader; password: serve's
THINKMETER_SERVE_PASSWORD, if set). For a ClickHouse server set host/port/username/password (native
protocol 9000, or http 8123). Traces are read from otel_traces with the OTel column map, so trace links
of the dashboards open in Grafana's trace view.
Generated by `python -m thinkmeter.dashboards.build`.
""",
    )
    files[PACKAGE_DIR / "provisioning" / "dashboards.yaml"] = to_yaml(
        dashboards_provider(),
        f"""
Dashboard provider for thinkmeter: copy to /etc/grafana/provisioning/dashboards/ and put the files of
dashboards/json/ in {DASHBOARDS_PATH} (e.g. a read-only volume).
Generated by `python -m thinkmeter.dashboards.build`.
""",
    )
    files[ALERTS_DIR / "provisioning" / "rules.yaml"] = to_yaml(
        provisioning_file(build_rules(AlertSettings())),
        """
Grafana-managed alert rules of thinkmeter (default thresholds): copy to /etc/grafana/provisioning/alerting/.
They query the datasource uid thinkmeter-clickhouse (dashboards/provisioning/datasource.yaml).
For other thresholds write a settings file and run `thinkmeter provision grafana --alert-settings FILE`,
or `thinkmeter alerts run` to evaluate the same rules without Grafana.
Generated by `python -m thinkmeter.dashboards.build` from alerts/rules.py.
""",
    )
    files[ALERTS_DIR / "provisioning" / "contact-points.yaml"] = to_yaml(
        contact_points_file(EXAMPLE_WEBHOOK_URL),
        """
Example contact point: a webhook receiving thinkmeter's alerts. Copy to /etc/grafana/provisioning/alerting/
with your URL. To route the rules to it, add a notification policy matching the label source=thinkmeter,
for example (note that a `policies:` file replaces the organization's whole policy tree):
  policies:
    - orgId: 1
      receiver: <your default contact point>
      routes:
        - receiver: thinkmeter-webhook
          object_matchers: [["source", "=", "thinkmeter"]]
Generated by `python -m thinkmeter.dashboards.build`.
""",
    )
    return files


def write() -> list[Path]:
    written = []
    for path, content in generated_files().items():
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_text(encoding="utf-8") != content:
            path.write_text(content, encoding="utf-8")
            written.append(path)
    return written


if __name__ == "__main__":
    for changed in write():
        print(f"wrote {changed}")
