"""The view over HTTP: serve's route for /ui (registered in thinkmeter.serve.routes).

/ui/                 the page
/ui/plotly.min.js    plotly.js from the installed plotly package; /ui/view.js, /ui/view.css: the view's own
/ui/api/panel        ?id=PANEL&range=24h (or from/to in epoch ms)&<filter>=value...: one panel's rows
/ui/api/options      ?range=...: the values each filter offers (the dashboards' variable queries)
/ui/api/call         ?trace_id=...: the spans of one call with all their attributes
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from datetime import datetime, timezone
from functools import cache
from typing import Any

from thinkmeter.serve.http import Request, Response, ServeContext
from thinkmeter.ui import page
from thinkmeter.ui.view import (
    DEFAULT_RANGE,
    Run,
    Selection,
    call_spans,
    filter_options,
    filters,
    panel_data,
    time_range,
    view_panels,
)

log = logging.getLogger("thinkmeter.ui")
PREFIX = "/ui"
_STATIC_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}


def _json(status: int, value: Any) -> Response:
    return Response(status, json.dumps(value, separators=(",", ":")).encode(), "application/json; charset=utf-8",
                    {"Cache-Control": "no-store"})


def selection_from(params: Mapping[str, str]) -> Selection:
    """The page's query string: range=24h, or from and to (epoch milliseconds), and one value per filter."""
    start, end = params.get("from", ""), params.get("to", "")
    if start and end:
        try:
            bounds = [datetime.fromtimestamp(int(value) / 1000, timezone.utc) for value in (start, end)]
        except ValueError:
            raise ValueError("from and to are epoch milliseconds") from None
        chosen_range = time_range(start=bounds[0], end=bounds[1])
    else:
        chosen_range = time_range(params.get("range", DEFAULT_RANGE))
    return Selection(chosen_range, {name: [value] for name, value in params.items()})


class View:
    def __init__(self, run: Run):
        self._run = run
        self._panels = {p.id: p for p in view_panels()}
        self._filters = filters(list(self._panels.values()))
        self._page = page.render(page.config()).encode()

    def handle(self, path: str, params: Mapping[str, str]) -> Response:
        sub = path[len(PREFIX):] if path.startswith(PREFIX) else path
        if sub == "":
            return Response(301, b"", headers={"Location": PREFIX + "/"})
        if sub in ("/", "/index.html"):
            return Response(200, self._page, "text/html; charset=utf-8", {"Cache-Control": "no-store"})
        if sub == "/plotly.min.js":
            return Response(200, page.plotly_js_path().read_bytes(), _STATIC_TYPES[".js"], {"Cache-Control": "max-age=86400"})
        if sub in ("/view.js", "/view.css"):
            return Response(200, (page.STATIC / sub[1:]).read_bytes(), _STATIC_TYPES[sub[sub.rindex("."):]], {"Cache-Control": "no-cache"})
        if sub.startswith("/api/"):
            return self._api(sub[len("/api/"):], params)
        return Response(404, f"no such page: {path}\n".encode())

    def _api(self, name: str, params: Mapping[str, str]) -> Response:
        try:
            if name == "panel":
                panel_id = params.get("id", "")
                if panel_id not in self._panels:
                    return _json(404, {"error": f"no panel {panel_id!r}"})
                return _json(200, panel_data(self._run, self._panels[panel_id], selection_from(params), self._filters))
            if name == "options":
                return _json(200, filter_options(self._run, self._filters, selection_from(params)))
            if name == "call":
                return _json(200, {"spans": call_spans(self._run, params.get("trace_id", ""))})
        except ValueError as error:
            return _json(400, {"error": str(error)})
        except Exception as error:  # a failed query is shown in its panel; serve keeps answering
            log.warning("thinkmeter ui: %s failed: %s", name, error)
            return _json(500, {"error": f"{type(error).__name__}: {error}"})
        return _json(404, {"error": f"no API {name!r}"})


@cache
def _view_on(store: Any) -> View:
    return View(store.query_rows)


def serve_route(request: Request, context: ServeContext) -> Response:
    """serve's handler for /ui: the view on serve's read-only store."""
    return _view_on(context.store).handle(request.path, request.params)
