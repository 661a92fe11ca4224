"""The view's HTML: one page that serve answers at /ui/ (assets and data fetched from beside it), or one
self-contained file (`thinkmeter report --html`) with plotly.js, the script and the data inlined."""

from __future__ import annotations

import html
import importlib.util
import json
from functools import cache
from pathlib import Path
from datetime import datetime, timezone
from typing import Any

from thinkmeter.schemas.grafana_sql import TimeRange
from thinkmeter.ui.view import DEFAULT_RANGE, RANGES, Run, Selection, filters, panel_data, view_panels

STATIC = Path(__file__).resolve().parent / "static"


@cache
def plotly_js_path() -> Path:
    """plotly.min.js from the installed plotly package (the wheel carries it); found without importing plotly."""
    spec = importlib.util.find_spec("plotly")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the view draws its charts with plotly.js from the plotly package: pip install 'thinkmeter[ui]'")
    path = Path(next(iter(spec.submodule_search_locations))) / "package_data" / "plotly.min.js"
    if not path.is_file():
        raise FileNotFoundError(f"the installed plotly package has no {path.name} (looked at {path})")
    return path


def _json_for_script(value: Any) -> str:
    # Inside <script>, "</" would end the element; JSON allows "<\/".
    return json.dumps(value, separators=(",", ":")).replace("</", "<\\/")


def render(config: dict[str, Any], inline: bool = False) -> str:
    """The page. `config` is what view.js reads: panels, filters, mode and, in a file, the data."""
    title = html.escape(config.get("title", "thinkmeter"))
    if inline:
        head = f"<style>{(STATIC / 'view.css').read_text(encoding='utf-8')}</style>"
        scripts = (
            f"<script>{plotly_js_path().read_text(encoding='utf-8')}</script>\n"
            f"<script>{(STATIC / 'view.js').read_text(encoding='utf-8')}</script>"
        )
    else:
        head = '<link rel="stylesheet" href="view.css">'
        scripts = '<script src="plotly.min.js"></script>\n<script src="view.js"></script>'
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<link rel="icon" href="data:,">
{head}
</head>
<body>
<header>
  <h1>{title}</h1>
  <form id="filters" onsubmit="return false"></form>
  <p id="subtitle"></p>
</header>
<main id="sections"></main>
<aside id="call" hidden></aside>
<script id="thinkmeter-config" type="application/json">{_json_for_script(config)}</script>
{scripts}
</body>
</html>
"""


def config(mode: str = "live") -> dict[str, Any]:
    """What view.js reads besides the data: panels, filters, ranges."""
    panels = view_panels()
    return {
        "title": "thinkmeter",
        "mode": mode,
        "panels": [p.describe() for p in panels],
        "filters": [f.describe() for f in filters(panels)],
        "ranges": list(RANGES),
        "default_range": DEFAULT_RANGE,
    }


def file_page(run: Run, time_range: TimeRange, source: str) -> str:
    """The view as one self-contained file: every panel over `time_range`, all filters on All."""
    panels = view_panels()
    available = filters(panels)
    selection = Selection(time_range, {})
    document = config(mode="file")
    document["data"] = {p.id: panel_data(run, p, selection, available) for p in panels}
    start, end = (t.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M") for t in (time_range.start, time_range.end))
    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M")
    document["subtitle"] = f"{start} to {end} UTC · {source} · generated {generated} UTC by thinkmeter report --html"
    return render(document, inline=True)
