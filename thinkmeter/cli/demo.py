"""`thinkmeter demo`: a simulated reasoning workload from a mixed fleet, stored, checked against ground truth, reported."""

from __future__ import annotations

import argparse
import os
import statistics
from typing import TYPE_CHECKING

from thinkmeter.cli._options import integer, number

if TYPE_CHECKING:
    from thinkmeter.config import Settings
    from thinkmeter.demo import DemoResult, ProviderCheck


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="drive a simulated reasoning workload through the OpenAI, Anthropic, Gemini and Ollama SDKs into the store, then report",
    )
    parser.add_argument("--calls", type=integer(1, 1_000_000), default=1500, help="number of LLM calls, 1 to 1000000 (default 1500)")
    parser.add_argument("--concurrency", type=integer(1, 256), default=16, help="calls in flight at once, 1 to 256 (default 16)")
    parser.add_argument(
        "--time-scale",
        type=number(0, 10, above_low=True),
        default=0.005,
        help="simulated seconds -> wall seconds, up to 10 (default 0.005: 60 s of thinking plays in 0.3 s)",
    )
    parser.add_argument("--seed", type=integer(0, 2**32 - 1), default=7, help="traffic seed, 0 to 4294967295 (default 7)")
    parser.add_argument(
        "--graded-per-budget", type=integer(0, 100_000), default=20,
        help="graded tasks per thinking budget and class for the budget curve, 0 to 100000 (default 20; 0 skips the graded tasks)",
    )  # fmt: skip
    parser.add_argument(
        "--budget-calls", type=integer(0, 1_000_000), default=400,
        help="calls of a second pass under a budget policy, 0 to 1000000 (default 400; 0 skips it)",
    )  # fmt: skip
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    os.environ.setdefault("OTEL_SERVICE_NAME", "thinkmeter-demo")
    # anthropic 2.x traces its own calls; llm_calls would count those spans as second calls.
    os.environ.setdefault("ANTHROPIC_OPEN_TELEMETRY", "false")
    from thinkmeter import demo, reports
    from thinkmeter.budgets.demo import format_budget_pass, run_budget_pass
    from thinkmeter.cli.report import format_report
    from thinkmeter.config import Settings
    from thinkmeter.store import store_label, store_session

    settings = Settings.from_env()
    fleet = ", ".join(provider.name for provider in demo.PROVIDERS)
    print(f"thinkmeter demo: {args.calls} calls from a mixed fleet ({fleet}) against loopback simulators -> {store_label(settings)}")
    result = demo.run(settings, args.calls, args.concurrency, args.time_scale, args.seed, args.graded_per_budget)
    print(
        f"  {result.calls} calls in {result.seconds:.1f} s ({result.failed_calls} failed on purpose: rate limits,"
        f" server errors, dropped streams); {result.stored} spans stored"
    )
    verdict = "all match" if not result.mismatches else f"{len(result.mismatches)} MISMATCHES"
    print(f"  checked {result.checked} completed calls against the simulator's ground truth (tokens, cost): {verdict}")
    for provider in demo.PROVIDERS:
        if provider.name in result.by_provider:
            print(f"    {provider.name}: {_provider_line(result.by_provider[provider.name])}")
    for line in result.mismatches[:10]:
        print(f"    {line}")
    if result.ttfvt_errors_s:
        errors = sorted(abs(e) for e in result.ttfvt_errors_s)
        print(
            f"  time to first visible token vs simulator: median error {statistics.median(errors) * 1000:.1f} ms,"
            f" max {errors[-1] * 1000:.1f} ms over {len(errors)} streamed calls"
        )
    graded_mismatches = _graded(settings, result) if result.graded is not None else []
    if args.budget_calls:
        print()
        budget_pass = run_budget_pass(settings, args.budget_calls, args.concurrency, args.time_scale, args.seed + 1)
        print(format_budget_pass(budget_pass))
    with store_session(settings) as client:
        report = reports.spend_report(client, window_s=3600)
    print()
    print(format_report(report))
    print(
        "\nNext: `thinkmeter outliers` lists the runaway calls; `thinkmeter tasks` and `thinkmeter budget-curve"
        " --slo-p95-s S` the cost per solved task and the budget to use; `--format json` for machines."
    )
    return 0 if not result.mismatches and not graded_mismatches else 1


def _graded(settings: Settings, result: DemoResult) -> list[str]:
    """Print the graded tasks' figures (`thinkmeter tasks`, `thinkmeter budget-curve`) and their check."""
    from thinkmeter import demo_tasks
    from thinkmeter.cli.report import format_table
    from thinkmeter.cli.tasks import format_budget_curve
    from thinkmeter.task_reports import tasks_report

    graded = result.graded
    assert graded is not None
    curves, mismatches = demo_tasks.verify(settings, graded, result.window_s)
    verdict = "all match" if not mismatches else f"{len(mismatches)} MISMATCHES"
    print(
        f"  {len(graded.tasks)} graded tasks ({graded.calls} calls: thinking-budget curves, best-of-N in parallel,"
        f" a verifier in a second process); accuracy per budget and recommended budgets against the simulator's curves: {verdict}"
    )
    for line in demo_tasks.curve_lines(curves) + mismatches[:10]:
        print(line if line.startswith("    ") else f"    {line}")
    print("\nTasks per class (`thinkmeter tasks`)")
    print(format_table(tasks_report(settings, result.window_s)))
    print()
    print(format_budget_curve(curves, None))
    return mismatches


def _provider_line(check: ProviderCheck) -> str:
    status = "all match" if not check.mismatches else f"{check.mismatches} MISMATCHES"
    if not check.estimated:
        return f"{check.checked} calls, input, cache-read, output, reasoning, visible tokens and cost exact: {status}"
    off = check.estimated_reasoning / check.true_reasoning - 1 if check.true_reasoning else 0.0
    return (
        f"{check.checked} calls, input and output tokens exact, reasoning estimated ({check.estimated} calls,"
        f" {off:+.0%} against the truth in total): {status}"
    )
