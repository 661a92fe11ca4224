"""`thinkmeter schema apply|show`: create thinkmeter's tables in the configured store, or print their DDL."""

from __future__ import annotations

import argparse

from thinkmeter.config import Settings
from thinkmeter.schemas.ddl import render
from thinkmeter.store import apply_schema, embedded_store, open_client, store_label


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("schema", help="create or print the ClickHouse tables")
    actions = parser.add_subparsers(dest="schema_command", metavar="ACTION", required=True)
    apply_parser = actions.add_parser(
        "apply", help="create missing tables and views in the configured store (safe to re-run)"
    )
    show_parser = actions.add_parser("show", help="print the DDL statements")
    for sub in (apply_parser, show_parser):
        sub.add_argument("--cluster", metavar="NAME", help="ON CLUSTER NAME with Replicated* engines")
        sub.add_argument("--database", metavar="DB", default="default", help="target database (default: default)")
        sub.add_argument("--ttl-days", metavar="N", type=int, help="drop raw rows older than N days (default: keep)")
    apply_parser.set_defaults(func=run_apply)
    show_parser.set_defaults(func=run_show)


def run_show(args: argparse.Namespace) -> int:
    for name, statement in render(args.cluster, args.database, args.ttl_days):
        print(f"-- {name}\n{statement};\n")
    return 0


def run_apply(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    if args.cluster and not settings.clickhouse_url:
        raise ValueError("--cluster needs a ClickHouse server: set THINKMETER_CLICKHOUSE_URL")
    print(f"applying schema to the {store_label(settings)}, database {args.database}")
    if settings.clickhouse_url:
        client = open_client(settings)
        try:
            actions = apply_schema(client, args.cluster, args.database, args.ttl_days)
        finally:
            client.close()
    else:
        with embedded_store(settings) as client:
            actions = apply_schema(client, None, args.database, args.ttl_days)
    for action in actions:
        print(f"  {action.name}: {action.status}")
    return 0
