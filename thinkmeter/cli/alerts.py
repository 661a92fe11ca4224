"""`thinkmeter alerts run` (daemon) and `thinkmeter alerts check` (one evaluation, exit code for cron/CI):
the Grafana alert rules evaluated against the store, events in thinkmeter_alert_events, webhooks notified."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from thinkmeter.cli._options import INTERVAL_S

log = logging.getLogger("thinkmeter.alerts")

EXIT_FIRING = 3


def register(subparsers: argparse._SubParsersAction) -> None:
    alerts = subparsers.add_parser("alerts", help="evaluate thinkmeter's alert rules without Grafana")
    commands = alerts.add_subparsers(dest="alerts_command", metavar="COMMAND", required=True)
    run = commands.add_parser("run", help="evaluate the rules every --interval seconds until SIGTERM or Ctrl-C")
    add_alert_options(run)
    run.add_argument("--interval", type=INTERVAL_S, default=60.0, metavar="S", help="seconds between evaluations, up to 86400 (default 60)")
    run.set_defaults(func=run_daemon)
    check = commands.add_parser(
        "check",
        help="evaluate once: exit 0 when nothing fires, 3 when alerts fire, 1 on errors",
        description="Evaluates every rule once, records and notifies what started or resolved, prints "
        "what fires. Exit status: 0 nothing fires, 3 at least one alert fires, 1 a rule or the store failed.",
    )
    add_alert_options(check)
    check.set_defaults(func=run_check)


def add_alert_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--settings", type=Path, metavar="FILE", help="YAML/JSON alert thresholds (see AlertSettings)")
    parser.add_argument("--webhook", action="append", default=[], metavar="URL", help="POST generic JSON here (repeatable)")
    parser.add_argument("--slack", action="append", default=[], metavar="URL", help="Slack-compatible incoming webhook (repeatable)")
    parser.add_argument("--alertmanager", action="append", default=[], metavar="URL", help="Alertmanager base URL, API v2 (repeatable)")


def alert_settings_and_notifiers(args: argparse.Namespace) -> tuple[Any, list[Any]]:
    """The thresholds and receivers the options of `add_alert_options` name (shared with `thinkmeter serve --alerts`)."""
    from thinkmeter.alerts.notify import Notifier
    from thinkmeter.alerts.rules import AlertSettings

    alert_settings = AlertSettings.load(args.settings) if args.settings else AlertSettings()
    notifiers = [
        *(Notifier("webhook", url) for url in args.webhook),
        *(Notifier("slack", url) for url in args.slack),
        *(Notifier("alertmanager", url) for url in args.alertmanager),
    ]
    return alert_settings, notifiers


def log_transitions(evaluation: Any) -> None:
    for alert in evaluation.started:
        log.warning("FIRING   %s: %s", alert.rule_uid, alert.summary)
    for alert in evaluation.resolved:
        log.warning("RESOLVED %s: %s", alert.rule_uid, alert.summary)


def _setup(args: argparse.Namespace) -> tuple[Any, Any, list[Any]]:
    from thinkmeter.alerts.evaluator import Evaluator
    from thinkmeter.alerts.rules import build_rules
    from thinkmeter.config import Settings
    from thinkmeter.store import store_database

    settings = Settings.from_env()
    alert_settings, notifiers = alert_settings_and_notifiers(args)
    return settings, Evaluator(build_rules(alert_settings), database=store_database(settings)), notifiers


def _evaluate_once(settings: Any, evaluator: Any, notifiers: list[Any]) -> Any:
    from thinkmeter.alerts.notify import notify_all
    from thinkmeter.store import store_session

    with store_session(settings) as client:
        evaluation = evaluator.evaluate(client)
    # Notify after the store is released: receivers may be slow, other processes may need the store.
    notify_all(notifiers, evaluation)
    return evaluation


def run_check(args: argparse.Namespace) -> int:
    settings, evaluator, notifiers = _setup(args)
    evaluation = _evaluate_once(settings, evaluator, notifiers)
    for alert in evaluation.firing:
        print(f"FIRING  {alert.severity:<8} {alert.rule_uid}  {alert.summary}")
    for uid, error in evaluation.errors.items():
        print(f"ERROR   rule {uid}: {error}", file=sys.stderr)
    if evaluation.firing:
        return EXIT_FIRING
    if evaluation.errors:
        return 1
    print(f"OK      no alerts firing ({len(evaluator.rules)} rules)")
    return 0


def run_daemon(args: argparse.Namespace) -> int:
    from thinkmeter.store import StoreBusy

    if args.interval <= 0:
        raise ValueError(f"--interval must be a positive number of seconds, got {args.interval:g}")
    settings, evaluator, notifiers = _setup(args)
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
    log.warning("thinkmeter alerts: evaluating %d rules every %gs", len(evaluator.rules), args.interval)
    try:
        while not stop.is_set():
            try:
                evaluation = _evaluate_once(settings, evaluator, notifiers)
            except StoreBusy as busy:
                log.warning("thinkmeter alerts: store busy, evaluating next round: %s", busy)
            except Exception as error:  # the store may be down for a while: keep running, say why
                log.error("thinkmeter alerts: evaluation failed, retrying next round: %s", error)
            else:
                log_transitions(evaluation)
            stop.wait(args.interval)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
