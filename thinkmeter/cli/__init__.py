"""`thinkmeter` command line: each module in COMMANDS adds its subcommands with register(subparsers)."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from clickhouse_connect.driver.exceptions import Error as ClickHouseError

COMMANDS = ("demo", "report", "tasks", "serve", "schema", "collect", "alerts", "provision", "budgets")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="thinkmeter",
        description="Hidden reasoning tokens, cost and latency of LLM calls, stored in ClickHouse.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log what thinkmeter does")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"thinkmeter.cli.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except (ValueError, OSError) as error:
        print(f"thinkmeter {args.command}: {error}", file=sys.stderr)
        return 1
    except ClickHouseError as error:  # an unreachable or refusing server: its message, not a traceback
        print(f"thinkmeter {args.command}: ClickHouse: {error}", file=sys.stderr)
        return 1
