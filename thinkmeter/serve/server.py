"""The serve process: owns the embedded store, ingests segments, runs collectors and alerts, answers HTTP.

Start-up: refuse a non-loopback bind without a password; refuse a second serve for the data dir; take
the store lock (waiting for a reader that has it); apply the schema; ingest what is pending; listen;
publish serve.json. SIGTERM/SIGINT: stop listening, let each job finish its run, ingest what is
pending (the final batch), remove serve.json, release the store, exit 0.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import signal
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from thinkmeter.config import Settings
from thinkmeter.segments import ingest_segments
from thinkmeter.serve import discovery
from thinkmeter.serve.http import ReadOnlyStore, ServeContext, ServeHTTPServer
from thinkmeter.serve.routes import extra_routes
from thinkmeter.serve.scheduler import Scheduler
from thinkmeter.store import embedded_store, ensure_schema, open_client

log = logging.getLogger("thinkmeter.serve")

_STORE_WAIT_S = 60.0


@dataclass
class ServeOptions:
    host: str = "127.0.0.1"
    port: int = 8123
    password: str | None = None  # required when host is not loopback
    ingest_interval_s: float = 1.0
    engines: Sequence[Any] = ()  # URLs or {"url", "engine", "model"}
    gpu: bool = False
    collect_interval_s: float = 5.0
    alerts: bool = False
    alerts_interval_s: float = 60.0
    alert_settings: Any = None  # thinkmeter.alerts.rules.AlertSettings
    notifiers: list[Any] = field(default_factory=list)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Serve:
    def __init__(self, settings: Settings, options: ServeOptions):
        if not is_loopback(options.host) and not options.password:
            raise ValueError(
                f"serve binds to {options.host}, beyond this machine: set a reader password "
                f"({discovery.PASSWORD_ENV}) or bind to 127.0.0.1"
            )
        running = discovery.find_serve(settings.data_dir)
        if running is not None:
            raise ValueError(f"thinkmeter serve already runs for {settings.data_dir} (pid {running.pid}, {running.url})")
        self.settings = settings
        self.options = options
        from thinkmeter.budgets.windows import published_window_s

        self.tenant_window_s = published_window_s(settings.budgets)  # a bad budget policy stops serve here
        self.scheduler = Scheduler()
        self.stop_event = threading.Event()
        self.ingested_rows = 0
        self._clients: list[Any] = []
        self._collector_runner: Any = None

    def run(self) -> int:
        previous = {sig: signal.signal(sig, lambda *_: self.stop_event.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            with embedded_store(self.settings, _STORE_WAIT_S) as client:
                self._serve(client)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return 0

    def _serve(self, client: Any) -> None:
        ensure_schema(client, self.settings)
        self._ingest(client)  # what waited while no serve ran
        version = str(client.command("SELECT version()"))
        context = ServeContext(ReadOnlyStore(self.settings.chdb_dir, version), self.settings.data_dir, self.settings)
        httpd = ServeHTTPServer((self.options.host, self.options.port), context, extra_routes(), self.options.password)
        address = discovery.ServeAddress(self.options.host, httpd.server_address[1], os.getpid())
        try:
            self.add_jobs(client)
            self.scheduler.start()
            httpd.serve_in_thread()
            discovery.advertise(self.settings.data_dir, address)
            log.warning(
                "thinkmeter serve: listening on %s (ClickHouse HTTP interface, read-only); store %s; ingesting %s every %gs",
                address.url if is_loopback(address.host) else f"http://{address.host}:{address.port}",
                self.settings.chdb_dir,
                self.settings.segments_dir,
                self.options.ingest_interval_s,
            )
            self.stop_event.wait()
            log.warning("thinkmeter serve: stopping")
        finally:
            httpd.shutdown()
            httpd.server_close()
            self.scheduler.stop()
            if self._collector_runner is not None:
                self._collector_runner.stop()  # writes what it holds, releases NVML
            discovery.withdraw(self.settings.data_dir, os.getpid())
            for job_client in self._clients:
                with contextlib.suppress(Exception):
                    job_client.close()

    # ---- jobs

    def add_jobs(self, client: Any) -> None:
        """serve's own periodic work; each job gets its own engine handle."""
        self.scheduler.add("ingest", self.options.ingest_interval_s, lambda: self._ingest(client), final=True)
        self._add_tenant_windows()
        if self.options.engines or self.options.gpu:
            self._add_collectors()
        if self.options.alerts:
            self._add_alerts()

    def _job_client(self) -> Any:
        job_client = open_client(self.settings)
        self._clients.append(job_client)
        return job_client

    def _ingest(self, client: Any) -> None:
        started = time.perf_counter()
        rows = ingest_segments(client, self.settings.segments_dir)
        if rows:
            self.ingested_rows += rows
            seconds = time.perf_counter() - started
            log.info("thinkmeter serve: ingested %d rows in %.3f s (%.0f rows/s)", rows, seconds, rows / max(seconds, 1e-9))

    def _add_tenant_windows(self) -> None:
        """Each tenant's spend and reasoning in the current budget window, for the applications to read
        (thinkmeter/budgets/windows.py); the window length comes from the budget policy, if serve has one."""
        from thinkmeter.budgets.windows import TenantWindowPublisher

        job_client = self._job_client()
        publisher = TenantWindowPublisher(
            self.settings.data_dir,
            self.tenant_window_s,
            lambda sql, parameters: list(job_client.query(sql, parameters=parameters).named_results()),
        )
        self.scheduler.add(publisher.name, publisher.interval_s, publisher)

    def _add_collectors(self) -> None:
        from thinkmeter.collectors.gpu import GpuCollector
        from thinkmeter.collectors.metrics_table import MetricsTableWriter
        from thinkmeter.collectors.runner import CollectorRunner, engine_scraper

        job_client = self._job_client()
        writer = MetricsTableWriter()
        interval = self.options.collect_interval_s
        runner = CollectorRunner(
            engines=[engine_scraper(spec, interval) for spec in self.options.engines],
            gpu=GpuCollector(interval) if self.options.gpu else None,
            sink=lambda points: writer.write(job_client, points),
        )

        def collect() -> None:
            runner.collect_once()
            runner.flush()

        self.scheduler.add("collectors", interval, collect)
        self._collector_runner = runner

    def _add_alerts(self) -> None:
        from thinkmeter.alerts.evaluator import Evaluator
        from thinkmeter.alerts.notify import notify_all
        from thinkmeter.alerts.rules import AlertSettings, build_rules
        from thinkmeter.cli.alerts import log_transitions

        job_client = self._job_client()
        evaluator = Evaluator(build_rules(self.options.alert_settings or AlertSettings()), database="default")

        def evaluate() -> None:
            evaluation = evaluator.evaluate(job_client)
            log_transitions(evaluation)
            notify_all(self.options.notifiers, evaluation)

        self.scheduler.add("alerts", self.options.alerts_interval_s, evaluate)

