"""Metric points as the collectors produce them, shaped like OTLP data points.

Each kind maps onto one table of the OTel Collector ClickHouse exporter: Gauge -> otel_metrics_gauge,
Sum -> otel_metrics_sum, Histogram -> otel_metrics_histogram. Times are Unix epoch nanoseconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class Temporality(IntEnum):
    """OTLP AggregationTemporality, as stored in the AggregationTemporality column."""

    DELTA = 1
    CUMULATIVE = 2


@dataclass(frozen=True)
class Gauge:
    name: str
    unit: str
    description: str
    attributes: dict[str, str]
    time_unix_nano: int
    value: float


@dataclass(frozen=True)
class Sum:
    name: str
    unit: str
    description: str
    attributes: dict[str, str]
    start_time_unix_nano: int
    time_unix_nano: int
    value: float
    monotonic: bool
    temporality: Temporality


@dataclass(frozen=True)
class Histogram:
    """Explicit-bucket histogram: len(bucket_counts) == len(bounds) + 1, the last one counting > bounds[-1]."""

    name: str
    unit: str
    description: str
    attributes: dict[str, str]
    start_time_unix_nano: int
    time_unix_nano: int
    bounds: tuple[float, ...]
    bucket_counts: tuple[int, ...]
    count: int
    sum: float
    temporality: Temporality


MetricPoint = Gauge | Sum | Histogram
