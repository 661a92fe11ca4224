"""`thinkmeter provision grafana`: datasource, folder, dashboards, contact point and alert rules through
Grafana's HTTP API; running it twice changes nothing, `--dry-run` only reads."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from thinkmeter.cli._options import PORT


def register(subparsers: argparse._SubParsersAction) -> None:
    provision = subparsers.add_parser("provision", help="set up Grafana for thinkmeter")
    targets = provision.add_subparsers(dest="target", metavar="TARGET", required=True)
    grafana = targets.add_parser(
        "grafana",
        help="datasource, dashboards, alert rules and contact point, over Grafana's HTTP API",
        description="Creates or updates what differs, so running it again changes nothing. The Grafana "
        "server needs the grafana-clickhouse-datasource plugin; the ClickHouse options say where "
        "Grafana (not this machine) reaches the ClickHouse server that holds thinkmeter's tables.",
    )
    grafana.add_argument("--url", default=os.environ.get("GRAFANA_URL"), help="Grafana base URL, e.g. http://localhost:3000 (default $GRAFANA_URL)")
    grafana.add_argument("--token", default=os.environ.get("GRAFANA_TOKEN"), help="service-account token (default $GRAFANA_TOKEN); user:password also works")
    grafana.add_argument("--dry-run", action="store_true", help="show what would change, change nothing")
    grafana.add_argument("--clickhouse-host", help="default: localhost")
    grafana.add_argument("--clickhouse-port", type=PORT,
                         help="default: thinkmeter serve's port (8123) without THINKMETER_CLICKHOUSE_URL, else 9000")
    grafana.add_argument("--clickhouse-protocol", choices=("native", "http"),
                         help="default: http to thinkmeter serve without THINKMETER_CLICKHOUSE_URL, else native")
    grafana.add_argument("--clickhouse-user", help="default: serve's reader user thinkmeter_reader, or default for a server")
    grafana.add_argument("--clickhouse-password",
                         help="default: $THINKMETER_GRAFANA_CLICKHOUSE_PASSWORD, else serve's $THINKMETER_SERVE_PASSWORD")
    grafana.add_argument("--clickhouse-database", default="default")
    grafana.add_argument("--webhook-url", help="also create a webhook contact point and route the rules to it")
    grafana.add_argument("--alert-settings", type=Path, metavar="FILE", help="YAML/JSON thresholds for the alert rules")
    grafana.set_defaults(func=run_provision)


def run_provision(args: argparse.Namespace) -> int:
    from grafana_client import GrafanaApi
    from grafana_client.client import GrafanaException

    from thinkmeter.alerts.rules import AlertSettings
    from thinkmeter.dashboards.provision import provision

    if not args.url:
        raise ValueError("give the Grafana URL with --url or GRAFANA_URL")
    if not args.token:
        raise ValueError("give a Grafana service-account token with --token or GRAFANA_TOKEN")
    credential: str | tuple[str, str] = args.token
    if ":" in args.token and not args.token.startswith("glsa_"):
        user, _, password = args.token.partition(":")
        credential = (user, password)
    api = GrafanaApi.from_url(args.url, credential=credential)
    target = clickhouse_target(args)
    settings = AlertSettings.load(args.alert_settings) if args.alert_settings else AlertSettings()
    try:
        actions = provision(api, target, settings, webhook_url=args.webhook_url, dry_run=args.dry_run)
    except GrafanaException as error:
        raise ValueError(f"Grafana at {args.url} answered: {error}") from None
    width = max(len(action.kind) for action in actions)
    for action in actions:
        print(f"{action.status:<13} {action.kind:<{width}}  {action.name}")
    changed = sum(action.status != "unchanged" for action in actions)
    verb = "would change" if args.dry_run else "changed"
    print(f"{verb} {changed} of {len(actions)} resources" + (" (dry run)" if args.dry_run else ""))
    return 0


def clickhouse_target(args: argparse.Namespace) -> Any:
    """Where Grafana reads: the options given, else the configured ClickHouse server (native protocol),
    else `thinkmeter serve` for the data dir (HTTP, its port, its reader user)."""
    from thinkmeter.config import Settings
    from thinkmeter.dashboards.provision import ClickHouseTarget, serve_target

    settings = Settings.from_env()
    if settings.clickhouse_url:
        default = ClickHouseTarget(port=9000, protocol="native", username="default",
                                   password=os.environ.get("THINKMETER_GRAFANA_CLICKHOUSE_PASSWORD"))
    else:
        default = serve_target(settings.data_dir)
    return ClickHouseTarget(
        host=args.clickhouse_host or default.host,
        port=args.clickhouse_port or default.port,
        protocol=args.clickhouse_protocol or default.protocol,
        username=args.clickhouse_user or default.username,
        password=args.clickhouse_password or default.password,
        database=args.clickhouse_database,
    )
