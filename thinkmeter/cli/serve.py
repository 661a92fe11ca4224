"""`thinkmeter serve`: the long-running process that owns the embedded store (see thinkmeter.serve)."""

from __future__ import annotations

import argparse
import os


def register(subparsers: argparse._SubParsersAction) -> None:
    from thinkmeter.cli.alerts import add_alert_options

    serve = subparsers.add_parser(
        "serve",
        help="own the embedded store: ingest the applications' segments, answer ClickHouse's HTTP interface (read-only)",
        description=(
            "Ingests the segments applications write under the data dir (THINKMETER_DATA_DIR) in large batches, "
            "answers ClickHouse's HTTP interface read-only on --host/--port (for Grafana, clickhouse-connect, "
            "`thinkmeter report`), publishes each tenant's spend for budget windows (<data_dir>/tenant-windows.json), "
            "optionally runs the collectors and the alert evaluator. Binding beyond loopback "
            "needs a reader password in THINKMETER_SERVE_PASSWORD. SIGTERM: finishes the batch and exits 0."
        ),
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8123, help="port to listen on (default 8123; 0 picks a free one)")
    serve.add_argument("--ingest-interval", type=float, default=1.0, metavar="S", help="seconds between segment ingests (default 1)")
    serve.add_argument("--engine", action="append", default=[], metavar="URL", help="scrape this inference engine's /metrics (repeatable)")
    serve.add_argument("--gpu", action="store_true", help="sample this host's NVIDIA GPUs (NVML)")
    serve.add_argument("--collect-interval", type=float, default=5.0, metavar="S", help="seconds between collector samples (default 5)")
    serve.add_argument("--alerts", action="store_true", help="evaluate the alert rules (thinkmeter alerts) inside serve")
    serve.add_argument("--alerts-interval", type=float, default=60.0, metavar="S", help="seconds between alert evaluations (default 60)")
    serve.add_argument(
        "--budgets", metavar="FILE", help="the budget policy (default THINKMETER_BUDGETS): its tenant_window sets the windows serve publishes"
    )
    add_alert_options(serve)
    serve.set_defaults(func=run_serve)


def run_serve(args: argparse.Namespace) -> int:
    from thinkmeter.cli.alerts import alert_settings_and_notifiers
    from thinkmeter.config import Settings
    from thinkmeter.serve.discovery import PASSWORD_ENV
    from thinkmeter.serve.server import Serve, ServeOptions

    alert_settings, notifiers = alert_settings_and_notifiers(args)
    options = ServeOptions(
        host=args.host,
        port=args.port,
        password=os.environ.get(PASSWORD_ENV) or None,
        ingest_interval_s=args.ingest_interval,
        engines=args.engine,
        gpu=args.gpu,
        collect_interval_s=args.collect_interval,
        alerts=args.alerts,
        alerts_interval_s=args.alerts_interval,
        alert_settings=alert_settings,
        notifiers=notifiers,
    )
    settings = Settings.from_env(budgets=args.budgets)
    if settings.clickhouse_url:
        raise ValueError("THINKMETER_CLICKHOUSE_URL is set: applications write to that server, there is no embedded store to serve")
    return Serve(settings, options).run()
