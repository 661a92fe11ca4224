"""`thinkmeter budgets check FILE`: validate a budget policy and print what it does."""

from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("budgets", help="budget policies: caps per task class, tenant windows")
    actions = parser.add_subparsers(dest="budgets_command", metavar="ACTION", required=True)
    check = actions.add_parser(
        "check",
        help="validate a policy file (YAML or JSON) and print the effective policy",
        description="Exit 0 and print what each task class injects and cuts, or exit 1 naming the file, line and field at fault.",
    )
    check.add_argument("file", help="the policy file, e.g. budgets.yaml")
    check.set_defaults(func=run_check)


def run_check(args: argparse.Namespace) -> int:
    from thinkmeter.budgets.policy import PolicyError, describe, load_policy

    try:
        loaded = load_policy(args.file)
    except PolicyError as error:
        print(f"thinkmeter budgets check: {error}", file=sys.stderr)
        return 1
    print(describe(loaded))
    return 0
