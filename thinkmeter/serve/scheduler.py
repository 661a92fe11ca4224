"""serve's periodic work: one small scheduler, one daemon thread per job.

    scheduler.add("ingest", 1.0, ingest_once)      # name, seconds between runs, a callable
    scheduler.start(); ...; scheduler.stop()       # stop lets each job finish its current run

A job that raises is logged once per failure episode (and once when it works again) and runs again
next interval; a slow job delays only itself. `final=True` runs it once more at stop (the ingest
job: a SIGTERM finishes the batch and stores what is pending).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger("thinkmeter.serve")


@dataclass
class Job:
    name: str
    interval_s: float
    run: Callable[[], object]
    final: bool = False
    failing: bool = field(default=False, init=False)

    def run_once(self) -> None:
        try:
            self.run()
        except Exception as exc:
            if not self.failing:
                log.warning("thinkmeter serve: %s failed (%s: %s); retrying every %gs", self.name, type(exc).__name__, exc, self.interval_s)
            self.failing = True
            return
        if self.failing:
            log.warning("thinkmeter serve: %s works again", self.name)
            self.failing = False


class Scheduler:
    def __init__(self) -> None:
        self.jobs: list[Job] = []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def add(self, name: str, interval_s: float, run: Callable[[], object], final: bool = False) -> Job:
        if interval_s <= 0:
            raise ValueError(f"{name}: the interval must be a positive number of seconds, got {interval_s:g}")
        job = Job(name, interval_s, run, final)
        self.jobs.append(job)
        if self._threads:  # added while running
            self._start(job)
        return job

    def start(self) -> None:
        for job in self.jobs:
            self._start(job)

    def stop(self, timeout_s: float = 60.0) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout_s)
        for job in self.jobs:
            if job.final:
                job.run_once()

    def _start(self, job: Job) -> None:
        thread = threading.Thread(target=self._loop, args=(job,), name=f"thinkmeter-serve-{job.name}", daemon=True)
        self._threads.append(thread)
        thread.start()

    def _loop(self, job: Job) -> None:
        while not self._stop.is_set():
            job.run_once()
            self._stop.wait(job.interval_s)
