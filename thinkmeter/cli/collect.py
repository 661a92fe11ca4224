"""`thinkmeter collect`: sample GPUs and inference engines into the store until SIGTERM or Ctrl-C."""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from pathlib import Path

from thinkmeter.cli._options import INTERVAL_S

logger = logging.getLogger("thinkmeter.collectors")


def register(subparsers: argparse._SubParsersAction) -> None:
    collect = subparsers.add_parser(
        "collect",
        help="record GPU and inference-engine state (vLLM, SGLang, TGI, llama.cpp, Ollama) into the store",
        description=(
            "Runs until SIGTERM or Ctrl-C, then writes what it holds and exits 0. Each option falls back to "
            "THINKMETER_COLLECT_GPU, THINKMETER_COLLECT_ENGINES (comma-separated URLs) and "
            "THINKMETER_COLLECT_INTERVAL, then to the --config file."
        ),
    )
    collect.add_argument("--gpu", action="store_true", default=None, help="sample the NVIDIA GPUs of this host")
    collect.add_argument(
        "--engine",
        action="append",
        metavar="URL",
        help="engine server base URL, e.g. http://127.0.0.1:8000 (repeatable; the engine is detected)",
    )
    collect.add_argument("--interval", type=INTERVAL_S, metavar="S", help="seconds between samples, up to 86400 (default 5)")
    collect.add_argument("--config", type=Path, metavar="FILE", help="JSON file with gpu, engines, interval_s")
    collect.set_defaults(func=run_collect)


def run_collect(args: argparse.Namespace) -> int:
    from thinkmeter.collectors.config import CollectConfig
    from thinkmeter.collectors.gpu import GpuCollector
    from thinkmeter.collectors.runner import CollectorRunner, StoreSink, engine_scraper
    from thinkmeter.config import Settings

    config = CollectConfig.resolve(gpu=args.gpu, engines=args.engine, interval_s=args.interval, config_file=args.config)
    if not config.gpu and not config.engines:
        raise ValueError("nothing to collect: pass --gpu and/or --engine URL (or set THINKMETER_COLLECT_*)")
    runner = CollectorRunner(
        engines=[engine_scraper(spec, config.interval_s) for spec in config.engines],
        gpu=GpuCollector(config.interval_s) if config.gpu else None,
        sink=StoreSink(Settings.from_env()),
    )
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        runner.start()
        while runner.is_running() and not stop.wait(0.5):
            pass
    finally:
        runner.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if not stop.is_set():
        logger.error("thinkmeter collect: nothing left to collect (see the message above)")
        return 1
    return 0
