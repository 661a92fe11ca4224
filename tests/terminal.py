"""A line of figures on pytest's terminal from a test, shown even under -q and output capture."""

from __future__ import annotations

import pytest


def report(request: pytest.FixtureRequest, text: str) -> None:
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line(f"\n{request.module.__name__.rpartition('.')[2]}: {text}")
