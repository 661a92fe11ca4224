"""Write metric points into otel_metrics_gauge / otel_metrics_sum / otel_metrics_histogram.

Rows are encoded as the OTel Collector's ClickHouse exporter writes them (ns DateTime64(9) times,
attribute maps, service name taken from the resource), so dashboards read collector-fed and
thinkmeter-fed rows alike. Columns left out (schema URLs, exemplars, ...) take their empty defaults.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from thinkmeter._version import __version__
from thinkmeter.collectors.points import Gauge, Histogram, MetricPoint, Sum
from thinkmeter.schemas.tables import METRICS_GAUGE, METRICS_HISTOGRAM, METRICS_SUM, Table

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

SERVICE_NAME = "thinkmeter-collector"
SCOPE_NAME = "thinkmeter.collectors"

def default_resource() -> dict[str, str]:
    return {"service.name": SERVICE_NAME, "host.name": socket.gethostname()}


class MetricsTableWriter:
    """Inserts points, one INSERT per table that has rows."""

    def __init__(self, database: str = "default", resource: dict[str, str] | None = None) -> None:
        self.database = database
        self.resource = resource if resource is not None else default_resource()
        self.service_name = self.resource.get("service.name", "")
        self.scope_version = __version__

    def rows(self, points: Sequence[MetricPoint]) -> dict[Table, list[list[Any]]]:
        """{table: rows} in the column order of each table."""
        tables: dict[Table, list[list[Any]]] = {}
        for point in points:
            common = [
                self.resource,
                self.service_name,
                SCOPE_NAME,
                self.scope_version,
                point.name,
                point.description,
                point.unit,
                point.attributes,
            ]
            if isinstance(point, Gauge):
                # A gauge has no start time; the exporter stores the unset OTLP value, 0.
                row = [*common, 0, point.time_unix_nano, point.value, 0]
                tables.setdefault(METRICS_GAUGE, []).append(row)
            elif isinstance(point, Sum):
                row = [
                    *common,
                    point.start_time_unix_nano,
                    point.time_unix_nano,
                    point.value,
                    0,
                    int(point.temporality),
                    point.monotonic,
                ]
                tables.setdefault(METRICS_SUM, []).append(row)
            elif isinstance(point, Histogram):
                # Prometheus histograms carry no min or max: stored as 0, as the exporter does for unset values.
                row = [
                    *common,
                    point.start_time_unix_nano,
                    point.time_unix_nano,
                    point.count,
                    point.sum,
                    list(point.bucket_counts),
                    list(point.bounds),
                    0,
                    0.0,
                    0.0,
                    int(point.temporality),
                ]
                tables.setdefault(METRICS_HISTOGRAM, []).append(row)
        return tables

    def write(self, client: Client, points: Sequence[MetricPoint]) -> None:
        for table, rows in self.rows(points).items():
            client.insert(
                table.name,
                rows,
                database=self.database,
                column_names=table.column_names,
                column_type_names=table.column_types,
            )
