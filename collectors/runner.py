"""One background thread that samples the GPU and engine collectors, publishes their latest snapshots
for request context, and writes their metric points to the store.

Nothing here raises into the caller: an engine that does not answer is logged when it goes down and
when it comes back, recorded as `thinkmeter.engine.up = 0`, and asked again next interval; a store
that is busy or down keeps the points (up to a bound) for the next write.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence

from thinkmeter.collectors import context, metrics
from thinkmeter.collectors.engines import EngineScraper, ScrapeError
from thinkmeter.collectors.gpu import GpuCollector
from thinkmeter.collectors.metrics_table import MetricsTableWriter
from thinkmeter.collectors.points import MetricPoint
from thinkmeter.config import Settings

logger = logging.getLogger("thinkmeter.collectors")

DEFAULT_INTERVAL_S = 5.0
MAX_PENDING_POINTS = 50_000
# A snapshot stays usable for request context for this many intervals after it was taken.
_STALE_AFTER_INTERVALS = 3
_STORE_LOCK_TIMEOUT_S = 2.0

Sink = Callable[[Sequence[MetricPoint]], None]
EngineSpec = str | Mapping[str, object]  # a URL, or {"url": ..., "engine": ..., "model": ..., "kv_layout": ...}


class StoreSink:
    """Writes points into the configured store's otel_metrics_* tables: a ClickHouse server directly,
    the embedded store as segments (`thinkmeter serve` ingests them; this process never opens it)."""

    def __init__(self, settings: Settings, resource: dict[str, str] | None = None) -> None:
        from thinkmeter.segments import SegmentWriter
        from thinkmeter.store import store_database

        self.settings = settings
        self.writer = MetricsTableWriter(database=store_database(settings), resource=resource)
        self.segments = None if settings.clickhouse_url else SegmentWriter(settings.segments_dir, settings.segments_max_bytes)

    def __call__(self, points: Sequence[MetricPoint]) -> None:
        if self.segments is not None:
            self.writer.write(self.segments, points)
            return
        from thinkmeter.store import store_session

        with store_session(self.settings, timeout_s=_STORE_LOCK_TIMEOUT_S) as client:
            self.writer.write(client, points)


def engine_scraper(spec: EngineSpec, interval_s: float = DEFAULT_INTERVAL_S) -> EngineScraper:
    """A scraper from "http://host:port" or {"url": ..., "engine": ..., "model": ..., "kv_layout": ...}."""
    if isinstance(spec, str):
        return EngineScraper(spec, interval_s=interval_s)
    unknown = set(spec) - {"url", "engine", "model", "kv_layout"}
    if "url" not in spec or unknown:
        raise ValueError(f"engine entry {dict(spec)!r}: give url and optionally engine, model and kv_layout")
    engine, model, layout = spec.get("engine"), spec.get("model"), spec.get("kv_layout")
    return EngineScraper(
        str(spec["url"]),
        engine=None if engine is None else str(engine),
        model=None if model is None else str(model),
        interval_s=interval_s,
        kv_layout=None if layout is None else str(layout),
    )


class CollectorRunner:
    """Samples each collector on its own interval in a daemon thread; `stop()` flushes."""

    def __init__(
        self,
        engines: Iterable[EngineScraper] = (),
        gpu: GpuCollector | None = None,
        sink: Sink | None = None,
    ) -> None:
        self.engines = list(engines)
        self.gpu = gpu
        self.sink = sink
        self._pending: deque[MetricPoint] = deque(maxlen=MAX_PENDING_POINTS)  # the oldest go first
        self._engine_up: dict[EngineScraper, bool] = {}  # answered its last scrape
        self._engine_attributes: dict[EngineScraper, dict[str, str]] = {}  # of its last snapshot
        self._logged: set[str] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._gpu_ready: bool | None = None  # None until NVML was tried

    # --- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the GPU collector (if any) and the sampling thread."""
        if self._thread is not None:
            return
        self._start_gpu()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="thinkmeter-collectors", daemon=True)
        self._thread.start()

    def is_running(self) -> bool:
        """True while the thread samples something (it ends when no collector is left, e.g. no GPU)."""
        return self._thread is not None and self._thread.is_alive()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop sampling, write what is pending, release NVML and forget the published snapshots."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None
        self.flush()
        if self._gpu_ready and self.gpu is not None:
            self.gpu.close()
            context.forget_gpu()
        self._gpu_ready = None
        for scraper in self.engines:
            context.forget_engine(scraper.server_address, scraper.server_port)

    def flush(self) -> bool:
        """Write pending points; False (points kept) when the store could not take them."""
        if self.sink is None or not self._pending:
            self._pending.clear()
            return True
        points = list(self._pending)
        try:
            self.sink(points)
        except Exception as exc:  # busy or unreachable store, or a schema problem: keep the points
            self._log_once(
                "store",
                logging.WARNING,
                "thinkmeter: cannot write collector metrics yet (%s); keeping up to %d points",
                exc,
                self._pending.maxlen,
            )
            return False
        for _ in points:
            self._pending.popleft()
        self._logged.discard("store")
        return True

    # --- sampling ----------------------------------------------------------------------------------

    def collect_once(self) -> list[MetricPoint]:
        """Sample every collector now and queue the points for the next flush (one-shot use and tests)."""
        points = [point for scraper in self.engines for point in self._scrape(scraper)]
        if self._start_gpu():
            points.extend(self._sample_gpu())
        self._pending.extend(points)
        return points

    def _run(self) -> None:
        due: dict[object, float] = {scraper: 0.0 for scraper in self.engines}
        if self._gpu_ready:
            due[self.gpu] = 0.0
        while not self._stop.is_set() and due:
            now = time.monotonic()
            for collector, when in list(due.items()):
                if when > now:
                    continue
                if isinstance(collector, EngineScraper):
                    self._pending.extend(self._scrape(collector))
                else:
                    self._pending.extend(self._sample_gpu())
                due[collector] = now + collector.interval_s
            self.flush()
            self._stop.wait(max(0.0, min(due.values()) - time.monotonic()))

    def _start_gpu(self) -> bool:
        if self._gpu_ready is None:
            self._gpu_ready = self.gpu is not None and self.gpu.start()
        return self._gpu_ready

    def _scrape(self, scraper: EngineScraper) -> list[MetricPoint]:
        was_up = self._engine_up.get(scraper)
        try:
            snapshot = scraper.scrape()
        except ScrapeError as exc:
            self._engine_up[scraper] = False
            context.forget_engine(scraper.server_address, scraper.server_port)
            if was_up is not False:
                logger.warning(
                    "thinkmeter: engine at %s is not answering: %s; retrying every %gs",
                    scraper.base_url,
                    exc,
                    scraper.interval_s,
                )
            attributes = self._engine_attributes.get(scraper) or metrics.engine_attributes(
                scraper.engine, scraper.server_address, scraper.server_port, scraper.model
            )
            return metrics.engine_down_points(attributes, time.time_ns())
        except Exception:
            self._log_once(
                f"engine-bug:{scraper.base_url}",
                logging.ERROR,
                "thinkmeter: scraping %s failed",
                scraper.base_url,
                exc_info=True,
            )
            return []
        self._engine_up[scraper] = True
        if was_up is False:
            logger.warning("thinkmeter: engine at %s is answering again", scraper.base_url)
        context.publish_engine(snapshot, max_age_s=_STALE_AFTER_INTERVALS * scraper.interval_s)
        points = metrics.engine_points(snapshot)
        self._engine_attributes[scraper] = points[0].attributes  # the up point carries the series' attributes
        return points

    def _sample_gpu(self) -> list[MetricPoint]:
        assert self.gpu is not None
        try:
            snapshot = self.gpu.sample()
        except Exception:
            self._log_once("gpu-bug", logging.ERROR, "thinkmeter: sampling the GPUs failed", exc_info=True)
            return []
        context.publish_gpu(snapshot, max_age_s=_STALE_AFTER_INTERVALS * self.gpu.interval_s)
        return metrics.gpu_points(snapshot)

    def _log_once(self, key: str, level: int, message: str, *args: object, exc_info: bool = False) -> None:
        if key not in self._logged:
            self._logged.add(key)
            logger.log(level, message, *args, exc_info=exc_info)


def start_collectors(
    settings: Settings | None,
    collect_gpu: bool = False,
    engines: Iterable[EngineSpec] = (),
    interval_s: float = DEFAULT_INTERVAL_S,
) -> CollectorRunner:
    """Start collectors in this process (what `thinkmeter.instrument(collect_gpu=..., engines=...)` does).

    settings None: snapshots feed request context only and nothing is written.
    """
    runner = CollectorRunner(
        engines=[engine_scraper(spec, interval_s) for spec in engines],
        gpu=GpuCollector(interval_s) if collect_gpu else None,
        sink=StoreSink(settings) if settings is not None else None,
    )
    runner.start()
    return runner
