"""`thinkmeter tasks` and `thinkmeter budget-curve`: cost per solved task, and accuracy against reasoning budget."""

from __future__ import annotations

import argparse
import json
from typing import Any

from thinkmeter.cli._options import number, window
from thinkmeter.cli.report import _json_default, format_table


def register(subparsers: argparse._SubParsersAction) -> None:
    tasks = subparsers.add_parser("tasks", help="per task class: tasks, accuracy, cost per task and per solved task")
    _common(tasks)
    tasks.set_defaults(func=run_tasks)
    curve = subparsers.add_parser(
        "budget-curve", help="per task class: accuracy, cost per solved task and p95 wall time by reasoning budget, and the budget to use"
    )
    _common(curve)
    curve.add_argument("--class", dest="task_class", help="only this task class")
    curve.add_argument("--slo-p95-s", type=number(0, 86400, above_low=True, unit=" s"), help="recommend only budgets whose p95 task wall time is at most this many seconds (up to 86400)")
    curve.set_defaults(func=run_budget_curve)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--window", type=window, default=window("7d"), help="look-back window, e.g. 24h, 7d, up to 3650d (default 7d)")
    parser.add_argument("--format", choices=("table", "json"), default="table")
    parser.add_argument(
        "--solved-score", type=number(-1e9, 1e9), default=0.5, help="a task graded with a score only is solved at this score or above (default 0.5)"
    )


def _settings() -> Any:
    from thinkmeter.config import Settings

    return Settings.from_env()


def run_tasks(args: argparse.Namespace) -> int:
    from thinkmeter.task_reports import tasks_report

    rows = tasks_report(_settings(), args.window, solved_score=args.solved_score)
    if args.format == "json":
        print(json.dumps(rows, default=_json_default, indent=2))
    else:
        print(f"Tasks in the last {args.window / 3600:g} h, per task class (accuracy and cost per solved task over graded tasks)")
        print(format_table(rows))
    return 0


def run_budget_curve(args: argparse.Namespace) -> int:
    from thinkmeter.task_reports import budget_curve

    curves = budget_curve(_settings(), args.window, task_class=args.task_class, slo_p95_s=args.slo_p95_s, solved_score=args.solved_score)
    if args.format == "json":
        print(json.dumps(curves, default=_json_default, indent=2))
        return 0
    print(format_budget_curve(curves, args.slo_p95_s))
    return 0


def format_budget_curve(curves: dict[str, dict[str, Any]], slo_p95_s: float | None) -> str:
    slo = f"p95 wall time <= {slo_p95_s:g} s" if slo_p95_s is not None else "no latency SLO"
    lines = [f"Accuracy by reasoning budget over graded tasks ({slo})"]
    if not curves:
        lines.append("  (no graded tasks)")
    for task_class, curve in curves.items():
        lines += ["", f"Task class {task_class or '(none)'}", format_table(curve["buckets"])]
        best = curve["recommended"]
        if best is None:
            lines.append("  recommended: none meets the SLO")
        else:
            cost = best["cost_per_solved_usd"]
            lines.append(
                f"  recommended: {best['budget_max_tokens']} tokens (accuracy {best['accuracy']:.3g}"
                + (f", ${cost:.4g} per solved task)" if cost is not None else ", cost unknown)")
            )
    return "\n".join(lines)
