"""`thinkmeter schema apply|show`: create thinkmeter's tables in the configured store, or print their DDL."""

from __future__ import annotations

import argparse
import hashlib
import os

from thinkmeter.cli._options import integer
from thinkmeter.config import Settings
from thinkmeter.schemas.ddl import render, role_statements
from thinkmeter.store import apply_schema, embedded_store, open_client, store_label


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("schema", help="create or print the ClickHouse tables")
    actions = parser.add_subparsers(dest="schema_command", metavar="ACTION", required=True)
    apply_parser = actions.add_parser(
        "apply", help="create missing tables and views in the configured store, migrate changed ones (safe to re-run)"
    )
    show_parser = actions.add_parser("show", help="print the DDL statements")
    for sub in (apply_parser, show_parser):
        sub.add_argument("--cluster", metavar="NAME", help="ON CLUSTER NAME with Replicated* engines")
        sub.add_argument("--database", metavar="DB", default="default", help="target database (default: default)")
        sub.add_argument("--ttl-days", metavar="N", type=integer(1, 36500), help="drop raw rows older than N days, 1 to 36500 (default: keep)")
    apply_parser.set_defaults(func=run_apply)
    show_parser.set_defaults(func=run_show)
    roles_parser = actions.add_parser(
        "roles",
        help="print (or --apply) least-privilege roles: thinkmeter_writer (insert only), thinkmeter_reader (select only)",
        description=(
            "For a ClickHouse server (the embedded store has no access control). With THINKMETER_WRITER_PASSWORD "
            "and/or THINKMETER_READER_PASSWORD set, also creates the users thinkmeter_ingest / thinkmeter_grafana "
            "(only the SHA-256 of each password is printed or sent)."
        ),
    )
    roles_parser.add_argument("--cluster", metavar="NAME", help="ON CLUSTER NAME")
    roles_parser.add_argument("--database", metavar="DB", default="default", help="database of the tables (default: default)")
    roles_parser.add_argument("--apply", action="store_true", help="run them on THINKMETER_CLICKHOUSE_URL (an admin user)")
    roles_parser.set_defaults(func=run_roles)


def run_show(args: argparse.Namespace) -> int:
    for name, statement in render(args.cluster, args.database, args.ttl_days):
        print(f"-- {name}\n{statement};\n")
    return 0


def run_roles(args: argparse.Namespace) -> int:
    hashes = {
        name: hashlib.sha256(os.environ[var].encode()).hexdigest() if os.environ.get(var) else None
        for name, var in (("writer_password_sha256", "THINKMETER_WRITER_PASSWORD"), ("reader_password_sha256", "THINKMETER_READER_PASSWORD"))
    }
    statements = role_statements(args.database, args.cluster, **hashes)
    if not args.apply:
        for statement in statements:
            print(f"{statement};")
        return 0
    settings = Settings.from_env()
    if not settings.clickhouse_url:
        raise ValueError("roles need a ClickHouse server (chDB has no users or roles): set THINKMETER_CLICKHOUSE_URL to an admin user")
    client = open_client(settings)
    try:
        for statement in statements:
            client.command(statement)
    finally:
        client.close()
    print(f"{len(statements)} statements applied to the {store_label(settings)}")
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
        from thinkmeter.serve.discovery import find_serve

        running = find_serve(settings.data_dir)
        if running is not None:
            raise ValueError(
                f"thinkmeter serve (pid {running.pid}) owns this store and applied the schema when it started; "
                "stop it to apply the schema by hand (e.g. --ttl-days), then start it again"
            )
        with embedded_store(settings) as client:
            actions = apply_schema(client, None, args.database, args.ttl_days)
    for action in actions:
        print(f"  {action.name}: {action.status}")
    return 0
