"""`thinkmeter report` and `thinkmeter outliers`: spend, hidden reasoning and latency from llm_calls."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from thinkmeter.cli._options import integer, number, window


def register(subparsers: argparse._SubParsersAction) -> None:
    report = subparsers.add_parser("report", help="spend, tokens, hidden-reasoning share and latency percentiles")
    _common(report)
    report.add_argument("--html", type=Path, metavar="FILE",
                        help="also write the built-in view's charts over the window as one self-contained HTML file")
    report.set_defaults(func=run_report)
    outliers = subparsers.add_parser("outliers", help="calls whose reasoning exceeds k x the p-quantile of their task class")
    _common(outliers)
    outliers.add_argument("-k", type=number(1, 1000), default=2.0, help="multiple of the class quantile, 1 to 1000 (default 2)")
    outliers.add_argument(
        "--quantile", type=number(0, 1, above_low=True, below_high=True), default=0.95, help="class quantile, between 0 and 1 (default 0.95)"
    )
    outliers.add_argument("--limit", type=integer(1, 10_000), default=50, help="calls listed, 1 to 10000 (default 50)")
    outliers.set_defaults(func=run_outliers)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--window", type=window, default=window("24h"), help="look-back window, e.g. 1h, 24h, 7d, up to 3650d (default 24h)")
    parser.add_argument("--format", choices=("table", "json"), default="table")


def run_report(args: argparse.Namespace) -> int:
    from thinkmeter import reports

    with _client() as client:
        result = reports.spend_report(client, args.window)
        if args.html:
            _write_html(client, args.window, args.html)
    print(json.dumps(result, default=_json_default, indent=2) if args.format == "json" else format_report(result))
    return 0


def _write_html(client: Any, window_s: int, path: Path) -> None:
    from thinkmeter.config import Settings
    from thinkmeter.store import store_label
    from thinkmeter.ui.page import file_page
    from thinkmeter.ui.view import time_range

    end = datetime.now(timezone.utc)
    page = file_page(lambda sql: list(client.query(sql).named_results()), time_range(start=end - timedelta(seconds=window_s), end=end),
                     store_label(Settings.from_env()))
    path.write_text(page, encoding="utf-8")
    print(f"wrote {path} ({len(page) // 1024} KiB)", file=sys.stderr)


def run_outliers(args: argparse.Namespace) -> int:
    from thinkmeter import reports

    with _client() as client:
        rows = reports.outliers(client, args.window, k=args.k, quantile=args.quantile, limit=args.limit)
    if args.format == "json":
        print(json.dumps(rows, default=_json_default, indent=2))
    else:
        print(f"Calls above {args.k:g} x p{args.quantile * 100:g} reasoning tokens of their task class: {len(rows)}")
        print(format_table(rows))
    return 0


def _client() -> Any:
    from thinkmeter.config import Settings
    from thinkmeter.store import store_session

    return store_session(Settings.from_env())


def _json_default(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else str(value)


def format_report(report: dict[str, Any]) -> str:
    totals = report["totals"]
    lines = [f"LLM calls in the last {report['window_s'] / 3600:g} h", ""]
    lines += [f"  {key:<26} {_cell(value)}" for key, value in totals.items()]
    for column, rows in report["by"].items():
        lines += ["", f"By {column.replace('_', ' ')}", format_table(rows)]
    lost = report["answer_lost"]
    lines += [
        "",
        f"Answers lost to reasoning (output cap hit while thinking, nothing visible, billed): {sum(r['answers_lost'] for r in lost)} calls",
        format_table(lost),
    ]
    lines += ["", "Latency of streamed calls: time to first token (ttft) vs first visible token (ttfvt)", format_table(report["latency"])]
    budgets = report["budgets"]
    lines += [
        "",
        f"Budgets: {budgets['calls_with_injected_caps']} calls had caps injected; cuts and refusals by policy line "
        "(would_*: observe mode; est_saved_usd from observe-mode runs of the line)",
        format_table(budgets["by_line"]),
    ]
    return "\n".join(lines)


def format_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "  (none)"
    columns = list(rows[0])
    cells = [[_cell(row[c]) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    header = "  ".join(c.ljust(w) for c, w in zip(columns, widths))
    body = ["  ".join(v.rjust(w) if _numeric(v) else v.ljust(w) for v, w in zip(r, widths)) for r in cells]
    return "\n".join(["  " + header] + ["  " + line for line in body])


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return str(value) if value != "" else "(none)"


def _numeric(text: str) -> bool:
    return text.replace(".", "", 1).replace("-", "", 1).replace("e", "", 1).isdigit()
